"""Load any Hugging Face causal LM (by hub name, local path or shipped name) or build the tiny random LLaMA.

    from tl_lightning.models import load_causal_lm
    model = load_causal_lm("tl-tiny")                                   # ~0.7M-parameter LLaMA, random init
    model = load_causal_lm("tl-small-base")                             # the pretrained base, once it is shipped
    model = load_causal_lm("/models/CodeLlama-7b-hf", dtype="bfloat16", gradient_checkpointing=True)
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

import tl_lightning.attention  # noqa: F401  (importing it registers "sdpa_varlen" with transformers)
from tl_lightning.tokenization import SMALL_TOKENIZER, TINY_TOKENIZER, hub_source_problem, resolve_tokenizer

__all__ = [
    "BASE_MODEL", "SHIPPED_MODELS", "TINY_MODEL", "TINY_CONFIG", "available_models", "check_model_source", "decoder_layer_class",
    "default_tokenizer", "hidden_states_at", "load_causal_lm", "logits_only_at", "model_path", "shipped_model_dir",
]

#: Name of the default model: a LLaMA built from :data:`TINY_CONFIG`, randomly initialised.
TINY_MODEL = TINY_TOKENIZER

#: The pretrained base model's name: an ordinary HF directory at ``tl_lightning/assets/base_small`` (a 4.5M-parameter
#: LLaMA that ``scripts/pretrain_base.py`` pretrains on the tool-use corpus of :mod:`tl_lightning.synthetic.pretrain`,
#: which shares no tool with the quick-start toolkits), read with the ``tl-small`` tokenizer. Not shipped yet: the
#: weights go into the package once fine-tuning them beats training from random weights (docs/results.md#a-pretrained-base-model).
BASE_MODEL = "tl-small-base"

#: Every pretrained model that loads by name without a path or the hub: name -> (folder under ``assets/``, tokenizer).
SHIPPED_MODELS: dict[str, tuple[str, str]] = {BASE_MODEL: ("base_small", SMALL_TOKENIZER)}
_ASSETS = Path(__file__).resolve().parent / "assets"

#: The quick-start size: 128 wide as docs/method.md#quick-start-scale measured best on 2 CPU cores (a 256-wide model learns more
#: per step but is 2.4x slower), with 2 layers instead of 4: twice the steps in the 5-minute budget, and on the
#: quick-start task held-out tool-name accuracy went from 46-68% (4 layers, 850 steps) to 74-79% (2 layers, ~1,400).
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 384,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-6,
}


def shipped_model_dir(name: str = BASE_MODEL) -> Path:
    """The HF directory of the shipped pretrained model called ``name`` (one of :data:`SHIPPED_MODELS`)."""
    if name not in SHIPPED_MODELS:
        raise ValueError(f"no shipped model {name!r}; shipped: {', '.join(SHIPPED_MODELS)}")
    path = _ASSETS / SHIPPED_MODELS[name][0]
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"shipped model {name!r}: {path} has no config.json (the weights are not in this install; "
            "scripts/pretrain_base.py builds them)"
        )
    return path


def available_models() -> list[str]:
    """The names that load without a path or the hub in this install: ``tl-tiny`` and the shipped models present."""
    return [TINY_MODEL, *(n for n, (folder, _) in SHIPPED_MODELS.items() if (_ASSETS / folder / "config.json").is_file())]


def model_path(name_or_path: str) -> str:
    """What ``from_pretrained`` should read for ``name_or_path``: a shipped model's folder, else the name itself."""
    return str(shipped_model_dir(name_or_path)) if name_or_path in SHIPPED_MODELS else name_or_path


def check_model_source(name: object, what: str = "model") -> None:
    """Raise ``ValueError`` (one line) when ``name`` cannot be a model; cheap, loads nothing.

    Accepted: a shipped name, an existing directory, an existing ``.ckpt`` file of tl_lightning, or
    a hub id (when the hub or its cache can serve it). ``what`` names the argument in the message
    (``model``, ``actor``).
    """
    if not isinstance(name, str) or name == TINY_MODEL:
        return
    if name in SHIPPED_MODELS:
        try:
            shipped_model_dir(name)
        except FileNotFoundError as e:
            raise ValueError(f"{what}: {e}") from None
        return
    path = Path(name).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".ckpt"):
        return
    if name.endswith(".ckpt"):
        raise ValueError(f"{what} checkpoint {name!r} does not exist")
    problem = hub_source_problem(name)
    if problem is not None:
        hub = f" or a hub id ({problem})" if problem else ""
        raise ValueError(
            f"{what} {name!r} is neither a local directory, a .ckpt checkpoint nor a shipped name "
            f"({', '.join(available_models())}){hub}"
        )


