"""The LightningCLI of tl_lightning: ``python -m tl_lightning fit|validate|test|predict --config ...``.

    python -m tl_lightning fit --config configs/quickstart.yaml
    python -m tl_lightning fit --config configs/quickstart.yaml --print_config     # the resolved config
    python -m tl_lightning fit --config configs/quickstart.yaml --ckpt_path runs/quickstart/checkpoints/last.ckpt
    python -m tl_lightning fit --config configs/quickstart.yaml --overwrite true   # replace an earlier run
    python -m tl_lightning fit --help                                              # every option

Model and data are picked by ``class_path`` (``subclass_mode``), so one entry point drives SFT, PPO and
evaluation modules with any datamodule. Every tl_lightning datamodule has a ``.tokenizer`` attribute and
every tl_lightning module a ``tokenizer`` argument: the CLI links the first into the second when the
classes are instantiated, so the model's vocabulary and pad id always match the encoded data.

The run directory is ``trainer.default_root_dir``. A logger ``save_dir`` written as
``${trainer.default_root_dir}`` (as in ``configs/logger/*.yaml``) becomes that directory, and the
checkpoints and the HF export go to the logger's directory unless set explicitly, so
``--trainer.default_root_dir D`` puts every output under ``D``. ``fit`` locks its run directory for as long as
it runs (a second ``fit`` into it is refused in one line), and refuses a run directory that holds an earlier
run's outputs unless it resumes that run (``--ckpt_path``) or ``--overwrite true`` removes them. A resumed run
keeps the ``metrics.csv`` rows logged before its checkpoint and appends. Every ``fit`` stops with one line
when its loss becomes non-finite (:class:`~tl_lightning.callbacks.DivergenceGuard`), and writes its HF export
and then ``run_status.json`` atomically (:mod:`tl_lightning.rundir`).

Bad arguments (missing files, unknown template, format or benchmark names, out-of-range numbers) are
reported in one line before any model is built; ``TL_LIGHTNING_TRACEBACK=1`` shows the full traceback.
The console keeps what a user needs: Lightning's product tips, a deprecation notice from its own code and its
eval-mode note (frozen reference models are in eval mode on purpose) are filtered out (:func:`quiet_console`),
and the model summary drops its FLOPs count, always 0 here (:class:`~tl_lightning.callbacks.TLModelSummary`).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from tl_lightning.ranges import check_ranges
from tl_lightning.rundir import RUN_OUTPUTS, RunDirLock, lock_run_dir

__all__ = ["ROOT_PLACEHOLDER", "RUN_OUTPUTS", "TLCLI", "TLSaveConfigCallback", "check_config", "quiet_console"]

#: Written as a value under ``trainer`` (a logger's ``save_dir``, a callback's ``dirpath``): replaced by
#: ``trainer.default_root_dir``, or the working directory when that is unset (Lightning's own default). Not a
#: jsonargparse interpolation: that needs its ``omegaconf+`` mode and the omegaconf package for this one value,
#: and an unset run directory would interpolate to None, which CSVLogger refuses.
ROOT_PLACEHOLDER = "${trainer.default_root_dir}"

#: Printed under ``fit --help``: the module and data options are the chosen class's, listed by ``--model.help``.
HELP_EPILOG = (
    "Module and data options (use_mae, use_pkt, w_max, lr, template, ...) belong to the class a config picks and "
    "are not listed above. See them with `--model.help CLASS` and `--data.help CLASS`, e.g. "
    "`python -m tl_lightning fit --model.help tl_lightning.modules.sft.TLSFTModule` (any module's class path, as "
    "a config's class_path names it) and `--data.help tl_lightning.data.datamodule.ToolTrajectoryDataModule`, or "
    "print a config's resolved values with `--config FILE --print_config`."
)

#: Log lines (Lightning's ``rank_zero_info``) that carry nothing for a tl_lightning user: product tips, and the
#: note that the CLI's own model summary replaced Lightning's default one.
_NOISE_LOG_PREFIXES = ("💡 Tip:", "Trainer already configured with model summary callbacks")
#: Warnings about Lightning's or torch's own code (nothing the user can act on) or about something
#: tl_lightning does on purpose (frozen reference models and value heads sit in eval mode during RL).
_NOISE_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Found \d+ module\(s\) in eval mode at the start of training",
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE_LOG_PREFIXES)


def quiet_console() -> None:
    """Filter the console noise of a Lightning run (see :data:`_NOISE_LOG_PREFIXES`, :data:`_NOISE_WARNINGS`);
    idempotent. Called by :class:`TLCLI`; scripts that build a ``Trainer`` themselves may call it too."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    for pattern in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


