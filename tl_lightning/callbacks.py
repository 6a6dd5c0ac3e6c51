"""Callbacks of tl_lightning.

    trainer:
      callbacks:
        - class_path: tl_lightning.callbacks.HFExportCallback
          init_args: {dirpath: null}     # null: <log_dir>/hf
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["HFExportCallback"]


class HFExportCallback(Callback):
    """At the end of ``fit``, write the model and tokenizer in Hugging Face format.

    The result loads with plain ``AutoModelForCausalLM.from_pretrained(dirpath)`` and
    ``AutoTokenizer.from_pretrained(dirpath)``; no tl_lightning needed. The module must have an
    ``export_hf(directory)`` method (every tl_lightning training module does).

    Args:
        dirpath: where to write; ``None`` = ``<trainer.log_dir or default_root_dir>/hf``.
    """

    def __init__(self, dirpath: str | Path | None = None) -> None:
        self.dirpath = dirpath

    def resolve_dir(self, trainer: Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath)
        return Path(trainer.log_dir or trainer.default_root_dir) / "hf"

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not hasattr(pl_module, "export_hf"):
            raise TypeError(f"{type(pl_module).__name__} has no export_hf(directory) method")
        out = pl_module.export_hf(self.resolve_dir(trainer))
        rank_zero_info(f"Hugging Face export written to {out}")