def default_tokenizer(name_or_path: str) -> str:
    """The tokenizer a model reads when none is given: a shipped model's own, else ``name_or_path``'s."""
    if name_or_path == TINY_MODEL:
        return TINY_TOKENIZER
    if name_or_path in SHIPPED_MODELS:
        return SHIPPED_MODELS[name_or_path][1]
    return name_or_path


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16' or 'auto'")
    return resolved


def _build_tiny(tokenizer: PreTrainedTokenizerBase, overrides: dict[str, Any] | None) -> PreTrainedModel:
    cfg = {**TINY_CONFIG, **(overrides or {})}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **cfg,
    )
    return LlamaForCausalLM(config)


def _apply_lora(model: PreTrainedModel, lora: dict[str, Any]) -> PreTrainedModel:
    if importlib.util.find_spec("peft") is None:
        raise ImportError("lora=... needs the `peft` package: pip install 'tl_lightning[peft]'")
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))


def load_causal_lm(
    name_or_path: str = TINY_MODEL,
    tokenizer: PreTrainedTokenizerBase | str | None = None,
    dtype: torch.dtype | str | None = None,
    gradient_checkpointing: bool = False,
    lora: dict[str, Any] | None = None,
    tiny_config: dict[str, Any] | None = None,
    attn_implementation: str | None = None,
    resize_embeddings: bool = True,
) -> PreTrainedModel:
    """Load a causal LM, in train mode (``from_pretrained`` returns eval mode, which turns dropout off).

    Args:
        name_or_path: ``"tl-tiny"`` (a fresh LLaMA of :data:`TINY_CONFIG` size whose vocabulary is the
            tokenizer's), a shipped pretrained name (:data:`SHIPPED_MODELS`), or any hub name / local
            directory that ``AutoModelForCausalLM`` loads.
        tokenizer: the tokenizer the data is encoded with (object or name); its pad id is written to the
            model config. When it has more tokens than the model's embedding, the embedding grows to fit
            (with a warning: the new rows start random), or, with ``resize_embeddings=False``, the model is
            refused as a mismatch (``ValueError``): what evaluation wants, a model must be scored with the
            tokenizer it was trained with.
            ``None`` = the shipped ``tl-tiny`` tokenizer for ``"tl-tiny"``, ``tl-small`` for
            ``"tl-small-base"``, else ``name_or_path``'s own.
        dtype: parameter dtype (``"bfloat16"``, ``torch.float32``, ``"auto"``...). Under mixed precision
            keep float32 weights and let the trainer's ``precision`` cast.
        gradient_checkpointing: recompute activations in the backward pass (non-reentrant).
        lora: ``peft.LoraConfig`` keyword arguments (e.g. ``{"r": 16, "lora_alpha": 32,
            "target_modules": ["q_proj", "v_proj"]}``); needs ``peft``.
        tiny_config: ``LlamaConfig`` overrides for ``"tl-tiny"`` (tests use 2 layers, hidden 32).
        attn_implementation: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"``, ``"sdpa_varlen"``
            (:mod:`tl_lightning.attention`)...; ``None`` keeps the model's own (transformers picks sdpa).
    """
    if tiny_config and name_or_path != TINY_MODEL:
        raise ValueError(f"tiny_config only applies to {TINY_MODEL!r}, not to {name_or_path!r}")
    check_model_source(name_or_path)
    tok = resolve_tokenizer(tokenizer, default=default_tokenizer(name_or_path))
    torch_dtype = _resolve_dtype(dtype)
    if name_or_path == TINY_MODEL:
        model = _build_tiny(tok, tiny_config)
        if isinstance(torch_dtype, torch.dtype):
            model = model.to(torch_dtype)
    else:
        kwargs = {"dtype": torch_dtype} if torch_dtype is not None else {}
        model = AutoModelForCausalLM.from_pretrained(model_path(name_or_path), **kwargs)
        rows = model.get_input_embeddings().num_embeddings
        if len(tok) > rows:
            what = f"model {name_or_path!r} has {rows} embedding rows but its tokenizer has {len(tok)} tokens"
            if not resize_embeddings:
                raise ValueError(
                    f"{what}: it was not trained with this tokenizer (ids >= {rows} would read untrained rows); give "
                    "the tokenizer it was trained with (an HF export or checkpoint carries its own)"
                )
            warnings.warn(f"{what}: growing the embedding to {len(tok)} rows (the new rows start random and are only "
                          "as good as the training that follows)", stacklevel=2)
            model.resize_token_embeddings(len(tok))
        model.config.pad_token_id = tok.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tok.pad_token_id
    if attn_implementation:
        model.set_attn_implementation(attn_implementation)
    if gradient_checkpointing:
        # transformers 5 renamed gradient_checkpointing_enable (a deprecated alias until v6).
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if lora:
        model = _apply_lora(model, lora)
    return model.train()


