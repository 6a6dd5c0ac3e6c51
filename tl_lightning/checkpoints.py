"""Checkpoints in and out: the one loader, tokenizer-carrying checkpoints, sharding, HF export.

    from tl_lightning.checkpoints import load_pretrained
    loaded = load_pretrained("runs/quickstart/checkpoints/last.ckpt")   # or an HF directory, or "tl-tiny"
    loaded.model, loaded.tokenizer, loaded.template

:func:`load_pretrained` is the only code that reads model weights out of a ``.ckpt``: PPO's actor,
the evaluation module and scripts all load through it, so a change of the format below is made once.

A tl_lightning ``.ckpt`` holds, besides Lightning's state:
- ``checkpoint["tokenizer"]``: the tokenizer's ``save_pretrained`` files as ``{filename: text}``, so a
  checkpoint alone rebuilds the exact tokenizer the model was trained with;
- ``checkpoint["config"]``: the resolved LightningCLI config (YAML text) when the run came from the CLI;
- ``checkpoint["hyper_parameters"]``: the module's init arguments (``save_hyperparameters``).
"""

from __future__ import annotations

import pickle
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tl_lightning.models import (
    TINY_MODEL,
    check_model_source,
    decoder_layer_class,
    default_tokenizer,
    load_causal_lm,
)
from tl_lightning.tokenization import resolve_tokenizer

__all__ = [
    "Checkpoint",
    "Loaded",
    "TokenizerCheckpointMixin",
    "export_hf_model",
    "load_pretrained",
    "read_checkpoint",
    "shard_for_strategy",
    "tokenizer_from_state",
    "tokenizer_to_state",
]


def tokenizer_to_state(tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    """The tokenizer's ``save_pretrained`` files as ``{filename: text}`` (fast tokenizers are all text)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        state = {}
        for path in sorted(Path(tmp).iterdir()):
            try:
                state[path.name] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:  # e.g. a slow tokenizer's sentencepiece model: tokenizer.json suffices
                warnings.warn(f"tokenizer file {path.name} is binary and is not stored in the checkpoint", stacklevel=2)
    return state


def tokenizer_from_state(state: dict[str, str]) -> PreTrainedTokenizerBase:
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in state.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        return AutoTokenizer.from_pretrained(tmp)


#: The hyperparameter naming the causal LM of each module, and the state-dict prefix of its weights
#: (TLSFTModule: ``model``; TLPPOModule: ``actor``, whose critic and value head are not loaded).
_LM_KEYS = ("model", "actor")


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` finds in a tl_lightning ``.ckpt`` (tensors stay memory-mapped)."""

    path: str
    hyper_parameters: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    tokenizer_state: dict[str, str] | None
    config: str | None

    @property
    def lm_key(self) -> str:
        """``model`` or ``actor``: the hyperparameter and state-dict prefix of the causal LM."""
        for key in _LM_KEYS:
            if any(k.startswith(f"{key}.") for k in self.state_dict):
                return key
        raise ValueError(f"{self.path}: no model weights (no state_dict keys starting with 'model.' or 'actor.')")

    def lm_weights(self) -> dict[str, torch.Tensor]:
        prefix = f"{self.lm_key}."
        return {k[len(prefix) :]: v for k, v in self.state_dict.items() if k.startswith(prefix)}

    @property
    def template(self) -> str | None:
        """The template the model was trained with: a module hyperparameter, else the CLI config's data."""
        template = self.hyper_parameters.get("template")
        if template is None and self.config:
            data = (yaml.safe_load(self.config) or {}).get("data") or {}
            template = (data.get("init_args") or data).get("template")
        return template if isinstance(template, str) else None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a tl_lightning ``.ckpt`` (memory-mapped, on CPU); the one place that knows its layout."""
    path = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a readable checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return Checkpoint(
        path, dict(ckpt.get("hyper_parameters") or {}), ckpt["state_dict"], ckpt.get("tokenizer"), ckpt.get("config")
    )


@dataclass
class Loaded:
    """A causal LM ready to use: the model (train mode), its tokenizer, and its template name or None."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    template: str | None = None


def load_pretrained(
    source: str,
    *,
    dtype: str | torch.dtype | None = None,
    tokenizer: PreTrainedTokenizerBase | str | None = None,
    gradient_checkpointing: bool = False,
    tiny_config: dict[str, Any] | None = None,
    resize_embeddings: bool = True,
) -> Loaded:
    """The one loader: a TLSFTModule / TLPPOModule ``.ckpt``, an HF directory or hub id, or a shipped name
    (``"tl-tiny"``, :data:`~tl_lightning.models.SHIPPED_MODELS`).

    A ``.ckpt`` is rebuilt from its hyperparameters (base model, ``tiny_config``, ``lora``; a base that
    is itself a ``.ckpt``, as when PPO starts from SFT, gives the architecture) and its LM weights;
    its stored tokenizer is used unless ``tokenizer`` is given, and its ``dtype`` unless ``dtype`` is.
    ``tiny_config`` applies to ``"tl-tiny"`` only (a checkpoint's architecture is its own). The model
    comes back in train mode, as :func:`~tl_lightning.models.load_causal_lm` gives it.
    ``resize_embeddings=False`` refuses an HF model whose embedding is smaller than the tokenizer instead of
    growing it (evaluation: such a model was not trained with that tokenizer); a ``.ckpt`` holds its trained
    rows, whatever size they are.
    """
    source = str(source)
    check_model_source(source)
    if not source.endswith(".ckpt"):
        tok = resolve_tokenizer(tokenizer, default=default_tokenizer(source))
        model = load_causal_lm(
            source, tokenizer=tok, dtype=dtype, gradient_checkpointing=gradient_checkpointing, tiny_config=tiny_config,
            resize_embeddings=resize_embeddings,
        )
        return Loaded(model, tok)
    ckpt = read_checkpoint(source)
    if tokenizer is not None:
        tok = resolve_tokenizer(tokenizer)
    elif ckpt.tokenizer_state is not None:
        tok = tokenizer_from_state(ckpt.tokenizer_state)
    else:
        raise ValueError(f"{source}: not a tl_lightning checkpoint (it carries no tokenizer)")
    hp = ckpt.hyper_parameters
    base = str(hp.get(ckpt.lm_key, TINY_MODEL))
    dtype = dtype if dtype is not None else hp.get("dtype")
    # The base is rebuilt at the size training left it: an embedding grown to this tokenizer during training is
    # grown again here, silently, and then filled with its trained rows (a wrong size fails in load_state_dict).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*growing the embedding")
        if base.endswith(".ckpt"):
            model = load_pretrained(base, dtype=dtype, tokenizer=tok, gradient_checkpointing=gradient_checkpointing).model
        else:
            model = load_causal_lm(
                base, tokenizer=tok, dtype=dtype, gradient_checkpointing=gradient_checkpointing,
                lora=hp.get("lora"), tiny_config=hp.get("tiny_config"),
            )
    model.load_state_dict(ckpt.lm_weights())
    return Loaded(model.train(), tok, ckpt.template)


class TokenizerCheckpointMixin:
    """Stores the tokenizer (and the CLI's resolved config) in every checkpoint, and restores it on load.

    ``load_from_checkpoint`` rebuilds the tokenizer first, so a model whose vocabulary comes from the
    tokenizer (``tl-tiny``) is built with the right size before the weights are loaded. It restores the
    whole module (optimizer-ready, critic included); :func:`load_pretrained` gives the causal LM alone.
    """

    #: Set by :class:`tl_lightning.cli.TLCLI` to the resolved config (YAML text) of the run.
    resolved_config: str | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokenizer"] = tokenizer_to_state(self.tokenizer)
        if self.resolved_config is not None:
            checkpoint["config"] = self.resolved_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "tokenizer" in checkpoint:
            self.tokenizer = tokenizer_from_state(checkpoint["tokenizer"])
        self.resolved_config = checkpoint.get("config", self.resolved_config)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, map_location: Any = None, **kwargs: Any):
        if "tokenizer" not in kwargs and Path(checkpoint_path).is_file():  # not a sharded checkpoint directory
            state = read_checkpoint(checkpoint_path).tokenizer_state
            if state is not None:
                kwargs["tokenizer"] = tokenizer_from_state(state)
        return super().load_from_checkpoint(checkpoint_path, map_location=map_location, **kwargs)


