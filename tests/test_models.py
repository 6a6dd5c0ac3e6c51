"""load_causal_lm / decoder_layer_class: the tiny default, from_pretrained paths, dtype, train mode."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from tl_lightning.models import TINY_CONFIG, decoder_layer_class, load_causal_lm, logits_only_at

SMALL = {"hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
         "intermediate_size": 32}


def test_tiny_model_takes_vocab_and_special_ids_from_the_tokenizer(tiny_tokenizer):
    model = load_causal_lm("tl-tiny", tokenizer=tiny_tokenizer)
    assert isinstance(model, LlamaForCausalLM) and model.training
    cfg = model.config
    assert cfg.vocab_size == len(tiny_tokenizer)
    assert cfg.pad_token_id == tiny_tokenizer.pad_token_id and cfg.eos_token_id == tiny_tokenizer.eos_token_id
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == (128, 2, 4, 384)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    n = sum(p.numel() for p in model.parameters())
    assert n == len(tiny_tokenizer) * 128 + 2 * (4 * 128 * 128 + 3 * 128 * 384 + 2 * 128) + 128
    assert TINY_CONFIG["tie_word_embeddings"]


def test_from_pretrained_path_dtype_train_mode_and_resize(tiny_tokenizer, tmp_path):
    base = load_causal_lm("tl-tiny", tokenizer=tiny_tokenizer, tiny_config=SMALL)
    base.resize_token_embeddings(len(tiny_tokenizer) - 10)  # a checkpoint smaller than the tokenizer
    base.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"has {len(tiny_tokenizer) - 10} embedding rows but its tokenizer has "
                                         f"{len(tiny_tokenizer)} tokens: it was not trained with this tokenizer"):
        load_causal_lm(str(tmp_path), tokenizer=tiny_tokenizer, resize_embeddings=False)
    with pytest.warns(UserWarning, match=f"growing the embedding to {len(tiny_tokenizer)} rows"):
        model = load_causal_lm(str(tmp_path), tokenizer=tiny_tokenizer, dtype="bfloat16", gradient_checkpointing=True)
    assert model.training, "from_pretrained returns eval mode; load_causal_lm must switch to train"
    assert model.dtype == torch.bfloat16
    assert model.get_input_embeddings().num_embeddings == len(tiny_tokenizer)
    checkpointing = getattr(model, "is_activation_checkpointing", None)
    assert (checkpointing if checkpointing is not None else model.is_gradient_checkpointing)
    assert model.config.use_cache is False
    assert model.config.pad_token_id == tiny_tokenizer.pad_token_id


def test_bad_arguments_are_clear_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="unknown dtype"):
        load_causal_lm("tl-tiny", tokenizer=tiny_tokenizer, dtype="float13")
    with pytest.raises(ValueError, match="tiny_config only applies"):
        load_causal_lm("some/model", tokenizer=tiny_tokenizer, tiny_config=SMALL)


@pytest.mark.skipif(importlib.util.find_spec("peft") is not None, reason="peft installed")
def test_lora_without_peft_says_what_to_install(tiny_tokenizer):
    with pytest.raises(ImportError, match="peft"):
        load_causal_lm("tl-tiny", tokenizer=tiny_tokenizer, tiny_config=SMALL, lora={"r": 4})


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft not installed")
def test_lora_trains_only_adapters(tiny_tokenizer):
    model = load_causal_lm("tl-tiny", tokenizer=tiny_tokenizer, tiny_config=SMALL,
                           lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_decoder_layer_class(tiny_tokenizer):
    model = load_causal_lm("tl-tiny", tokenizer=tiny_tokenizer, tiny_config=SMALL)
    assert decoder_layer_class(model) == {LlamaDecoderLayer}
    with pytest.raises(ValueError, match="decoder layer class"):
        decoder_layer_class(torch.nn.Linear(2, 2))


def test_shipped_tokenizer():
    """tl-tiny: 2,048-token byte-level BPE, one token per digit, whole tool names, small enough to ship."""
    from tl_lightning.tokenization import load_tokenizer, shipped_tokenizer_dir

    tok = load_tokenizer("tl-tiny")
    assert len(tok) == 2048 and tok.is_fast
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("</s>", "<pad>", "<s>")
    assert tok.tokenize("1894") == ["1", "8", "9", "4"]
    # Underscores join words before BPE, so each quick-start tool name is one token (one decision to learn).
    assert tok.tokenize(" get_weather_forecast(") == ["Ġget_weather_forecast", "("]
    assert tok.decode(tok("get_weather_forecast(city=\"Zürich\")")["input_ids"]) == 'get_weather_forecast(city="Zürich")'
    assert sum(f.stat().st_size for f in shipped_tokenizer_dir().iterdir()) < 400_000


def test_whole_identifiers_lets_snake_case_names_merge_and_round_trips():
    from tl_lightning.tokenization import train_bpe_tokenizer

    lines = ['get_weather_forecast(city="Oslo", days=3)\n', "it's __init__ x_1 Zürich_ö 2025-01-02\n"] * 50
    split = train_bpe_tokenizer(lines, vocab_size=400)
    whole = train_bpe_tokenizer(lines, vocab_size=400, whole_identifiers=True)
    assert "_" in split.tokenize("get_weather_forecast")  # GPT-2 pre-splitting keeps "_" apart
    assert whole.tokenize("get_weather_forecast") == ["get_weather_forecast"]
    for tok in (split, whole):
        for line in lines[:2]:
            enc = tok(line, return_offsets_mapping=True)
            assert tok.decode(enc["input_ids"]) == line
            assert enc["offset_mapping"][-1][1] == len(line)
        assert tok.tokenize("1894") == ["1", "8", "9", "4"]


def test_logits_only_at_returns_the_rows_of_the_full_logits_with_the_same_gradient(tiny_tokenizer):
    torch.manual_seed(0)
    model = load_causal_lm("tl-tiny", tokenizer=tiny_tokenizer, tiny_config={"hidden_size": 32, "num_hidden_layers": 2,
                                                                            "num_attention_heads": 2,
                                                                            "num_key_value_heads": 2,
                                                                            "intermediate_size": 64})
    model = model.double()  # float64: the two paths sum the head gradient in different orders
    ids = torch.randint(5, len(tiny_tokenizer), (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    positions = torch.rand(2, 9) < 0.4
    positions[0, 0] = True
    full = model(input_ids=ids, attention_mask=mask).logits
    full[positions].square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with logits_only_at(model, positions):
        rows = model(input_ids=ids, attention_mask=mask).logits
    assert rows.shape == (int(positions.sum()), full.shape[-1])
    torch.testing.assert_close(rows, full[positions])
    rows.square().sum().backward()
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g)
    # The hook is gone after the block, and a mismatched shape names the problem.
    assert model(input_ids=ids).logits.shape == full.shape
    with logits_only_at(model, positions), pytest.raises(ValueError, match="logits_to_keep"):
        model(input_ids=ids[:, :5])
