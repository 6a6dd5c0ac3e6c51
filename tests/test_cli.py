"""The entry point: subcommands, --help / --print_config, the tokenizer link, the Rich bar, config in checkpoints."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import RichProgressBar

from tl_lightning.__main__ import EXTRA_COMMANDS, main
from tl_lightning.cli import TLCLI

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
        "intermediate_size": 64}


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["tl-lightning"])  # LightningCLI warns when sys.argv and args= both exist


@pytest.fixture
def config(tmp_path):
    cfg = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 2, "logger": False, "default_root_dir": str(tmp_path),
                    "limit_val_batches": 1, "num_sanity_val_steps": 0, "enable_model_summary": False},
        "model": {"class_path": "tl_lightning.modules.sft.TLSFTModule",
                  "init_args": {"lr": 1e-3, "tiny_config": TINY}},
        "data": {"class_path": "sft_helpers.HandBuiltDataModule", "init_args": {"batch_size": 4}},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ["fit", "validate", "test", "predict", "score"]:
        assert cmd in out


def test_extra_commands_do_not_shadow_lightning_subcommands():
    assert not set(EXTRA_COMMANDS) & set(TLCLI.subcommands())


def test_score_is_dispatched_lazily_to_the_evaluation_module(monkeypatch):
    calls = []
    fake = types.ModuleType("tl_lightning.evaluation.score")
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "tl_lightning.evaluation.score", fake)
    assert main(["score", "--predictions", "p.jsonl"]) == 0
    assert calls == [["--predictions", "p.jsonl"]]


def test_print_config_shows_the_resolved_config(config, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(config), "--model.init_args.use_pkt", "false", "--print_config"])
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "tl_lightning.modules.sft.TLSFTModule"
    assert printed["model"]["init_args"]["use_pkt"] is False and printed["model"]["init_args"]["w_max"] == 9.0
    assert "tokenizer" not in printed["model"]["init_args"] or printed["model"]["init_args"]["tokenizer"] is None


def test_tokenizer_link_and_rich_progress_bar(config):
    cli = TLCLI(args=["--config", str(config)], run=False)  # run=False: no subcommand
    assert cli.model.tokenizer is cli.datamodule.tokenizer
    assert cli.model.model.config.vocab_size == len(cli.datamodule.tokenizer)
    assert cli.model.model.config.pad_token_id == cli.datamodule.tokenizer.pad_token_id
    assert sum(isinstance(c, RichProgressBar) for c in cli.trainer.callbacks) == 1
    cli = TLCLI(args=["--config", str(config), "--trainer.enable_progress_bar", "false"], run=False)
    assert not any(isinstance(c, RichProgressBar) for c in cli.trainer.callbacks)


def test_fit_writes_config_and_tokenizer_into_the_checkpoint(config, tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    main(["fit", "--config", str(config), "--trainer.enable_progress_bar", "false",
          "--trainer.callbacks+=ModelCheckpoint", f"--trainer.callbacks.dirpath={ckpt_dir}",
          "--trainer.callbacks.save_last=true"])
    ckpt = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    saved = yaml.safe_load(ckpt["config"])
    assert saved["model"]["init_args"]["tiny_config"] == TINY and saved["data"]["class_path"].endswith("HandBuiltDataModule")
    assert "tokenizer.json" in ckpt["tokenizer"]
    assert (tmp_path / "config.yaml").exists()  # LightningCLI's own copy, in the log dir