def shard_for_strategy(module: Any) -> None:
    """Prepare ``module.model`` for the trainer's strategy (call from ``configure_model``; idempotent).

    - ``ModelParallelStrategy`` (FSDP2): ``fully_shard`` every decoder layer, then the root.
    - ``FSDPStrategy`` (FSDP1) without an ``auto_wrap_policy``: wrap each decoder layer of the loaded model,
      so configs need not name the model's layer class.
    """
    trainer = module._trainer
    if trainer is None or getattr(module, "_tl_sharded", False):
        return
    strategy = trainer.strategy
    if isinstance(strategy, ModelParallelStrategy):
        from torch.distributed.fsdp import fully_shard

        mesh = module.device_mesh["data_parallel"]
        layers = tuple(decoder_layer_class(module.model))
        for sub in module.model.modules():
            if isinstance(sub, layers):
                fully_shard(sub, mesh=mesh)
        fully_shard(module.model, mesh=mesh)
    elif isinstance(strategy, FSDPStrategy) and "auto_wrap_policy" not in strategy.kwargs:
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        strategy.kwargs["auto_wrap_policy"] = ModuleWrapPolicy(decoder_layer_class(module.model))
    module._tl_sharded = True


def _is_sharded(model: torch.nn.Module) -> bool:
    """Whether FSDP1 wraps part of ``model`` or FSDP2 turned its parameters into DTensors."""
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.tensor import DTensor

    return any(isinstance(m, FullyShardedDataParallel) for m in model.modules()) or any(
        isinstance(p, DTensor) for p in model.parameters()
    )


def export_hf_model(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> Path:
    """Save ``model`` and ``tokenizer`` in Hugging Face format (loadable by plain ``from_pretrained``).

    Sharded models (FSDP1/FSDP2) are gathered into a full CPU state dict first; every rank must call
    this, and rank 0 writes. A peft (LoRA) model is merged into its base weights on a copy first.
    """
    directory = Path(directory)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    state_dict = None
    if distributed:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state_dict = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not distributed or torch.distributed.get_rank() == 0:
        directory.mkdir(parents=True, exist_ok=True)
        to_save = model
        if hasattr(model, "merge_and_unload"):  # peft: export the merged model, not adapters only
            if distributed and _is_sharded(model):
                # The copy below would hold this rank's shards, not the gathered weights: refuse, never write
                # a wrong model.
                raise NotImplementedError(
                    "export_hf_model: merging a LoRA model sharded by FSDP is not supported; train LoRA with DDP, "
                    "or save the adapters (model.save_pretrained) and merge them on one device"
                )
            import copy

            to_save = copy.deepcopy(model).merge_and_unload()
            state_dict = None
        to_save.save_pretrained(directory, state_dict=state_dict)
        tokenizer.save_pretrained(directory)
    if distributed:
        torch.distributed.barrier()
    return directory
