"""Callbacks of tl_lightning.

    trainer:
      callbacks:
        - class_path: tl_lightning.callbacks.HFExportCallback
          init_args: {dirpath: null}     # null: <log_dir>/hf

:class:`RunStatusCallback` and :class:`DivergenceGuard` are added by the CLI to every ``fit``.

What a finished ``fit`` leaves, in this order: the HF export (written to ``.hf.partial`` and renamed into
place) and then ``run_status.json`` (written to a temporary file and renamed), so a kill at any moment
leaves either no status or a status whose export is whole (:mod:`tl_lightning.rundir`).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar, Timer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from tl_lightning.rundir import RUN_STATUS, replace_dir, write_json_atomic

__all__ = [
    "DivergenceError",
    "DivergenceGuard",
    "HFExportCallback",
    "RunStatusCallback",
    "TLModelSummary",
    "TLProgressBar",
    "run_status",
]


class HFExportCallback(Callback):
    """At the end of ``fit``, write the model and tokenizer in Hugging Face format.

    The result loads with plain ``AutoModelForCausalLM.from_pretrained(dirpath)`` and
    ``AutoTokenizer.from_pretrained(dirpath)``; no tl_lightning needed. The module must have an
    ``export_hf(directory)`` method (every tl_lightning training module does). The export is written to
    ``.<name>.partial`` beside ``dirpath`` and renamed into place when whole, so ``dirpath`` never holds half
    an export (:func:`tl_lightning.rundir.replace_dir`).

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
        final = self.resolve_dir(trainer)
        partial = final.with_name(f".{final.name}.partial")
        if trainer.is_global_zero and partial.exists():
            shutil.rmtree(partial)  # a killed earlier export
        pl_module.export_hf(partial)  # every rank: a sharded model is gathered first
        if trainer.is_global_zero:
            replace_dir(partial, final)
        trainer.strategy.barrier("hf-export")
        rank_zero_info(f"Hugging Face export written to {final}")


class DivergenceError(RuntimeError):
    """The training loss or the weights became non-finite; ``step`` is the first step seen so (or None)."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


def _loss_of(outputs: Any) -> torch.Tensor | None:
    """The loss a ``training_step`` returned (a tensor, or a dict's ``loss``); None for manual optimization."""
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) and isinstance(outputs.get("loss"), torch.Tensor):
        return outputs["loss"]
    return None


class DivergenceGuard(Callback):
    """Stops a ``fit`` whose training loss becomes non-finite, naming the first such step, before a checkpoint
    or an export of NaN weights is written.

    Every step's loss is tested on the device and the first bad step is kept there, so the check adds no
    host sync to a step; the flag is read every ``check_every_n_steps`` steps (default: the trainer's
    ``log_every_n_steps``, where the logger syncs anyway), before every checkpoint and at the end of training,
    where the weights themselves are checked too. A module with manual optimization returns no loss: for it
    the logged ``train/...loss...`` values are read at the same interval. On divergence it raises
    :class:`DivergenceError`: the run ends with one line naming the step, ``run_status.json`` says
    ``stopped_by: diverged`` (:class:`RunStatusCallback`) and no export is written.
    (``trainer.detect_anomaly`` finds the op, at a far higher price: it is for debugging, this is for every run.)
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self._first_bad: torch.Tensor | None = None
        self._step = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._first_bad = torch.full((), -1, dtype=torch.long, device=pl_module.device)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._step = trainer.global_step  # the 0-based optimizer step this batch belongs to (metrics.csv's step)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = _loss_of(outputs)
        if loss is not None and self._first_bad is not None:
            bad = ~torch.isfinite(loss.detach()).all()
            step = torch.full_like(self._first_bad, self._step)
            self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)
        every = self.check_every_n_steps or trainer.log_every_n_steps or 1
        if (self._step + 1) % every == 0:
            self.check(trainer, logged=loss is None)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.training:
            self.check(trainer, logged=True)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(trainer, logged=True)
        bad = [name for name, p in pl_module.named_parameters() if not bool(torch.isfinite(_local(p)).all())]
        if trainer.strategy.reduce_boolean_decision(bool(bad), all=False):
            names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise DivergenceError(
                f"training diverged: the weights are not finite ({names or 'on another rank'}) after step "
                f"{trainer.global_step}; no export written (lower the learning rate or clip gradients)"
            )

    def check(self, trainer: Trainer, logged: bool = False) -> None:
        """Raise :class:`DivergenceError` if a step's loss (or, with ``logged``, a logged training loss) is not finite
        on any rank (every rank decides together, so none is left waiting in a collective)."""
        step = int(self._first_bad) if self._first_bad is not None else -1  # the one host sync, every N steps
        metric = None
        for key, value in trainer.callback_metrics.items() if logged else ():
            if key.startswith("train/") and "loss" in key and isinstance(value, torch.Tensor) and value.numel() == 1:
                if not math.isfinite(float(value)):
                    metric = f"{key} is {float(value)} at step {self._step}"
                    break
        if not trainer.strategy.reduce_boolean_decision(step >= 0 or metric is not None, all=False):
            return
        where = (f"the loss became non-finite at step {step} (see metrics.csv)" if step >= 0
                 else metric or "the loss became non-finite on another rank")
        raise DivergenceError(f"training diverged: {where}; the run stops without an export (lower the learning rate "
                              "or clip gradients)", step if step >= 0 else (self._step if metric else None))


def _local(p: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter (an FSDP2 DTensor's local shard; any other tensor as it is)."""
    return p.to_local() if hasattr(p, "to_local") else p


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


