"""The one loader (``load_pretrained``) on every source kind, and the cheap source checks behind early errors."""

from __future__ import annotations

import pytest
import torch
import yaml
from lightning.pytorch import seed_everything

from tl_lightning.checkpoints import Loaded, load_pretrained, read_checkpoint, tokenizer_to_state
from tl_lightning.models import check_model_source
from tl_lightning.modules.ppo import TLPPOModule
from tl_lightning.modules.sft import TLSFTModule
from tl_lightning.tokenization import check_tokenizer_source

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 64}


def _save(module, path, config: dict | None = None) -> None:
    """What Lightning writes for ``module`` (state, hyperparameters) plus the tl_lightning entries."""
    ckpt = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "tokenizer": tokenizer_to_state(module.tokenizer),
    }
    if config is not None:
        ckpt["config"] = yaml.safe_dump(config)
    torch.save(ckpt, path)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k, v in sa.items():
        assert torch.equal(v, sb[k]), k


@pytest.fixture
def sft_ckpt(tiny_tokenizer, tmp_path):
    seed_everything(3)
    sft = TLSFTModule(tokenizer=tiny_tokenizer, tiny_config=TINY)
    with torch.no_grad():  # weights no fresh model could have: loading must really read them
        for p in sft.model.parameters():
            p.add_(0.01)
    path = tmp_path / "sft.ckpt"
    config = {"model": {"class_path": "tl_lightning.modules.sft.TLSFTModule"},
              "data": {"class_path": "x.DataModule", "init_args": {"template": "react"}}}
    _save(sft, path, config)
    return sft, path


def test_sft_checkpoint_gives_model_tokenizer_and_template(sft_ckpt, tiny_tokenizer):
    sft, path = sft_ckpt
    loaded = load_pretrained(str(path))
    assert isinstance(loaded, Loaded)
    _same_weights(sft.model, loaded.model)
    assert loaded.tokenizer.get_vocab() == tiny_tokenizer.get_vocab()
    assert loaded.template == "react"  # from the CLI config stored in the checkpoint
    assert loaded.model.training


def test_dtype_override_and_hf_directory_and_shipped_name(sft_ckpt, tiny_tokenizer, tmp_path):
    sft, path = sft_ckpt
    assert next(load_pretrained(str(path), dtype="bfloat16").model.parameters()).dtype == torch.bfloat16
    sft.export_hf(tmp_path / "hf")
    hf = load_pretrained(str(tmp_path / "hf"))
    _same_weights(sft.model, hf.model)
    assert hf.template is None and len(hf.tokenizer) == len(tiny_tokenizer)
    tiny = load_pretrained("tl-tiny", tiny_config=TINY)
    assert tiny.model.config.hidden_size == 32 and tiny.model.config.vocab_size == len(tiny.tokenizer)


def test_ppo_checkpoint_started_from_sft_loads_the_actor_only(sft_ckpt, tiny_tokenizer, tmp_path):
    _, sft_path = sft_ckpt
    ppo = TLPPOModule(actor=str(sft_path), max_new_tokens=4)
    with torch.no_grad():
        for p in ppo.actor.parameters():
            p.mul_(1.5)
    path = tmp_path / "ppo.ckpt"
    _save(ppo, path)
    assert any(k.startswith("critic.") for k in read_checkpoint(path).state_dict)
    loaded = load_pretrained(str(path))
    _same_weights(ppo.actor, loaded.model)
    assert loaded.template is None


def test_checkpoint_without_tokenizer_or_weights_is_a_clear_error(tmp_path):
    torch.save({"state_dict": {"model.w": torch.zeros(1)}, "hyper_parameters": {}}, tmp_path / "bare.ckpt")
    with pytest.raises(ValueError, match="carries no tokenizer"):
        load_pretrained(str(tmp_path / "bare.ckpt"))
    torch.save({"state_dict": {"other.w": torch.zeros(1)}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="no model weights"):
        load_pretrained(str(tmp_path / "other.ckpt"), tokenizer="tl-tiny")
    with pytest.raises(ValueError, match="checkpoint '.*missing.ckpt' does not exist"):
        load_pretrained(str(tmp_path / "missing.ckpt"))


def test_missing_sources_name_what_is_accepted(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^tokenizer '/no/tok' is neither a local directory nor a shipped name \(tl-tiny"):
        check_tokenizer_source("/no/tok")
    with pytest.raises(ValueError, match=r"^model '/no/model' is neither a local directory, a \.ckpt checkpoint nor a shipped name \(tl-tiny\)"):
        check_model_source("/no/model")
    with pytest.raises(ValueError, match=r"^actor './gone' is neither"):
        check_model_source("./gone", what="actor")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        check_tokenizer_source("nobody-has/this-tokenizer")
    # accepted without loading anything: shipped names, objects, None, existing directories, hub ids when online
    for ok in ("tl-tiny", None, object(), str(tmp_path)):
        check_tokenizer_source(ok)
        check_model_source(ok)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    check_model_source("meta-llama/Llama-2-7b-hf")


def test_modules_reject_missing_sources_before_huggingface_hub_does(tiny_tokenizer):
    with pytest.raises(ValueError, match="^model '/no/model' is neither"):
        TLSFTModule(model="/no/model", tokenizer=tiny_tokenizer)
    with pytest.raises(ValueError, match="^tokenizer '/no/tok' is neither"):
        TLSFTModule(tokenizer="/no/tok")
    with pytest.raises(ValueError, match="^actor '/no/sft' is neither"):
        TLPPOModule(actor="/no/sft")
    with pytest.raises(ValueError, match="^actor checkpoint ./no/sft.ckpt. does not exist"):
        TLPPOModule(actor="/no/sft.ckpt")