class TLSaveConfigCallback(SaveConfigCallback):
    """Writes ``config.yaml`` to the log dir (as LightningCLI does) and hands the module the resolved config,
    which :class:`~tl_lightning.checkpoints.TokenizerCheckpointMixin` stores in every checkpoint.

    A module with an ``output_path()`` (the evaluation module) gets it there instead, beside its report: ``test``
    on a training run's directory must not overwrite that run's ``config.yaml``, and ``test`` without a run
    directory must not write one into the working directory."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if hasattr(pl_module, "resolved_config"):
            pl_module.resolved_config = self.parser.dump(self.config, skip_none=False, skip_validation=True)
        output_path = getattr(pl_module, "output_path", None)
        if callable(output_path) and not self.already_saved:
            if trainer.is_global_zero:
                out = Path(output_path())
                out.mkdir(parents=True, exist_ok=True)
                self.parser.save(self.config, str(out / self.config_filename), skip_none=False, overwrite=True,
                                 multifile=self.multifile)
            self.already_saved = True
            return
        super().setup(trainer, pl_module, stage)


# ---------------------------------------------------------------------------------------- early checks
def _init_args(spec: Any) -> dict[str, Any]:
    """The ``init_args`` of a ``class_path`` spec (a jsonargparse Namespace or a dict) as a dict."""
    if spec is None or isinstance(spec, (bool, str)):
        return {}
    init = spec.get("init_args") if hasattr(spec, "get") else None
    if init is None:
        return {}
    return init.as_dict() if hasattr(init, "as_dict") else dict(init)


def _check_checkpoint_file(value: Any, what: str) -> None:
    """A ``.ckpt`` file must be a whole torch archive (``torch.save`` writes a zip): a truncated or foreign
    file is one line here, not a traceback from deep inside ``torch.load``."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).endswith(".ckpt"):
        return
    path = Path(value).expanduser()
    if path.is_file() and not zipfile.is_zipfile(path):
        raise ValueError(f"{what}: {str(value)!r} is not a readable checkpoint (not a torch archive: truncated, "
                         "corrupt or not written by torch.save)")


def _check_trainer(trainer: Any) -> None:
    interval, limit = trainer.get("val_check_interval"), trainer.get("limit_train_batches")
    if isinstance(interval, int) and isinstance(limit, int) and not isinstance(limit, bool) and interval > limit:
        raise ValueError(
            f"trainer.val_check_interval ({interval}) exceeds trainer.limit_train_batches ({limit}): validation "
            f"would never run; set --trainer.val_check_interval to at most {limit} (or to a fraction such as 1.0)"
        )


def check_config(cfg: Any) -> None:
    """Raise ``ValueError`` (one line naming the argument) for what would otherwise fail after the model is
    built: missing or empty data files, impossible tokenizer/model/actor sources, unreadable ``.ckpt`` files,
    unknown template, format or benchmark names, out-of-range numbers, and a validation interval longer than
    the epoch."""
    from tl_lightning.data.paths import is_quickstart

    data, model = _init_args(cfg.get("data")), _init_args(cfg.get("model"))
    for key in ("train_path", "val_path", "test_path"):
        value = data.get(key)
        if value is None or is_quickstart(value):
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            raise ValueError(f"data.init_args.{key}: {value!r} " + ("is not a file" if path.exists() else "does not exist"))
        if path.stat().st_size == 0:
            raise ValueError(f"data.init_args.{key}: {value!r} is empty")
    for section, args in (("data", data), ("model", model)):
        check_ranges(f"{section}.init_args.", args)  # the classes' own table, before anything is built
        template = args.get("template")
        if isinstance(template, str):
            from tl_lightning.data.templates import TEMPLATES

            if template not in TEMPLATES:
                raise ValueError(f"{section}.init_args.template: unknown template {template!r}; choose one of {sorted(TEMPLATES)}")
    fmt = data.get("format")
    if isinstance(fmt, str) and fmt != "auto":
        from tl_lightning.data.readers import FORMATS

        if fmt not in FORMATS:
            raise ValueError(f"data.init_args.format: unknown trajectory format {fmt!r}; choose 'auto' or one of {sorted(FORMATS)}")
    benchmark = data.get("benchmark")
    if isinstance(benchmark, str):
        from tl_lightning.benchmarks import BENCHMARKS

        if benchmark not in BENCHMARKS:
            raise ValueError(f"data.init_args.benchmark: unknown benchmark {benchmark!r}; choose one of {sorted(BENCHMARKS)}")
    if isinstance(data.get("tokenizer"), str):
        from tl_lightning.tokenization import check_tokenizer_source

        check_tokenizer_source(data["tokenizer"])
    if isinstance(model.get("model"), str) or isinstance(model.get("actor"), str):
        from tl_lightning.models import check_model_source

        for key in ("model", "actor"):
            check_model_source(model.get(key), key)
            _check_checkpoint_file(model.get(key), f"model.init_args.{key}")
    _check_trainer(cfg.get("trainer"))