class TLProgressBar(RichProgressBar):
    """Lightning's Rich bar, labelled ``Epoch 3`` in a run bounded by steps (Lightning shows ``Epoch 3/-2``
    when ``max_epochs`` is -1) and ``Epoch 3/9`` in one bounded by epochs."""

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        text = f"Epoch {current_epoch}" + (f"/{max_epochs - 1}" if max_epochs is not None and max_epochs > 0 else "")
        return f"{text:{len(self.validation_description)}}"  # padded as Lightning's, so the bars do not flicker


class TLModelSummary(RichModelSummary):
    """Lightning's Rich model summary without its FLOPs column and totals (always 0: Lightning counts them only
    for a module with an ``example_input_array``) and the train/eval module counts."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0, **kwargs: Any) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        columns = dict(summary_data)
        table = Table(header_style=kwargs.get("header_style", "bold magenta"))
        for name, justify in ((" ", "left"), ("Name", "left"), ("Type", "left"), ("Params", "right")):
            table.add_column(name, justify=justify, style="dim" if name == " " else None)
        for row in zip(columns[" "], columns["Name"], columns["Type"], columns["Params"], strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        console.print(
            f"[bold]Trainable params[/]: {get_human_readable_count(int(trainable_parameters))}   "
            f"[bold]Total params[/]: {get_human_readable_count(int(total_parameters))}   "
            f"[bold]Size[/]: {get_formatted_model_size(model_size)} MB"
        )


class RunStatusCallback(Callback):
    """Says whether a run reached its planned length, and keeps a killed run's metrics.

    - At the end of training: prints a one-line summary and warns when the run stopped short (``max_time``,
      an interruption, a callback).
    - After everything else of the ``fit`` (the HF export included): writes :func:`run_status` to
      ``<log dir>/run_status.json``, atomically. Written last, it vouches for the outputs before it.
    - When the ``fit`` fails: writes ``completed: false`` with ``stopped_by`` = ``diverged``
      (:class:`DivergenceError`), ``interrupted`` (Ctrl-C, SIGTERM) or ``error``, and the ``error`` line.
    - After every checkpoint: flushes the loggers at the next batch start (the checkpoint's own step is
      logged only after the checkpoint callbacks run), so the metrics of every step a checkpoint holds are
      on disk even if the process is killed before the logger's own flush.
    """

    def __init__(self) -> None:
        self._flush = False
        self._run_dir: Path | None = None
        self._status: dict[str, Any] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # trainer.log_dir broadcasts from rank zero: every rank asks here, never from a failing rank alone.
        self._run_dir = Path(trainer.log_dir or trainer.default_root_dir)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._flush = True

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._flush:
            self._flush = False
            for logger in trainer.loggers:
                logger.save()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        status = self._status = run_status(trainer)
        planned = (f"{status['global_step']} of {status['max_steps']} steps" if status["max_steps"] != -1
                   else f"{status['epochs']} of {status['max_epochs']} epochs ({status['global_step']} steps)")
        if status["completed"]:
            rank_zero_info(f"Run completed: {planned}.")
        else:
            rank_zero_warn(f"Run INCOMPLETE: stopped by {status['stopped_by']} after {planned}; the model is "
                           "under-trained (raise trainer.max_time, or resume with --ckpt_path).")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":  # called after every on_fit_end hook (the export), and only when the fit succeeded
            self._write(self._status or run_status(trainer))

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, DivergenceError):
            stopped_by = "diverged"
        elif isinstance(exception, (KeyboardInterrupt, SystemExit)):  # Ctrl-C; SIGTERM (SIGTERMException)
            stopped_by = "interrupted"
        else:
            stopped_by = "error"
        status = {**run_status(trainer), "completed": False, "stopped_by": stopped_by}
        status["error"] = str(exception).splitlines()[0] if str(exception) else type(exception).__name__
        if isinstance(exception, DivergenceError):
            status["diverged_at_step"] = exception.step
        self._write(status)

    @rank_zero_only
    def _write(self, status: dict[str, Any]) -> None:
        if self._run_dir is not None:
            write_json_atomic(self._run_dir / RUN_STATUS, status)
