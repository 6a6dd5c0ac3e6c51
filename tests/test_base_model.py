"""Shipped pretrained models load by name (``SHIPPED_MODELS``) through the same ``from_pretrained`` code as any
HF directory, with their own tokenizer.

The name resolution is tested on a small HF directory registered as a shipped model. The checks of the real
``tl-small-base`` weights run when ``tl_lightning/assets/base_small`` holds them (issue 11: the base model is
not shipped until fine-tuning it beats training from random weights).
"""

from __future__ import annotations

import json

import pytest
import torch

from tl_lightning import models
from tl_lightning.checkpoints import load_pretrained
from tl_lightning.models import (
    BASE_MODEL,
    SHIPPED_MODELS,
    available_models,
    check_model_source,
    default_tokenizer,
    load_causal_lm,
    model_path,
    shipped_model_dir,
)
from tl_lightning.tokenization import load_tokenizer

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 64}


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A 2-layer LLaMA over ``tl-small`` saved as an HF directory and registered as the shipped ``tl-test-base``."""
    assets = tmp_path / "assets"
    torch.manual_seed(0)
    load_causal_lm("tl-tiny", tokenizer="tl-small", tiny_config=TINY).save_pretrained(assets / "test_base")
    monkeypatch.setitem(SHIPPED_MODELS, "tl-test-base", ("test_base", "tl-small"))
    monkeypatch.setattr(models, "_ASSETS", assets)
    return assets / "test_base"


def test_a_shipped_name_loads_the_folder_with_its_tokenizer(shipped):
    from transformers import AutoModelForCausalLM

    check_model_source("tl-test-base")  # accepted without a path or the hub
    assert model_path("tl-test-base") == str(shipped) and model_path("/some/dir") == "/some/dir"
    assert default_tokenizer("tl-test-base") == "tl-small" and default_tokenizer("tl-tiny") == "tl-tiny"
    assert default_tokenizer("/some/dir") == "/some/dir"
    loaded = load_pretrained("tl-test-base")
    assert loaded.tokenizer.get_vocab() == load_tokenizer("tl-small").get_vocab()
    assert loaded.model.training  # every loader here hands models back in train mode
    plain = AutoModelForCausalLM.from_pretrained(shipped)
    for (name, a), (_, b) in zip(loaded.model.state_dict().items(), plain.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_the_sft_module_fine_tunes_a_shipped_name(shipped):
    from tl_lightning.modules.sft import TLSFTModule

    module = TLSFTModule(model="tl-test-base")
    assert len(module.tokenizer) == 4096 and module.model.config.hidden_size == 32


def test_unknown_or_missing_shipped_models_are_clear_errors(shipped, monkeypatch):
    with pytest.raises(ValueError, match="no shipped model 'tl-huge-base'; shipped: "):
        shipped_model_dir("tl-huge-base")
    assert "tl-test-base" in available_models()
    with pytest.raises(ValueError, match=r"shipped name \(tl-tiny, .*tl-test-base\)"):
        check_model_source("./tl-tset-base")
    monkeypatch.setitem(SHIPPED_MODELS, "tl-gone-base", ("gone", "tl-small"))
    assert "tl-gone-base" not in available_models()
    # Named but absent (weights not in this install): a one-line error before anything loads.
    with pytest.raises(ValueError, match="^actor: shipped model 'tl-gone-base'.*has no config.json"):
        check_model_source("tl-gone-base", what="actor")
    with pytest.raises(ValueError, match="^model: shipped model 'tl-gone-base'"):
        load_causal_lm("tl-gone-base")


_REAL = (models._ASSETS / SHIPPED_MODELS[BASE_MODEL][0] / "config.json").is_file()


@pytest.mark.skipif(not _REAL, reason="tl-small-base weights are not shipped yet (issue 11)")
def test_the_shipped_base_is_pretrained_within_the_size_budget():
    folder = shipped_model_dir(BASE_MODEL)
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size <= 25 * 2**20, f"{folder} is {size / 2**20:.1f} MiB"
    record = json.loads((folder / "pretraining.json").read_text())
    assert record["step"] >= 1000 and record["val_loss"] < 1.5  # a uniform 4,096-way guess is ln(4096) = 8.3
    model = load_causal_lm(BASE_MODEL)
    assert model.config.vocab_size == 4096


@pytest.mark.skipif(not _REAL, reason="tl-small-base weights are not shipped yet (issue 11)")
def test_the_shipped_base_copies_from_its_context(pretrain_script):
    """What the base is for: on random token spans it has never seen, the repetitions cost far less than the first
    copy (a model that does not copy pays the same, about ln(4096) = 8.3 nats, on both)."""
    loaded = load_pretrained(BASE_MODEL)
    first, later = pretrain_script.repeat_probe(loaded.model, loaded.tokenizer, n_docs=8)
    assert first > 7.0 and later < first - 4.0, (first, later)
