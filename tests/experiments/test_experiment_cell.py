"""One grid cell (``python -m tl_lightning cell``) with its stage subprocesses replaced by a fake that writes what the
real stages leave behind: the order of the stages, their commands, skipping and resuming, and ``cell.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fake_outputs import write_export

from tl_lightning.experiments import cell
from tl_lightning.experiments.cell import fit_resume_args, params_from_args
from tl_lightning.experiments.checks import cell_problem

SFT = ["--config", "configs/quickstart.yaml", "--model.init_args.use_mae=True", "--model.init_args.use_pkt=False",
       "--seed_everything=2"]


def _value(cmd: list[str], key: str) -> str | None:
    out = None
    for i, tok in enumerate(cmd):
        if tok == key:
            out = cmd[i + 1]
        elif tok.startswith(key + "="):
            out = tok.split("=", 1)[1]
    return out


def single_report(ts: list[bool]) -> dict:
    cases = [{"id": f"s{i}", "TS": t, "PI": t, "CF": False} for i, t in enumerate(ts)]
    return {"kind": "single_turn", "TS": round(100 * sum(ts) / len(ts), 2), "PI": round(100 * sum(ts) / len(ts), 2),
            "CF": 0.0, "cases": cases}


def multi_report() -> dict:
    cases = [{"id": "m0", "VA": True, "n_calls": 3, "DE_calls": 1, "CE_calls": 0, "success": True},
             {"id": "m1", "VA": False, "n_calls": 1, "DE_calls": 0, "CE_calls": 1, "success": None}]
    return {"kind": "multi_turn", "DE": 25.0, "CE": 25.0, "VA": 50.0, "success": 100.0, "cases": cases}


class FakeStages:
    """Stands in for the subprocesses: writes each stage's outputs; ``kill`` = stages that die mid-run
    (after a checkpoint when ``checkpoint`` is true, before it otherwise)."""

    def __init__(self, kill: set[str] = frozenset(), checkpoint: bool = True, stopped_by: str = "max_epochs") -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.kill, self.checkpoint, self.stopped_by = set(kill), checkpoint, stopped_by

    def __call__(self, cmd: list[str], env: dict[str, str]) -> int:
        if "tl_lightning.synthetic" in cmd:
            out = Path(_value(cmd, "--out"))
            self.calls.append(("data", cmd))
            for name in ("train.jsonl", "val.jsonl"):
                (out / name).write_text("{}\n")
            (out / "manifest.json").write_text(json.dumps({"error_rate": float(_value(cmd, "--error-rate"))}))
            return 0
        sub = cmd[3]
        if sub == "fit":
            run = Path(_value(cmd, "--trainer.default_root_dir"))
            stage = run.name
            self.calls.append((stage, cmd))
            run.mkdir(parents=True, exist_ok=True)
            params = params_from_args(cmd)
            config = {"seed_everything": params.get("seed_everything", int(_value(cmd, "--seed_everything") or 0)),
                      "model": {"init_args": {"use_mae": params.get("model.init_args.use_mae", True),
                                              "use_pkt": params.get("model.init_args.use_pkt", True)}},
                      "data": {"init_args": {"train_path": params.get("data.init_args.train_path", "quickstart")}}}
            (run / "config.yaml").write_text(yaml.safe_dump(config))
            if stage in self.kill:
                self.kill.discard(stage)
                if self.checkpoint:
                    (run / "checkpoints").mkdir(exist_ok=True)
                    (run / "checkpoints" / "last.ckpt").write_text("ckpt")
                return 137
            status = {"completed": self.stopped_by != "max_time", "stopped_by": self.stopped_by}
            (run / "run_status.json").write_text(json.dumps(status))
            write_export(run / "hf")
            return 0
        assert sub == "test", cmd
        out = Path(_value(cmd, "--model.init_args.output_dir"))
        self.calls.append((f"{out.parts[-3]}/{out.name}", cmd))
        out.mkdir(parents=True, exist_ok=True)
        report = single_report([True, False]) if out.name == "synthetic_single" else multi_report()
        (out / "report.json").write_text(json.dumps(report))
        return 0


@pytest.fixture
def fake(monkeypatch):
    stages = FakeStages()
    monkeypatch.setattr(cell, "_run", stages)
    return stages


def _stages(fake: FakeStages) -> list[str]:
    return [s for s, _ in fake.calls]


def test_a_cell_trains_sft_then_ppo_and_tests_both(tmp_path, fake):
    d = tmp_path / "c"
    assert cell.main(["--dir", str(d), "--irm", "both", "--fit-args=--trainer.max_steps 2", "--ppo-args=--x.y 1", "fit", *SFT]) == 0
    assert _stages(fake) == ["sft", "ppo", "sft/synthetic_single", "sft/synthetic_multi", "ppo/synthetic_single", "ppo/synthetic_multi"]
    sft, ppo = fake.calls[0][1], fake.calls[1][1]
    assert sft[3:4 + len(SFT)] == ["fit", *SFT]  # the sweep's fit arguments, verbatim, first
    assert _value(sft, "--trainer.logger").endswith("logger/csv_wandb.yaml") and _value(sft, "--trainer.max_steps") == "2"
    assert _value(sft, "--trainer.default_root_dir") == str(d / "sft")
    assert _value(ppo, "--config").endswith("ppo_quickstart.yaml")
    assert _value(ppo, "--model.init_args.actor") == _value(ppo, "--data.init_args.tokenizer") == str(d / "sft" / "hf")
    assert _value(ppo, "--seed_everything") == "2" and _value(ppo, "--x.y") == "1" and _value(ppo, "--trainer.max_steps") == "2"
    test = fake.calls[4][1]
    assert _value(test, "--config").endswith("eval/synthetic_single.yaml")
    assert _value(test, "--model.init_args.model") == str(d / "ppo" / "hf")
    record = json.loads((d / "cell.json").read_text())
    assert record["params"] == {"model.init_args.use_mae": True, "model.init_args.use_pkt": False, "seed_everything": 2}
    assert [(e["model"], e["setting"]["irm"], e["seed"]) for e in record["evaluations"]] == [("sft", False, 2), ("ppo", True, 2)]
    # the settings as the SFT run resolved them (its config.yaml); the quick-start set's error rate from its manifest
    assert record["evaluations"][0]["setting"] == {"use_mae": True, "use_pkt": False, "error_rate": 0.17, "irm": False}
    assert record["evaluations"][1]["metrics"] == {"TS": 50.0, "PI": 50.0, "CF": 0.0, "DE": 25.0, "CE": 25.0, "VA": 50.0, "success": 100.0}
    assert record["evaluations"][1]["reports"]["synthetic_multi"] == "ppo/eval/synthetic_multi/report.json"
    assert set(record["timings"]) == set(_stages(fake)) and record["stage_args"]["ppo"] == ["--x.y", "1"]


def test_irm_off_trains_and_tests_sft_only(tmp_path, fake):
    assert cell.main(["--dir", str(tmp_path / "c"), "--irm", "off", "--test-single", "big/test_single.jsonl", "fit", *SFT]) == 0
    assert _stages(fake) == ["sft", "sft/synthetic_single", "sft/synthetic_multi"]
    # a larger single-turn test file replaces the config's; the multi-turn set keeps the config's own
    assert _value(fake.calls[1][1], "--data.init_args.path") == "big/test_single.jsonl"
    assert _value(fake.calls[2][1], "--data.init_args.path") is None


def test_a_killed_cell_resumes_from_last_ckpt_and_skips_what_is_done(tmp_path, fake):
    d = tmp_path / "c"
    fake.kill = {"ppo"}
    assert cell.main(["--dir", str(d), "fit", *SFT]) == 1  # PPO killed after its first checkpoint
    assert _stages(fake) == ["sft", "ppo"] and not (d / "cell.json").exists()
    fake.calls.clear()
    assert cell.main(["--dir", str(d), "fit", *SFT]) == 0
    assert _stages(fake)[0] == "ppo" and "sft" not in _stages(fake)  # the finished SFT run is not redone
    assert fake.calls[0][1][-2:] == ["--ckpt_path", str(d / "ppo" / "checkpoints" / "last.ckpt")]
    fake.calls.clear()
    (d / "cell.json").unlink()
    assert cell.main(["--dir", str(d), "fit", *SFT]) == 0  # everything done: nothing runs, cell.json again
    assert fake.calls == [] and (d / "cell.json").is_file()


def test_a_fit_killed_before_its_first_checkpoint_starts_over(tmp_path, fake):
    d = tmp_path / "c"
    fake.kill, fake.checkpoint = {"sft"}, False
    assert cell.main(["--dir", str(d), "fit", *SFT]) == 1
    fake.calls.clear()
    assert cell.main(["--dir", str(d), "--irm", "off", "fit", *SFT]) == 0
    assert fake.calls[0][1][-2:] == ["--overwrite", "true"]


def test_a_test_with_a_report_is_skipped(tmp_path, fake):
    d = tmp_path / "c"
    (d / "sft" / "eval" / "synthetic_single").mkdir(parents=True)
    (d / "sft" / "eval" / "synthetic_single" / "report.json").write_text(json.dumps(single_report([True, True])))
    assert cell.main(["--dir", str(d), "--irm", "off", "fit", *SFT]) == 0
    assert _stages(fake) == ["sft", "sft/synthetic_multi"]
    assert json.loads((d / "cell.json").read_text())["evaluations"][0]["metrics"]["TS"] == 100.0


def test_error_rate_folders_are_generated_once(tmp_path, fake):
    train = tmp_path / "data" / "error_rate_0.35" / "train.jsonl"
    args = ["fit", *SFT, f"--data.init_args.train_path={train}"]
    assert cell.main(["--dir", str(tmp_path / "a"), "--irm", "off", *args]) == 0
    data = [c for s, c in fake.calls if s == "data"]
    assert len(data) == 1 and _value(data[0], "--error-rate") == "0.35" and _value(data[0], "--seed") == "0"
    assert train.is_file() and not [p for p in train.parent.parent.iterdir() if p.name.startswith(".")]  # renamed into place
    setting = json.loads((tmp_path / "a" / "cell.json").read_text())["evaluations"][0]["setting"]
    assert setting["error_rate"] == 0.35
    assert "--n-train" not in data[0]  # the quick start's size unless asked
    fake.calls.clear()
    assert cell.main(["--dir", str(tmp_path / "b"), "--irm", "off", *args]) == 0
    assert "data" not in _stages(fake)


def test_generated_training_sets_take_the_asked_size(tmp_path, fake):
    train = tmp_path / "data" / "small" / "error_rate_0.50" / "train.jsonl"
    argv = ["--dir", str(tmp_path / "a"), "--irm", "off", "--data-n-train=10000", "fit", *SFT, f"--data.init_args.train_path={train}"]
    assert cell.main(argv) == 0
    data = [c for s, c in fake.calls if s == "data"]
    assert len(data) == 1 and _value(data[0], "--n-train") == "10000" and _value(data[0], "--error-rate") == "0.50"


def test_dry_run_prints_and_runs_nothing(tmp_path, fake, capsys):
    d = tmp_path / "c"
    assert cell.main(["--dir", str(d), "--dry-run", "fit", *SFT]) == 0
    out = capsys.readouterr().out
    assert fake.calls == [] and not d.exists()
    assert out.count("] ") == 6 and " fit --config configs/quickstart.yaml" in out and "--model.init_args.actor" in out


def test_default_dir_is_named_after_the_arguments(tmp_path, fake):
    assert cell.main(["--root", str(tmp_path), "--irm", "off", "fit", *SFT]) == 0
    assert (tmp_path / "use_mae_true-use_pkt_false-seed_everything_2" / "cell.json").is_file()


def test_cell_needs_fit(capsys):
    with pytest.raises(SystemExit) as exc:
        cell.main(["--irm", "off"])
    assert exc.value.code == 2 and "after 'fit'" in capsys.readouterr().err


def test_fit_resume_args(tmp_path):
    run = tmp_path / "run"
    assert fit_resume_args(run) == []  # fresh
    run.mkdir()
    (run / "metrics.csv").write_text("step\n")
    assert fit_resume_args(run) == ["--overwrite", "true"]  # died before a checkpoint: the CLI would refuse the dir
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_text("x")
    assert fit_resume_args(run) == ["--ckpt_path", str(run / "checkpoints" / "last.ckpt")]
    (run / "run_status.json").write_text(json.dumps({"completed": False, "stopped_by": "interrupted"}))
    write_export(run / "hf")
    assert fit_resume_args(run)[0] == "--ckpt_path"  # interrupted: resume
    (run / "run_status.json").write_text(json.dumps({"completed": False, "stopped_by": "max_time"}))
    assert fit_resume_args(run) is None  # a resume cannot extend max_time
    (run / "run_status.json").write_text(json.dumps({"completed": True, "stopped_by": "max_steps"}))
    assert fit_resume_args(run) is None
    (run / "hf" / "config.json").unlink()  # killed between the status and the export: resume to export
    assert fit_resume_args(run)[0] == "--ckpt_path"


@pytest.mark.parametrize("damage", ["no weights", "no tokenizer", "truncated weights", "bad config"])
def test_a_completed_status_with_a_partial_export_is_not_finished(tmp_path, damage):
    """What a SIGKILL during an old, non-atomic export left: a "completed" status beside hf/ with config.json only,
    or with a cut weights file. Such a run resumes (and re-exports) instead of being skipped."""
    run = tmp_path / "run"
    write_export(run / "hf")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_text("x")
    (run / "run_status.json").write_text(json.dumps({"completed": True, "stopped_by": "max_steps"}))
    assert fit_resume_args(run) is None
    weights = run / "hf" / "model.safetensors"
    if damage == "no weights":
        weights.unlink()
    elif damage == "no tokenizer":
        (run / "hf" / "tokenizer.json").unlink()
    elif damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-2])
    else:
        (run / "hf" / "config.json").write_text("{not json")
    assert fit_resume_args(run) == ["--ckpt_path", str(run / "checkpoints" / "last.ckpt")]


def test_a_diverged_fit_stops_the_cell_in_one_line(tmp_path, fake, capsys):
    d = tmp_path / "c"
    (d / "sft").mkdir(parents=True)
    (d / "sft" / "run_status.json").write_text(json.dumps(
        {"completed": False, "stopped_by": "diverged", "error": "training diverged: the loss became non-finite at step 9"}))
    assert cell.main(["--dir", str(d), "--irm", "off", "fit", *SFT]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0] and "at step 9" in err[0]
    assert fake.calls == []


def test_a_cell_is_finished_only_when_its_outputs_verify(tmp_path, fake):
    d = tmp_path / "c"
    assert cell.main(["--dir", str(d), "fit", *SFT]) == 0
    assert cell_problem(d) is None
    (d / "ppo" / "hf" / "tokenizer.json").unlink()
    assert "ppo" in cell_problem(d)
    write_export(d / "ppo" / "hf")
    (d / "sft" / "eval" / "synthetic_multi" / "report.json").write_text('{"kind": "multi_tu')  # cut mid-write
    assert "cannot read" in cell_problem(d)
    fake.calls.clear()
    assert cell.main(["--dir", str(d), "fit", *SFT]) == 0  # only the damaged test runs again
    assert _stages(fake) == ["sft/synthetic_multi"]


def test_stages_do_not_inherit_the_wandb_agents_run(monkeypatch):
    monkeypatch.setenv("WANDB_RUN_ID", "abc")
    monkeypatch.setenv("WANDB_SWEEP_ID", "s")
    env = cell._stage_env("cellname", "sft")
    assert "WANDB_RUN_ID" not in env and "WANDB_SWEEP_ID" not in env
    assert (env["WANDB_RUN_GROUP"], env["WANDB_JOB_TYPE"]) == ("cellname", "sft")
