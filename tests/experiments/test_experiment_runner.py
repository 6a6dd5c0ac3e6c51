"""``python -m tl_lightning sweep``: dry runs, resuming a killed grid, plain ``fit`` cells, the table at the end.

The grids here run tiny Python scripts as their program (real subprocesses, no training), which log every call."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fake_outputs import EXPORT_SOURCE

from tl_lightning.__main__ import main as entry_point
from tl_lightning.experiments import runner

ROOT = Path(__file__).resolve().parents[2]

# The start of every fake program: append its arguments to calls.jsonl beside it.
_LOG_CALL = """
import json, sys
from pathlib import Path
here = Path(__file__).parent
with open(here / "calls.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""

# Logs its arguments; fails (as a killed cell would) while a `kill` file names its --a value.
FAKE_PROGRAM = _LOG_CALL + """
kill = here / "kill"
if kill.exists() and any(a == "--a=" + kill.read_text().strip() for a in sys.argv):
    sys.exit(3)
"""

# A `cell` program: writes cell.json and two reports (use_mae = a, seed from --seed_everything).
FAKE_CELL = _LOG_CALL + """
args = sys.argv[1:]
d = Path(args[args.index("--dir") + 1])
opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
a, seed = int(opts["a"]), int(opts["seed_everything"])
ts = [True, bool(a)] if seed == 0 else [bool(a), False]
single = {"kind": "single_turn", "TS": 50.0 * sum(ts), "PI": 0.0, "CF": 0.0,
          "cases": [{"id": f"s{i}", "TS": t, "PI": False, "CF": False} for i, t in enumerate(ts)]}
multi = {"kind": "multi_turn", "DE": 0.0, "CE": 0.0, "VA": 100.0 * a,
         "cases": [{"id": "m0", "VA": bool(a), "n_calls": 1, "DE_calls": 0, "CE_calls": 0, "success": None}]}
reports = {}
for name, report in (("synthetic_single", single), ("synthetic_multi", multi)):
    (d / "sft" / "eval" / name).mkdir(parents=True, exist_ok=True)
    (d / "sft" / "eval" / name / "report.json").write_text(json.dumps(report))
    reports[name] = f"sft/eval/{name}/report.json"
(d / "cell.json").write_text(json.dumps({"evaluations": [{"model": "sft", "seed": seed, "reports": reports,
    "setting": {"use_mae": bool(a), "use_pkt": False, "irm": False}, "metrics": {}}], "wall_s": 1.5}))
"""

# A plain `fit`: finishes (run_status.json, hf/) unless a `kill` file exists, then leaves only a checkpoint.
FAKE_FIT = _LOG_CALL + """
args = sys.argv[1:]
run = Path(args[args.index("--trainer.default_root_dir") + 1])
(run / "checkpoints").mkdir(parents=True, exist_ok=True)
(run / "checkpoints" / "last.ckpt").write_text("x")
if (here / "kill").exists():
    sys.exit(137)
""" + EXPORT_SOURCE + """
write_export(run / "hf")
(run / "run_status.json").write_text(json.dumps({"completed": True, "stopped_by": "max_steps"}))
"""


# A cell that runs a stage (a child process of its own), writes both pids, then works for minutes.
FAKE_LONG_CELL = _LOG_CALL + """
import os, subprocess, time
stage = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
(here / "pids.tmp").write_text(f"{os.getpid()} {stage.pid}")
os.replace(here / "pids.tmp", here / "pids")
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits for a reaper


def _grid(tmp_path: Path, program: str, command: str, parameters: str = "a: {values: [1, 2, 3]}") -> Path:
    (tmp_path / "prog.py").write_text(textwrap.dedent(program))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"program: {tmp_path / 'prog.py'}\nmethod: grid\nparameters:\n  {parameters}\ncommand: {command}\n")
    return sweep


def _calls(tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_killed_grid_resumes_without_redoing_finished_cells(tmp_path):
    sweep = _grid(tmp_path, FAKE_PROGRAM, '[python, "${program}", "${args}"]')
    out = tmp_path / "out"
    (tmp_path / "kill").write_text("2")
    assert runner.main([str(sweep), "--out", str(out)]) == 1  # cell a=2 dies: the grid stops there
    assert [c[0] for c in _calls(tmp_path)] == ["--a=1", "--a=2"]
    assert (out / "a_1" / "cell.json").is_file() and not (out / "a_2" / "cell.json").exists()
    assert "--a=2" in (out / "a_2" / "cell.log").read_text()  # the command heads the cell's log
    (tmp_path / "kill").unlink()
    assert runner.main([str(sweep), "--out", str(out)]) == 0
    assert [c[0] for c in _calls(tmp_path)] == ["--a=1", "--a=2", "--a=2", "--a=3"]  # a=1 was not redone
    record = json.loads((out / "a_3" / "cell.json").read_text())
    assert record["params"] == {"a": 3} and record["evaluations"] == []
    assert json.loads((out / "a_3" / "sweep_args.json").read_text()) == {"a": 3}
    assert runner.main([str(sweep), "--out", str(out)]) == 0 and len(_calls(tmp_path)) == 4  # all done: nothing runs


def test_keep_going_runs_the_cells_after_a_failure(tmp_path):
    sweep = _grid(tmp_path, FAKE_PROGRAM, '[python, "${program}", "${args}"]')
    (tmp_path / "kill").write_text("1")
    assert runner.main([str(sweep), "--out", str(tmp_path / "out"), "--keep-going"]) == 1
    assert [c[0] for c in _calls(tmp_path)] == ["--a=1", "--a=2", "--a=3"]


def test_a_plain_fit_cell_resumes_from_its_last_checkpoint(tmp_path):
    sweep = _grid(tmp_path, FAKE_FIT, '[python, "${program}", fit, "${args}"]', parameters="a: {values: [1]}")
    out = tmp_path / "out"
    (tmp_path / "kill").write_text("")
    assert runner.main([str(sweep), "--out", str(out), "--extra=--trainer.max_steps 2"]) == 1
    (tmp_path / "kill").unlink()
    assert runner.main([str(sweep), "--out", str(out)]) == 0
    first, second = _calls(tmp_path)
    assert first == ["fit", "--a=1", "--trainer.max_steps", "2", "--trainer.default_root_dir", str(out / "a_1")]
    assert second[-2:] == ["--ckpt_path", str(out / "a_1" / "checkpoints" / "last.ckpt")]
    assert json.loads((out / "a_1" / "cell.json").read_text())["status"]["completed"] is True


def test_cell_commands_get_their_folder_and_the_pass_through_arguments(tmp_path):
    sweep = _grid(tmp_path, FAKE_CELL, '[python, "${program}", cell, --irm, "off", fit, --config, x.yaml, "${args}"]',
                  parameters="a: {values: [0, 1]}\n  seed_everything: {values: [0, 1]}")
    out = tmp_path / "out"
    assert runner.main([str(sweep), "--out", str(out), "--extra=--trainer.max_steps 2", "--sft-args=--b 1",
                        "--ppo-args=--c 2", "--test-args=--data.init_args.limit 4", "--cell-args=--data-seed 3"]) == 0
    call = _calls(tmp_path)[0]
    assert call == ["cell", "--dir", str(out / "a_0-seed_everything_0"), "--data-seed", "3", "--fit-args=--trainer.max_steps 2",
                    "--sft-args=--b 1", "--ppo-args=--c 2", "--test-args=--data.init_args.limit 4",
                    "--irm", "off", "fit", "--config", "x.yaml", "--a=0", "--seed_everything=0"]
    # the table is written at the end: Standard SFT (a=0: TS 50 and 0) and +MAE (a=1: TS 100 and 50), two seeds each
    table = (out / "results.md").read_text()
    assert "| Standard SFT | 0 1 | 25.00 ± 35.36 |" in table and "| +MAE | 0 1 | 75.00 ± 35.36 |" in table
    # paired by seed, per-case differences (seed 0: 0, +1; seed 1: +1, 0) average to +50 on either case, so every
    # bootstrap resample gives +50: the interval is [+50, +50]
    assert "| +MAE | 2 | +50.00 [+50.00, +50.00] |" in table
    (out / "results.md").unlink()
    assert runner.main([str(sweep), "--out", str(out), "--table-only"]) == 0
    assert (out / "results.md").read_text() == table and len(_calls(tmp_path)) == 4  # nothing ran again


def test_dry_run_prints_every_cells_commands_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the sweep's config paths are relative to the repository
    out = tmp_path / "out"
    assert entry_point(["sweep", "configs/sweeps/tl_ablation.yaml", "--out", str(out), "--seeds", "0", "--dry-run",
                        "--extra=--trainer.max_steps 2"]) == 0
    printed = capsys.readouterr().out
    assert not out.exists()
    cells = [line for line in printed.splitlines() if line.startswith("# ")]
    assert len(cells) == 4 and all("(to run)" in c for c in cells)
    commands = [line for line in printed.splitlines() if " -m tl_lightning cell " in line]
    assert len(commands) == 4 and all(f"--dir {out}/" in c and "fit --config configs/small.yaml" in c for c in commands)
    stages = [line for line in printed.splitlines() if line.startswith("[cell ")]
    assert len(stages) == 4 * 6  # sft, ppo and 4 tests per cell
    sft = [line for line in stages if "] sft: " in line]
    assert all("--trainer.logger configs/logger/csv_wandb.yaml" in s and "--trainer.max_steps 2" in s for s in sft)
    assert "--seed_everything=0 --model.init_args.use_mae=False --model.init_args.use_pkt=True" in printed


def test_only_selects_cells_by_folder_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    argv = ["sweep", "configs/sweeps/tl_ablation.yaml", "--out", str(out), "--dry-run"]
    assert entry_point([*argv, "--only", "seed_everything_3-use_mae_true-use_pkt_false"]) == 0
    cells = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# ")]
    assert cells == ["# seed_everything_3-use_mae_true-use_pkt_false (to run)"]
    assert entry_point([*argv, "--only", "seed_everything_4-*", "*-use_mae_false-use_pkt_false"]) == 0
    cells = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# ")]
    assert len(cells) == 4 + 5 - 1  # the pattern sets overlap in one cell
    assert entry_point([*argv, "--only", "nothing"]) == 2
    assert "no cell matches --only nothing" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_the_runner_ends_the_running_cell_and_its_stages(tmp_path, sig):
    """The runner is killed as a user or a scheduler would (a real process, a real signal); the cell it was running
    and that cell's own child must end with it, not run on orphaned."""
    sweep = _grid(tmp_path, FAKE_LONG_CELL, '[python, "${program}", "${args}"]', parameters="a: {values: [1]}")
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps an inherited
    # SIG_IGN: under `cmd &` the runner would never see this test's Ctrl-C. A user's terminal gives it the default.
    proc = subprocess.Popen([sys.executable, "-m", "tl_lightning", "sweep", str(sweep), "--out", str(tmp_path / "out")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pids_file = tmp_path / "pids"
    try:
        deadline = time.monotonic() + 120
        while not pids_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "timeout"
            time.sleep(0.1)
        pids = [int(p) for p in pids_file.read_text().split()]
        assert all(_alive(p) for p in pids)
        proc.send_signal(sig)
        assert proc.wait(timeout=90) == 130
        assert "interrupted: rerun the same command to resume" in proc.stderr.read()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if _alive(p)], "the cell or its stage outlived the runner"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else []:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_eta_from_finished_cells():
    assert runner._eta([], 3) == "ETA after the first cell"
    assert runner._eta([10.0, 20.0], 3) == "ETA 0:00:45"
    assert runner._eta([3600.0], 2) == "ETA 2:00:00"


def test_bad_sweep_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: bayes\nparameters: {a: {values: [1]}}\n")
    assert runner.main([str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: method is 'bayes'") and err.count("\n") == 1


def test_sweep_and_cell_are_subcommands():
    for sub in ("sweep", "cell"):
        with pytest.raises(SystemExit) as exc:
            entry_point([sub, "--help"])
        assert exc.value.code == 0


def test_nothing_in_the_package_may_import_the_experiments_layer(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    ig = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ig)
    pkg = tmp_path / "tl_lightning"
    for sub in ("evaluation", "experiments"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "experiments" / "a.py").write_text("from tl_lightning.evaluation import b\n")
    (pkg / "evaluation" / "b.py").write_text("def f():\n    from tl_lightning.experiments import a\n")
    assert ig.layer_violations(ig.build_graph(pkg)) == [("tl_lightning.evaluation.b", "tl_lightning.experiments.a")]
    (pkg / "evaluation" / "b.py").write_text("")
    assert ig.layer_violations(ig.build_graph(pkg)) == []  # the experiments layer may import anything
    assert sys.modules.get("tl_lightning.experiments") is not None  # (imported by these tests, not by the package)
