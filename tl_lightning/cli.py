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
``--trainer.default_root_dir D`` puts every output under ``D``. ``fit`` refuses a run directory that
holds an earlier run's outputs unless it resumes that run (``--ckpt_path``) or ``--overwrite true``
removes them. A resumed run keeps the ``metrics.csv`` rows logged before its checkpoint and appends.

Bad arguments (missing files, unknown template, format or benchmark names, out-of-range numbers) are
reported in one line before any model is built; ``TL_LIGHTNING_TRACEBACK=1`` shows the full traceback.
"""

from __future__ import annotations

import csv
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from tl_lightning.data.paths import is_quickstart
from tl_lightning.ranges import check_ranges

__all__ = ["ROOT_PLACEHOLDER", "RUN_OUTPUTS", "TLCLI", "TLSaveConfigCallback", "check_config"]

#: Written as a value under ``trainer`` (a logger's ``save_dir``, a callback's ``dirpath``): replaced by
#: ``trainer.default_root_dir``, or the working directory when that is unset (Lightning's own default). Not a
#: jsonargparse interpolation: that needs its ``omegaconf+`` mode and the omegaconf package for this one value,
#: and an unset run directory would interpolate to None, which CSVLogger refuses.
ROOT_PLACEHOLDER = "${trainer.default_root_dir}"
#: What a run leaves in its run directory: their presence marks the directory as used.
RUN_OUTPUTS = ("checkpoints", "hf", "metrics.csv", "config.yaml", "hparams.yaml", "run_status.json")


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


def _check_trainer(trainer: Any) -> None:
    interval, limit = trainer.get("val_check_interval"), trainer.get("limit_train_batches")
    if isinstance(interval, int) and isinstance(limit, int) and not isinstance(limit, bool) and interval > limit:
        raise ValueError(
            f"trainer.val_check_interval ({interval}) exceeds trainer.limit_train_batches ({limit}): validation "
            f"would never run; set --trainer.val_check_interval to at most {limit} (or to a fraction such as 1.0)"
        )


def check_config(cfg: Any) -> None:
    """Raise ``ValueError`` (one line naming the argument) for what would otherwise fail after the model is
    built: missing or empty data files, impossible tokenizer/model/actor sources, unknown template,
    format or benchmark names, out-of-range numbers, and a validation interval longer than the epoch."""
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
def prepare_run_dir(trainer: Any, resuming: bool, overwrite: bool) -> None:
    """Refuse a run directory holding an earlier run's outputs unless resuming; ``overwrite`` deletes them."""
    for run_dir in _run_dirs(trainer):
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
    directories that follow ``trainer.default_root_dir``, a run-status report and a Rich progress bar."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", TLSaveConfigCallback)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("auto_configure_optimizers", False)  # modules configure their own optimizers
        super().__init__(*args, **kwargs)

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
        data = _init_args(cfg.get("data"))
        if any(is_quickstart(v) for v in data.values()):
            from tl_lightning.synthetic import ensure_quickstart_data

            ensure_quickstart_data()
        if self.subcommand == "fit":
            prepare_run_dir(trainer_cfg, resuming=cfg.get("ckpt_path") is not None, overwrite=bool(cfg.get("overwrite")))

        from tl_lightning.callbacks import RunStatusCallback

        callbacks = trainer_cfg.get("callbacks") or []
        defaults: list[Any] = [RunStatusCallback()] if self.subcommand in (None, "fit") else []
        has_bar = any("ProgressBar" in str(getattr(c, "class_path", c)) for c in callbacks)
        if trainer_cfg.get("enable_progress_bar") is not False and not has_bar:
            defaults.append(RichProgressBar())
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": defaults}

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        assert sum(isinstance(c, ProgressBar) for c in trainer.callbacks) <= 1
        return trainer

    def before_fit(self) -> None:
        ckpt_path = self.config[self.subcommand].get("ckpt_path")
        if ckpt_path is not None:
            keep_metrics_history(self.trainer, ckpt_path)