def decoder_layer_class(model: nn.Module) -> set[type[nn.Module]]:
    """The transformer block classes of ``model`` (from HF's ``_no_split_modules``), for FSDP auto-wrapping."""
    names = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or [])
    classes = {type(m) for m in model.modules() if type(m).__name__ in names}
    if not classes:
        raise ValueError(f"cannot find the decoder layer class of {type(model).__name__} (no _no_split_modules)")
    return classes


def _gather_rows(hidden: torch.Tensor, where: torch.Tensor, what: str) -> torch.Tensor:
    """``hidden`` [B, L, H] -> [N, H] at ``where``: a [B, L] bool mask, or a flat [N] long index into [B * L].

    The index needs no host sync (its size is known); the mask does (``N`` is its count)."""
    if where.dtype == torch.bool:
        if hidden.shape[:2] != where.shape:
            raise ValueError(
                f"{what}: the head got hidden states {tuple(hidden.shape)}, expected [B, L] = "
                f"{tuple(where.shape)} (was the model called with logits_to_keep?)"
            )
        return hidden[where]
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, where)


def _output_embedding(model: nn.Module) -> nn.Module:
    head = model.get_output_embeddings()
    if head is None:
        raise TypeError(f"{type(model).__name__} has no output embedding to restrict the logits of")
    return head


@contextmanager
def logits_only_at(model: nn.Module, positions: torch.Tensor) -> Iterator[None]:
    """Inside the block, ``model(...).logits`` is [N, V]: the rows at ``positions`` only, row-major.

    SFT trains on ~10% of the tokens, yet a causal LM builds [B, L, V] logits (float32 under
    autocast, 4 GB at B=8, L=4096, V=32k) and back-propagates through all of them. A forward
    pre-hook on the output embedding gathers the hidden states ``[B, L, H] -> [N, H]`` before the
    head, so nothing vocabulary-sized is built for positions without loss. The hook sits inside the
    model's own forward, so DDP, FSDP and FSDP2 wrappers, peft and gradient checkpointing see an
    ordinary call, and post-head steps (e.g. Gemma's logit soft-capping) still apply.

    Args:
        model: an HF causal LM (anything with ``get_output_embeddings()``).
        positions: [B, L] bool over the input positions, e.g. :func:`tl_lightning.losses.loss_positions`,
            or the same positions as an ascending flat [N] long index into [B * L] (``TrajectoryBatch.loss_index``).
    """
    head = _output_embedding(model)

    def gather(_module: nn.Module, args: tuple) -> tuple:
        hidden, *rest = args
        return (_gather_rows(hidden, positions, "logits_only_at"), *rest)

    handle = head.register_forward_pre_hook(gather)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def hidden_states_at(model: nn.Module, index: torch.Tensor) -> Iterator[dict[str, Any]]:
    """Inside the block, the model's own head call gets no rows (its ``logits`` are [0, V]); the yielded
    dict then holds ``hidden`` ([N, H], the head's input at the flat ``index``) and ``head`` (a callable
    ``[n, H] -> [n, V]``: the output embedding plus the config's final-logit soft-capping, if any).

    For a loss that applies the head itself chunk by chunk (:func:`tl_lightning.losses.chunked_nll`), so no
    [N, V] logits exist at once. Call ``head`` before any sharded wrapper reshards the root's parameters
    (DDP and FSDP2's root keep them after the forward; FSDP1 does not: keep chunking off there).
    """
    module = _output_embedding(model)
    cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)

    def head(hidden: torch.Tensor) -> torch.Tensor:
        logits = module(hidden)
        return torch.tanh(logits / cap) * cap if cap else logits

    captured: dict[str, Any] = {"head": head}

    def capture(_module: nn.Module, args: tuple) -> tuple:
        hidden, *rest = args
        captured["hidden"] = _gather_rows(hidden, index, "hidden_states_at")
        return (captured["hidden"][:0], *rest)

    handle = module.register_forward_pre_hook(capture)
    try:
        yield captured
    finally:
        handle.remove()
