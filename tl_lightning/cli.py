"""The LightningCLI of tl_lightning: ``python -m tl_lightning fit|validate|test|predict --config ...``.

    python -m tl_lightning fit --config configs/quickstart.yaml
    python -m tl_lightning fit --config configs/quickstart.yaml --print_config     # the resolved config
    python -m tl_lightning fit --help                                              # every option
    python -m tl_lightning fit --model.help tl_lightning.modules.sft.TLSFTModule   # a module's options

Model and data are picked by ``class_path`` (``subclass_mode``), so one entry point drives SFT, PPO and
evaluation modules with any datamodule. Every tl_lightning datamodule has a ``.tokenizer`` attribute and
every tl_lightning module a ``tokenizer`` argument: the CLI links the first into the second when the
classes are instantiated, so the model's vocabulary and pad id always match the encoded data.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

__all__ = ["TLCLI", "TLSaveConfigCallback"]


class TLSaveConfigCallback(SaveConfigCallback):
    """Writes ``config.yaml`` to the log dir (as LightningCLI does) and hands the module the resolved config,
    which :class:`~tl_lightning.checkpoints.TokenizerCheckpointMixin` stores in every checkpoint."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if hasattr(pl_module, "resolved_config"):
            pl_module.resolved_config = self.parser.dump(self.config, skip_none=False, skip_validation=True)
        super().setup(trainer, pl_module, stage)


class TLCLI(LightningCLI):
    """LightningCLI with subclass-mode model and data, the tokenizer link and a Rich progress bar."""

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

    def before_instantiate_classes(self) -> None:
        trainer_cfg = self.config[self.subcommand].trainer if self.subcommand else self.config.trainer
        callbacks = trainer_cfg.get("callbacks") or []
        has_bar = any("ProgressBar" in str(getattr(c, "class_path", c)) for c in callbacks)
        if trainer_cfg.get("enable_progress_bar") is not False and not has_bar:
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [RichProgressBar()]}

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        assert sum(isinstance(c, ProgressBar) for c in trainer.callbacks) <= 1
        return trainer
