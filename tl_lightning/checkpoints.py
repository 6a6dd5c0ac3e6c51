"""What every tl_lightning LightningModule shares: tokenizer-carrying checkpoints, sharding, HF export.

A checkpoint holds, besides Lightning's state:
- ``checkpoint["tokenizer"]``: the tokenizer's ``save_pretrained`` files as ``{filename: text}``, so a
  checkpoint alone rebuilds the exact tokenizer the model was trained with;
- ``checkpoint["config"]``: the resolved LightningCLI config (YAML text) when the run came from the CLI;
- ``checkpoint["hyper_parameters"]``: the module's init arguments (``save_hyperparameters``).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tl_lightning.models import decoder_layer_class

__all__ = [
    "TokenizerCheckpointMixin",
    "export_hf_model",
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


class TokenizerCheckpointMixin:
    """Stores the tokenizer (and the CLI's resolved config) in every checkpoint, and restores it on load.

    ``load_from_checkpoint`` rebuilds the tokenizer first, so a model whose vocabulary comes from the
    tokenizer (``tl-tiny``) is built with the right size before the weights are loaded.
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
        if "tokenizer" not in kwargs:
            # Memory-mapped: only the tokenizer entry is read here, not a second copy of the weights.
            ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=False, mmap=True)
            if "tokenizer" in ckpt:
                kwargs["tokenizer"] = tokenizer_from_state(ckpt["tokenizer"])
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