def _strings(spec: Any) -> Iterator[tuple[Any, Any, str]]:
    """Every (container, key, value) whose value is a string, inside nested Namespaces, dicts and lists."""
    if isinstance(spec, list):
        items = list(enumerate(spec))
    elif isinstance(spec, dict):
        items = list(spec.items())
    elif hasattr(spec, "as_dict"):  # a jsonargparse Namespace
        items = list(vars(spec).items())
    else:
        return
    for key, value in items:
        if isinstance(value, str):
            yield spec, key, value
        else:
            yield from _strings(value)


def _loggers(trainer: Any) -> list[Any]:
    logger = trainer.get("logger")
    return [lg for lg in (logger if isinstance(logger, list) else [logger]) if hasattr(lg, "get") and lg.get("class_path")]


# ---------------------------------------------------------------------------------------- run directory
def _run_dirs(trainer: Any) -> list[Path]:
    """The run directory and every logger directory whose path is fixed (explicit name and version)."""
    dirs = [Path(trainer.get("default_root_dir") or os.getcwd())]
    for logger in _loggers(trainer):
        args = _init_args(logger)
        name, version = args.get("name", ""), args.get("version", "")
        if args.get("save_dir") and isinstance(name, str) and isinstance(version, (str, int)):
            version = version if isinstance(version, str) else f"version_{version}"
            dirs.append(Path(args["save_dir"]) / name / version)
    return list(dict.fromkeys(d.resolve() for d in dirs))


@rank_zero_only
def prepare_run_dir(trainer: Any, resuming: bool, overwrite: bool) -> list[RunDirLock]:
    """Lock every run directory for this process, then refuse one holding an earlier run's outputs unless
    resuming; ``overwrite`` deletes them. Returns the locks (release them when the fit is over).

    The lock comes first: of two runs started together, the second is refused as busy before it could
    pass the "already holds a run" check, and ``--overwrite`` never deletes the outputs of a live run."""
    locks: list[RunDirLock] = []
    try:
        for run_dir in sorted(_run_dirs(trainer)):
            locks.append(lock_run_dir(run_dir))
            used = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
            if not used or resuming:
                continue
            if not overwrite:
                raise ValueError(
                    f"run directory {run_dir} already holds a run ({', '.join(used)}); resume it with "
                    f"--ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}, replace it with --overwrite true, "
                    "or choose another --trainer.default_root_dir"
                )
            for name in used:
                path = run_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


def _checkpoint_step(ckpt_path: Any) -> int | None:
    """The global step a checkpoint file was saved at; None when unknown (a distributed checkpoint directory)."""
    if not isinstance(ckpt_path, (str, os.PathLike)) or not Path(ckpt_path).is_file():
        return None
    import torch

    return int(torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True).get("global_step", 0))


