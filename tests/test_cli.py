"""The entry point: subcommands, --help / --print_config, the tokenizer link, the Rich bar, config in checkpoints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import RichProgressBar

from tl_lightning.__main__ import EXTRA_COMMANDS, SUBCOMMANDS, main
from tl_lightning.cli import TLCLI

ROOT = Path(__file__).resolve().parents[1]

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
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert set(SUBCOMMANDS) == set(TLCLI.subcommands()) | set(EXTRA_COMMANDS)  # the fast help stays in sync
    for cmd in SUBCOMMANDS:
        assert f"\n  {cmd} " in out


def test_top_level_help_starts_without_lightning():
    """`python -m tl_lightning --help` is a real process: it must answer without importing Lightning or torch
    (about 8 s of imports on 2 busy cores; the answer itself needs neither)."""
    code = ("import sys; from tl_lightning.__main__ import main; main(['--help']); "
            "print(sorted(m for m in ('lightning', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "subcommands:" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"
    assert subprocess.run([sys.executable, "-m", "tl_lightning", "--help"], capture_output=True, timeout=60,
                          cwd=ROOT).returncode == 0


def test_fit_help_says_how_to_see_a_modules_options(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--model.help" in out and "use_mae" in out and "w_max" in out and "TLSFTModule" in out
    with pytest.raises(SystemExit):
        main(["fit", "--model.help", "tl_lightning.modules.sft.TLSFTModule"])  # as the help says
    out = capsys.readouterr().out
    assert "--model.use_mae" in out and "--model.w_max" in out


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


# ---------------------------------------------------------------------------------------- run directories
QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def _quickstart_args(root, small_data, *extra):
    train, val = small_data
    return ["fit", "--config", str(QUICKSTART), f"--trainer.default_root_dir={root}", "--trainer.max_steps=2",
            "--trainer.val_check_interval=2", "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false",
            f"--model.init_args.tiny_config={json.dumps(TINY)}", f"--data.init_args.train_path={train}",
            f"--data.init_args.val_path={val}", "--data.init_args.max_length=256", "--data.init_args.cache=false", *extra]


def test_default_root_dir_holds_every_output(tmp_path, small_data, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    root = tmp_path / "D"
    assert main(_quickstart_args(root, small_data)) == 0
    assert {"metrics.csv", "config.yaml", "hparams.yaml", "checkpoints", "hf", "run_status.json"} <= {p.name for p in root.iterdir()}
    assert (root / "checkpoints" / "last.ckpt").is_file() and (root / "hf" / "config.json").is_file()
    assert list(cwd.iterdir()) == []  # nothing under ./runs/quickstart
    status = json.loads((root / "run_status.json").read_text())
    assert status["completed"] is True and status["global_step"] == 2


def test_rerun_into_a_used_run_directory_refuses_unless_resumed_or_overwritten(tmp_path, small_data, capsys):
    root = tmp_path / "run"
    assert main(_quickstart_args(root, small_data)) == 0
    first = (root / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(_quickstart_args(root, small_data)) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--ckpt_path" in err and "--overwrite true" in err
    assert len(err.strip().splitlines()) == 2  # the message and the traceback hint
    assert (root / "checkpoints" / "last.ckpt").stat().st_mtime_ns == first
    assert main(_quickstart_args(root, small_data, "--overwrite=true")) == 0
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]  # no -v1
    assert (root / "checkpoints" / "last.ckpt").stat().st_mtime_ns != first


def test_a_run_stopped_by_max_time_says_so(tmp_path, small_data):
    root = tmp_path / "run"
    with pytest.warns(UserWarning, match=r"INCOMPLETE: stopped by max_time after \d+ of 100000 steps"):
        assert main(_quickstart_args(root, small_data, "--trainer.max_steps=100000", "--trainer.max_time=00:00:00:01")) == 0
    status = json.loads((root / "run_status.json").read_text())
    assert status == {**status, "completed": False, "stopped_by": "max_time", "max_steps": 100000}
    assert 0 < status["global_step"] < 100000


# ---------------------------------------------------------------------------------------- early, one-line errors
@pytest.mark.parametrize(("override", "message"), [
    ("--data.init_args.train_path=/no/train.jsonl", "data.init_args.train_path: '/no/train.jsonl' does not exist"),
    ("--data.init_args.tokenizer=/no/tok", "tokenizer '/no/tok' is neither a local directory nor a shipped name"),
    ("--model.init_args.model=/no/model", "model '/no/model' is neither a local directory"),
    ("--data.init_args.template=python_dok", "unknown template 'python_dok'"),
    ("--data.init_args.format=opneai", "unknown trajectory format 'opneai'"),
    ("--data.init_args.batch_size=0", "data.init_args.batch_size must be >= 1, got 0"),
    ("--model.init_args.w_max=-3", "model.init_args.w_max must be >= 1, got -3"),
    ("--trainer.limit_train_batches=1", "trainer.val_check_interval (2) exceeds trainer.limit_train_batches (1)"),
])
def test_bad_arguments_fail_in_one_line_before_any_model_is_built(tmp_path, small_data, capsys, monkeypatch, override, message):
    from tl_lightning.modules.sft import TLSFTModule

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the argument check")

    monkeypatch.setattr(TLSFTModule, "__init__", no_model)
    assert main(_quickstart_args(tmp_path / "run", small_data, override)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[0] and err[1].startswith("(set TL_LIGHTNING_TRACEBACK=1")


def test_empty_data_file_fails_early(tmp_path, small_data, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(_quickstart_args(tmp_path / "run", small_data, f"--data.init_args.train_path={empty}")) == 1
    assert "is empty" in capsys.readouterr().err


def test_ppo_quickstart_validation_interval_checked_against_limit_train_batches(capsys):
    config = Path(__file__).resolve().parents[1] / "configs" / "ppo_quickstart.yaml"
    assert main(["fit", "--config", str(config), "--model.init_args.actor=tl-tiny", "--trainer.limit_train_batches=3"]) == 1
    assert "trainer.val_check_interval (15) exceeds trainer.limit_train_batches (3)" in capsys.readouterr().err


def test_traceback_switch_reraises(tmp_path, small_data, monkeypatch):
    monkeypatch.setenv("TL_LIGHTNING_TRACEBACK", "1")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        main(_quickstart_args(tmp_path / "run", small_data, "--data.init_args.batch_size=0"))


def test_run_status_names_the_time_limit_even_when_the_cut_epoch_was_counted():
    # The Timer stops a run mid-epoch, yet Lightning still closes that epoch: current_epoch == max_epochs.
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from tl_lightning.callbacks import run_status

    timer = Timer(duration="00:00:00:01")
    timer.time_remaining = lambda: 0.0
    trainer = SimpleNamespace(global_step=7, current_epoch=1, max_steps=-1, max_epochs=1, callbacks=[timer],
                              interrupted=False)
    status = run_status(trainer)
    assert status["stopped_by"] == "max_time" and status["completed"] is False
    timer.time_remaining = lambda: 30.0
    assert run_status(trainer) == {**status, "stopped_by": "max_epochs", "completed": True}


# ---------------------------------------------------------------------------------------- a tokenizer larger than the model
@pytest.fixture
def short_embedding_export(tmp_path):
    """An HF export whose embedding has 10 rows fewer than the tokenizer saved beside it (a mismatched export)."""
    from tl_lightning.models import load_causal_lm
    from tl_lightning.tokenization import load_tokenizer

    tok = load_tokenizer("tl-tiny")
    model = load_causal_lm("tl-tiny", tokenizer=tok, tiny_config=TINY)
    model.resize_token_embeddings(len(tok) - 10)
    out = tmp_path / "short"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, len(tok)


def test_test_refuses_a_model_smaller_than_its_tokenizer(short_embedding_export, tmp_path, capsys):
    export, n = short_embedding_export
    assert main(["test", "--config", str(ROOT / "configs" / "eval" / "synthetic_single.yaml"),
                 f"--model.init_args.model={export}", "--data.init_args.limit=2", "--trainer.enable_progress_bar=false",
                 f"--trainer.default_root_dir={tmp_path}"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == [f"error: model {str(export)!r} has {n - 10} embedding rows but its tokenizer has {n} tokens: it was "
                   f"not trained with this tokenizer (ids >= {n - 10} would read untrained rows); give the tokenizer "
                   "it was trained with (an HF export or checkpoint carries its own)"]
    assert not (tmp_path / "eval").exists()


def test_fit_announces_growing_the_embedding(short_embedding_export, tmp_path, small_data):
    export, n = short_embedding_export
    with pytest.warns(UserWarning, match=f"has {n - 10} embedding rows but its tokenizer has {n} tokens: growing"):
        assert main(_quickstart_args(tmp_path / "run", small_data, f"--model.init_args.model={export}",
                                     "--model.init_args.tiny_config=null", "--data.init_args.tokenizer=tl-tiny")) == 0


# ---------------------------------------------------------------------------------------- data MAE masks entirely
def test_fit_refuses_data_that_mae_masks_entirely(tmp_path, small_data, capsys):
    """Every step erroneous and no final answer: MAE leaves nothing to train on (the run used to end "completed"
    with train/loss 0.0 and val/loss nan). Without MAE the same data trains."""
    from tl_lightning.data.readers import write_openai_jsonl
    from tl_lightning.data.schema import Message, Step, Tool, ToolCall, Trajectory

    tools = [Tool("get_weather", "Weather.", {"type": "object", "properties": {"city": {"type": "string"}}}, ("city",))]
    bad = Step([ToolCall("get_weather", {"town": "Rome"})],
               feedback=["get_weather() got an unexpected keyword argument 'town'"])
    path = tmp_path / "all_errors.jsonl"
    write_openai_jsonl([Trajectory(f"t{i}", tools, [Message("user", "Rome?")], [bad, bad]) for i in range(8)], path)
    args = _quickstart_args(tmp_path / "run", small_data, f"--data.init_args.train_path={path}",
                            f"--data.init_args.val_path={path}", "--trainer.val_check_interval=1")
    assert main(args) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith(f"error: train data {path}: MAE (use_mae) masks all ")
    assert "every one of the 16 steps is erroneous and there are 0 final answers; nothing to train on" in err[0]
    assert not (tmp_path / "run" / "hf").exists()
    assert main([*args[:1], *args[1:], "--model.init_args.use_mae=false", f"--trainer.default_root_dir={tmp_path / 'run2'}"]) == 0


# ---------------------------------------------------------------------------------------- the console
NOISE = ("💡 Tip", "litlogger", "litmodels", "FLOPs", "LeafSpec", "transfer_batch_to_device", "module(s) in eval mode",
         "Epoch 0/-2", "No seed found", "Trainer already configured")


@pytest.mark.slow
def test_a_fit_and_a_test_print_what_a_user_needs_and_no_noise(tmp_path, small_data):
    """Real processes, as a user runs them: every line of noise the issue listed is gone, the useful ones stay."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    root = tmp_path / "run"
    fit = [a for a in _quickstart_args(root, small_data, "--model=sft_helpers.FrozenPartSFT", f"--model.init_args.tiny_config={json.dumps(TINY)}")
           if a != "--trainer.enable_progress_bar=false"]
    out = subprocess.run([sys.executable, "-m", "tl_lightning", *fit], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    assert [n for n in NOISE if n in console] == []
    assert "Run completed: 2 of 2 steps." in console and "Trainable params" in console and "Epoch 0 " in console
    test = ["test", "--config", str(ROOT / "configs" / "eval" / "synthetic_single.yaml"), f"--model.init_args.model={root / 'hf'}",
            "--data.init_args.limit=2", "--model.init_args.max_new_tokens=4", f"--trainer.default_root_dir={root}"]
    out = subprocess.run([sys.executable, "-m", "tl_lightning", *test], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    assert [n for n in NOISE if n in console] == []
    assert "synthetic-test_single [corrected]: TS=" in console and "(2 cases, " in console


# ---------------------------------------------------------------------------------------- unreadable checkpoints
@pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04 cut"], ids=["garbage", "truncated-zip"])
def test_a_corrupt_checkpoint_is_one_line_naming_the_file(tmp_path, small_data, capsys, content):
    """As a `test` model (it used to print 8 lines of jsonargparse Union text) and as `fit --ckpt_path`."""
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(content)
    test = ["test", "--config", str(ROOT / "configs" / "eval" / "synthetic_single.yaml"), f"--model.init_args.model={bad}",
            f"--trainer.default_root_dir={tmp_path}"]
    fit = _quickstart_args(tmp_path / "run", small_data, f"--ckpt_path={bad}")
    for args, what in ((test, "model.init_args.model"), (fit, "ckpt_path")):
        assert main(args) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line and not line.startswith(("Seed", "INFO"))]
        assert err == [f"error: {what}: {str(bad)!r} is not a readable checkpoint (not a torch archive: truncated, corrupt "
                       "or not written by torch.save)", "(set TL_LIGHTNING_TRACEBACK=1 for the full traceback)"]


def test_an_error_raised_while_a_model_is_built_is_its_own_line_not_jsonargparse_union_text(tmp_path, capsys):
    import torch

    not_lightning = tmp_path / "weights.ckpt"
    torch.save({"weights": torch.zeros(2)}, not_lightning)  # a torch archive, but no Lightning checkpoint
    assert main(["test", "--config", str(ROOT / "configs" / "eval" / "synthetic_single.yaml"),
                 f"--model.init_args.model={not_lightning}", f"--trainer.default_root_dir={tmp_path}"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line and not line.startswith(("Seed", "INFO"))]
    assert err == [f"error: {not_lightning}: not a Lightning checkpoint (no 'state_dict')",
                   "(set TL_LIGHTNING_TRACEBACK=1 for the full traceback)"]
