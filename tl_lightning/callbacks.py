"""Callbacks of tl_lightning.

    trainer:
      callbacks:
        - class_path: tl_lightning.callbacks.HFExportCallback
          init_args: {dirpath: null}     # null: <log_dir>/hf

:class:`RunStatusCallback` is added by the CLI to every ``fit``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.rank_zero import rank_zero_only

__all__ = ["HFExportCallback", "RunStatusCallback", "run_status"]


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


def run_status(trainer: Trainer) -> dict[str, Any]:
    """Whether ``fit`` reached its planned length, and what stopped it.

    ``stopped_by`` is ``max_steps``, ``max_epochs``, ``max_time``, ``interrupted`` or ``should_stop`` (a
    callback such as early stopping). Steps are ``trainer.global_step`` (optimizer steps).
    """
    steps, epochs = trainer.global_step, trainer.current_epoch
    max_steps, max_epochs = trainer.max_steps, trainer.max_epochs
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining() if timer is not None else None
    # The time limit is checked before the epoch count: a run the Timer stops still closes its epoch, so
    # current_epoch can reach max_epochs although the epoch was cut short.
    if max_steps != -1 and steps >= max_steps:
        stopped_by = "max_steps"
    elif remaining is not None and remaining <= 0:
        stopped_by = "max_time"
    elif max_epochs is not None and max_epochs != -1 and epochs >= max_epochs:
        stopped_by = "max_epochs"
    elif trainer.interrupted:
        stopped_by = "interrupted"
    else:
        stopped_by = "should_stop"
    return {
        "completed": stopped_by in ("max_steps", "max_epochs"),
        "stopped_by": stopped_by,
        "global_step": steps,
        "max_steps": max_steps,
        "epochs": epochs,
        "max_epochs": max_epochs,
    }


class RunStatusCallback(Callback):
    """Says whether a run reached its planned length, and keeps a killed run's metrics.

    - At the end of ``fit``: prints a one-line summary, warns when the run stopped short (``max_time``,
      an interruption, a callback), and writes :func:`run_status` to ``<log dir>/run_status.json``.
    - After every checkpoint: flushes the loggers at the next batch start (the checkpoint's own step is
      logged only after the checkpoint callbacks run), so the metrics of every step a checkpoint holds are
      on disk even if the process is killed before the logger's own flush.
    """

    def __init__(self) -> None:
        self._flush = False

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._flush = True

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._flush:
            self._flush = False
            for logger in trainer.loggers:
                logger.save()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        status = run_status(trainer)
        planned = (f"{status['global_step']} of {status['max_steps']} steps" if status["max_steps"] != -1
                   else f"{status['epochs']} of {status['max_epochs']} epochs ({status['global_step']} steps)")
        if status["completed"]:
            rank_zero_info(f"Run completed: {planned}.")
        else:
            rank_zero_warn(f"Run INCOMPLETE: stopped by {status['stopped_by']} after {planned}; the model is "
                           "under-trained (raise trainer.max_time, or resume with --ckpt_path).")
        # trainer.log_dir broadcasts from rank zero: every rank must ask.
        self._write(Path(trainer.log_dir or trainer.default_root_dir), status)

    @rank_zero_only
    def _write(self, run_dir: Path, status: dict[str, Any]) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run_status.json").write_text(json.dumps(status, indent=2) + "\n")