@rank_zero_only
def keep_metrics_history(trainer: Trainer, ckpt_path: Any) -> None:
    """On resume, keep the ``metrics.csv`` rows logged before the checkpoint (CSVLogger deletes the file when it
    starts) and let the resumed run append to them; later rows (from after the checkpoint) are replaced."""
    from lightning.pytorch.loggers import CSVLogger

    step = _checkpoint_step(ckpt_path)
    for logger in trainer.loggers:
        if not isinstance(logger, CSVLogger):
            continue
        path = Path(logger.log_dir) / "metrics.csv"
        if not path.is_file():
            continue
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = [r for r in reader if step is None or not r.get("step") or int(float(r["step"])) < step]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "previous log files will be deleted": they are written back below
            writer = logger.experiment
        with open(path, "w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=header)
            out.writeheader()
            out.writerows(rows)
        writer.metrics_keys = header


class TLCLI(LightningCLI):
    """LightningCLI with subclass-mode model and data, the tokenizer link, early argument checks, run
    directories that follow ``trainer.default_root_dir`` (locked while a ``fit`` runs), a divergence guard, a
    run-status report, a Rich progress bar and a compact model summary."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", TLSaveConfigCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)  # modules configure their own optimizers
        # Lightning's True seeds with 0 after a "No seed found" warning; 0 says the same without the warning.
        kwargs.setdefault("seed_everything_default", 0)
        parser_kwargs = kwargs["parser_kwargs"] = dict(kwargs.get("parser_kwargs") or {})
        for sub in ("fit", "validate", "test", "predict"):
            parser_kwargs[sub] = {"epilog": HELP_EPILOG, **(parser_kwargs.get(sub) or {})}
        self._locks: list[RunDirLock] = []
        quiet_console()
        try:
            super().__init__(*args, **kwargs)  # parses, instantiates and runs the subcommand
        finally:
            for lock in self._locks:
                lock.release()

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        # Checked here, not with the rest (check_config): LightningCLI reads --ckpt_path's hyperparameters right
        # after parsing, and a corrupt file would fail there with torch's many-line message.
        sub = self.config.get("subcommand")
        if sub:
            _check_checkpoint_file(self.config[sub].get("ckpt_path"), "ckpt_path")

    def add_arguments_to_parser(self, parser: Any) -> None:
        # Applied on instantiation: the datamodule loads the tokenizer, the module receives the object.
        parser.link_arguments("data.tokenizer", "model.init_args.tokenizer", apply_on="instantiate")
        parser.add_argument(
            "--overwrite", type=bool, default=False,
            help="fit: delete an earlier run's outputs in the run directory (default: refuse, unless --ckpt_path resumes it)",
        )

    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        trainer_cfg = cfg.trainer
        root = str(trainer_cfg.get("default_root_dir") or os.getcwd())
        for section in ("logger", "callbacks"):
            for container, key, value in _strings(trainer_cfg.get(section)):
                if ROOT_PLACEHOLDER in value:
                    container[key] = value.replace(ROOT_PLACEHOLDER, root)
        check_config(cfg)
        # Imported here, not at the top: `fit --help` never needs the data layer.
        from tl_lightning.data.paths import is_quickstart, names_large_split

        data = _init_args(cfg.get("data"))
        if any(is_quickstart(v) for v in data.values()):
            from tl_lightning.synthetic import ensure_quickstart_data

            ensure_quickstart_data(large=any(names_large_split(v) for v in data.values()))
        if self.subcommand == "fit":
            resuming = cfg.get("ckpt_path") is not None
            self._locks = prepare_run_dir(trainer_cfg, resuming=resuming, overwrite=bool(cfg.get("overwrite"))) or []

        from tl_lightning.callbacks import DivergenceGuard, RunStatusCallback, TLModelSummary, TLProgressBar

        callbacks = trainer_cfg.get("callbacks") or []
        # The guard first: it must stop a diverged run before the status callback calls it complete.
        defaults: list[Any] = [DivergenceGuard(), RunStatusCallback()] if self.subcommand in (None, "fit") else []
        has_bar = any("ProgressBar" in str(getattr(c, "class_path", c)) for c in callbacks)
        if trainer_cfg.get("enable_progress_bar") is not False and not has_bar:
            defaults.append(TLProgressBar())
        has_summary = any("ModelSummary" in str(getattr(c, "class_path", c)) for c in callbacks)
        if trainer_cfg.get("enable_model_summary") is not False and not has_summary:
            defaults.append(TLModelSummary())
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": defaults}

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        assert sum(isinstance(c, ProgressBar) for c in trainer.callbacks) <= 1
        assert sum(isinstance(c, ModelSummary) for c in trainer.callbacks) <= 1
        return trainer

    def before_fit(self) -> None:
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path is not None:
            keep_metrics_history(self.trainer, ckpt_path)
