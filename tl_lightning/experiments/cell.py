"""One cell of an ablation grid: SFT, optionally PPO with the IRM reward on top, then the ``test`` stage on the
synthetic single- and multi-turn sets for each trained model: ``python -m tl_lightning cell``.

    python -m tl_lightning cell --dir runs/ablation/one --irm both \\
        fit --config configs/quickstart.yaml --model.init_args.use_mae=True --model.init_args.use_pkt=False --seed_everything=0
    python -m tl_lightning cell --dry-run fit --config configs/quickstart.yaml     # print the stage commands only

Everything after ``fit`` is the SFT stage's ``fit`` arguments: a W&B sweep's ``${args}`` land there, so a
``wandb agent`` runs the same cell. Each stage is a plain CLI command run as a subprocess, in this order:

1. data, only when the SFT training file (``--data.init_args.train_path``) is missing and its folder is
   named ``error_rate_<r>``: ``python -m tl_lightning.synthetic --out <folder> --error-rate <r> --seed 0``
   (plus ``--n-train N`` with ``--data-n-train N``);
2. ``<dir>/sft``: ``python -m tl_lightning fit <SFT args> --trainer.logger <logger> --trainer.default_root_dir <dir>/sft``;
3. ``<dir>/ppo`` (``--irm on|both``): ``fit --config configs/ppo_quickstart.yaml --model.init_args.actor <dir>/sft/hf
   --data.init_args.tokenizer <dir>/sft/hf --seed_everything <SFT seed> --trainer.logger <logger> ...``;
4. for each evaluated model M (``sft`` unless ``--irm on``; ``ppo`` unless ``--irm off``) and set S
   (``synthetic_single``, ``synthetic_multi``): ``test --config configs/eval/S.yaml --model.init_args.model
   <dir>/M/hf --model.init_args.output_dir <dir>/M/eval/S`` (``report.json``, ``predictions.jsonl``).

Why one cell trains both the SFT and the IRM model: the IRM setting is PPO on the SFT model of the same
MAE/PKT setting and seed, so the two share their SFT run, and no two cells (or two W&B agents) ever
depend on, or race for, the same run directory.

Resume: a fit whose ``run_status.json`` says ``completed`` (or ``max_time``, which resuming cannot
extend) and whose ``hf/`` export verifies (:func:`tl_lightning.rundir.fit_finished`) is skipped; a killed fit
restarts with ``--ckpt_path <run>/checkpoints/last.ckpt``, or ``--overwrite true`` if it died before its first
checkpoint; a fit that diverged stops the cell. A test with a readable, complete ``report.json`` is skipped.
Then ``cell.json`` is written (:func:`cell_record`), atomically, last. Wall time per
stage, summed over attempts, is kept in ``timings.json``. Each fit logs to CSV and W&B (offline) through
``configs/logger/csv_wandb.yaml``; the W&B runs of a cell share the group ``WANDB_RUN_GROUP=<cell name>``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from tl_lightning.experiments.checks import report_problem
from tl_lightning.experiments.sweep import cell_name
from tl_lightning.rundir import RUN_OUTPUTS, fit_finished, read_run_status, write_json_atomic

__all__ = [
    "CONFIGS",
    "CellError",
    "TEST_SETS",
    "build_parser",
    "cell_record",
    "fit_resume_args",
    "main",
    "params_from_args",
]

#: The repository's configs folder (the defaults below live there).
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: The evaluation sets of a cell, by the name of their config (and of their output folder).
TEST_SETS = ("synthetic_single", "synthetic_multi")
_ERROR_RATE_DIR = re.compile(r"^error_rate_(\d+(?:\.\d+)?)$")
#: Environment of the W&B agent's own run: the stages must start runs of their own.
_AGENT_ENV = ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH")


class CellError(RuntimeError):
    """A stage failed or the cell's input is unusable; the message names the stage or file."""


def _config(name: str) -> str:
    """A config path under the repository's ``configs/``, relative when run from the repository root."""
    path = CONFIGS / name
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tl_lightning cell",
        usage="python -m tl_lightning cell [options] fit <SFT fit arguments>",
        description="Run one grid cell: SFT, optionally IRM-PPO on it, and the synthetic test sets for each model.",
    )
    p.add_argument("--dir", default=None, help="the cell's folder (default: ROOT/<name from the --key=value arguments after fit>)")
    p.add_argument("--root", default="runs/cells", help="where --dir defaults to a folder named after the cell's parameters")
    p.add_argument("--irm", default="both", choices=("off", "on", "both"),
                   help="off: SFT only; on: SFT then PPO, evaluate the PPO model; both: evaluate both (default)")
    p.add_argument("--logger", default=_config("logger/csv_wandb.yaml"), help="the --trainer.logger of both fits ('none': keep the configs' own)")
    p.add_argument("--ppo-config", default=_config("ppo_quickstart.yaml"))
    p.add_argument("--single-config", default=_config("eval/synthetic_single.yaml"))
    p.add_argument("--multi-config", default=_config("eval/synthetic_multi.yaml"))
    p.add_argument("--test-single", default=None, help="the single-turn test file (default: the config's, quickstart:test_single)")
    p.add_argument("--test-multi", default=None, help="the multi-turn test file (default: the config's, quickstart:test_multi)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of generated error_rate_<r> training sets (default 0, the quick start's)")
    p.add_argument("--data-n-train", type=int, default=None,
                   help="trajectories in generated error_rate_<r> training sets (default: the quick start's 1,217)")
    for stage in ("fit", "sft", "ppo", "test"):
        what = {"fit": "both fits (SFT and PPO)", "sft": "the SFT fit", "ppo": "the PPO fit", "test": "every test run"}[stage]
        p.add_argument(f"--{stage}-args", action="append", default=[], metavar="ARGS",
                       help=f"more arguments for {what}, one shell-quoted string (repeatable), e.g. --{stage}-args='--trainer.max_steps 2'")
    p.add_argument("--dry-run", action="store_true", help="print the stage commands and run nothing")
    return p


def _split(strings: list[str]) -> list[str]:
    return [tok for s in strings for tok in shlex.split(s)]


def _arg_value(args: list[str], key: str) -> str | None:
    """The last value given to ``--key`` in ``args`` (``--key=v`` or ``--key v``)."""
    value = None
    for i, tok in enumerate(args):
        if tok.startswith(f"--{key}="):
            value = tok.split("=", 1)[1]
        elif tok == f"--{key}" and i + 1 < len(args):
            value = args[i + 1]
    return value


def _typed(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def params_from_args(args: list[str]) -> dict[str, Any]:
    """The ``--key=value`` arguments (the form W&B's ``${args}`` writes), values read as YAML scalars."""
    return {tok[2:].split("=", 1)[0]: _typed(tok.split("=", 1)[1]) for tok in args if tok.startswith("--") and "=" in tok}


def fit_resume_args(run_dir: Path) -> list[str] | None:
    """How to (re)start a fit into ``run_dir``: ``None`` when it is finished, else the extra arguments.

    Finished means verified (:func:`tl_lightning.rundir.fit_finished`): ``run_status.json`` says completed (or
    stopped by ``max_time``, which a resume cannot extend) and the HF export is whole. A run that diverged is a
    :class:`CellError`: resuming it would diverge again."""
    try:
        status = read_run_status(run_dir)
        if fit_finished(run_dir):
            return None
    except ValueError as e:
        raise CellError(str(e)) from None
    if status and status.get("stopped_by") == "diverged":
        raise CellError(f"{run_dir}: the fit diverged ({status.get('error', 'non-finite loss')}); change its settings "
                        "and delete the folder to run it again")
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        return ["--ckpt_path", str(last)]
    # The CLI refuses a used run dir: say what to do with it.
    return ["--overwrite", "true"] if any((run_dir / n).exists() for n in RUN_OUTPUTS) else []


def _stage_env(name: str, stage: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _AGENT_ENV}
    env.update(WANDB_RUN_GROUP=name, WANDB_JOB_TYPE=stage, WANDB_NAME=f"{name}/{stage}")
    return env


def _run(cmd: list[str], env: dict[str, str]) -> int:
    """Run one stage command; its output goes to this process's (the sweep runner's log file). If the cell is
    stopped (Ctrl-C, or SIGTERM from a W&B agent), the stage is stopped too; its run resumes next time."""
    sys.stdout.flush()
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


class _Cell:
    def __init__(self, args: argparse.Namespace, sft_args: list[str]) -> None:
        self.args, self.sft_args = args, sft_args
        self.params = params_from_args(sft_args)
        self.dir = Path(args.dir) if args.dir else Path(args.root) / (cell_name(self.params) if self.params else "default")
        self.name = self.dir.name
        self.py = [sys.executable, "-m", "tl_lightning"]
        self.logger = [] if args.logger == "none" else ["--trainer.logger", args.logger]

    def say(self, msg: str) -> None:
        print(f"[cell {self.name}] {msg}", flush=True)

    def step(self, stage: str, cmd: list[str]) -> None:
        self.say(f"{stage}: {shlex.join(cmd)}")
        if self.args.dry_run:
            return
        start = time.perf_counter()
        code = _run(cmd, _stage_env(self.name, stage))
        self._add_time(stage, time.perf_counter() - start)
        if code != 0:
            raise CellError(f"cell {self.dir}: stage {stage} failed (exit {code}): {shlex.join(cmd)}")

    def _add_time(self, stage: str, seconds: float) -> None:
        path = self.dir / "timings.json"
        times = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        times[stage] = round(times.get(stage, 0.0) + seconds, 2)
        write_json_atomic(path, times)

    # ------------------------------------------------------------------------------------- stages
    def data(self) -> None:
        train = _arg_value(self.sft_args, "data.init_args.train_path")
        if train is None or Path(train).exists():
            return
        folder = Path(train).parent
        match = _ERROR_RATE_DIR.match(folder.name)
        if match is None:
            return  # the CLI reports the missing file itself
        if folder.exists():
            raise CellError(f"{folder}: exists but holds no {Path(train).name}; delete it to regenerate the error_rate_{match[1]} set")
        if self.args.dry_run:
            tmp = folder
        else:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        cmd = [sys.executable, "-m", "tl_lightning.synthetic", "--out", str(tmp), "--error-rate", match[1],
               "--seed", str(self.args.data_seed)]
        cmd += [] if self.args.data_n_train is None else ["--n-train", str(self.args.data_n_train)]
        try:
            self.step("data", cmd)
            if not self.args.dry_run:
                try:
                    os.rename(tmp, folder)  # atomic: a concurrent cell never reads a half-written set
                except OSError:
                    if not Path(train).is_file():
                        raise
        finally:
            if tmp != folder:
                shutil.rmtree(tmp, ignore_errors=True)

    def fit(self, stage: str, base: list[str], extra: list[str]) -> None:
        run_dir = self.dir / stage
        resume = fit_resume_args(run_dir)
        if resume is None:
            self.say(f"{stage}: finished earlier, skipped")
            return
        cmd = [*self.py, "fit", *base, *self.logger, *_split(self.args.fit_args), *extra,
               "--trainer.default_root_dir", str(run_dir), *resume]
        self.step(stage, cmd)

    def sft_seed(self) -> Any:
        config = _read_yaml(self.dir / "sft" / "config.yaml")
        return config.get("seed_everything") if config else _typed(_arg_value(self.sft_args, "seed_everything") or "null")

    def ppo(self) -> None:
        hf = str(self.dir / "sft" / "hf")
        seed = self.sft_seed()
        base = ["--config", self.args.ppo_config, "--model.init_args.actor", hf, "--data.init_args.tokenizer", hf]
        base += [] if seed is None else ["--seed_everything", str(seed)]
        self.fit("ppo", base, _split(self.args.ppo_args))

    def test(self, model: str, test_set: str) -> None:
        out = self.dir / model / "eval" / test_set
        stage = f"{model}/{test_set}"
        if report_problem(out / "report.json") is None:
            self.say(f"{stage}: report.json exists, skipped")
            return
        config, path = ((self.args.single_config, self.args.test_single) if test_set == "synthetic_single"
                        else (self.args.multi_config, self.args.test_multi))
        cmd = [*self.py, "test", "--config", config, "--model.init_args.model", str(self.dir / model / "hf"),
               "--model.init_args.output_dir", str(out), "--trainer.default_root_dir", str(out.parent)]
        cmd += [] if path is None else ["--data.init_args.path", path]
        self.step(stage, cmd + _split(self.args.test_args))

    def models(self) -> list[str]:
        return {"off": ["sft"], "on": ["ppo"], "both": ["sft", "ppo"]}[self.args.irm]

    def run(self) -> dict[str, Any] | None:
        if not self.args.dry_run:
            self.dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        self.data()
        self.fit("sft", self.sft_args, _split(self.args.sft_args))
        if self.args.irm != "off":
            self.ppo()
        for model in self.models():
            for test_set in TEST_SETS:
                self.test(model, test_set)
        if self.args.dry_run:
            return None
        record = cell_record(self.dir, self.params, self.sft_args, self.args.irm, self.models())
        record["stage_args"] = {k: _split(getattr(self.args, f"{k}_args")) for k in ("fit", "sft", "ppo", "test")}
        write_json_atomic(self.dir / "cell.json", record)
        self.say(f"done in {time.perf_counter() - start:.0f}s (all attempts: {record['wall_s']:.0f}s): {self.dir / 'cell.json'}")
        _report_to_sweep(record)
        return record


def _read_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CellError(f"{path}: cannot read ({e})") from None


def _error_rate(train_path: Any) -> float | None:
    """The generated set's error rate, from the ``manifest.json`` beside the training file."""
    from tl_lightning.data.paths import is_quickstart, quickstart_dir

    if train_path is None:
        return None
    manifest = quickstart_dir() / "manifest.json" if is_quickstart(train_path) else Path(str(train_path)).parent / "manifest.json"
    return _read_json(manifest).get("error_rate") if manifest.is_file() else None


#: Headline numbers copied into cell.json from each report.
_HEADLINE = {"synthetic_single": ("TS", "PI", "CF"), "synthetic_multi": ("DE", "CE", "VA", "success")}
#: Grid parameters that the resolved settings already cover (or that are not a setting at all).
_COVERED = ("use_mae", "use_pkt", "train_path", "seed_everything", "seed")


def cell_record(cell_dir: Path, params: dict[str, Any], sft_args: list[str], irm: str, models: list[str]) -> dict[str, Any]:
    """The ``cell.json`` of a finished cell.

    ``evaluations`` holds one entry per evaluated model: ``model`` (``sft``/``ppo``), ``setting``
    (``use_mae``, ``use_pkt``, ``irm``, ``error_rate`` and any other grid parameter but the seed),
    ``seed``, ``reports`` (``{set: path of report.json relative to the cell}``) and ``metrics`` (the
    reports' headline numbers). ``settings`` come from the SFT run's resolved ``config.yaml``, so they
    are what ran, whatever the command spelled. Paths are relative to the cell folder.
    """
    config = _read_yaml(cell_dir / "sft" / "config.yaml") or {}
    model_args = (config.get("model") or {}).get("init_args") or {}
    data_args = (config.get("data") or {}).get("init_args") or {}
    other = {k.rsplit(".", 1)[-1]: v for k, v in params.items() if k.rsplit(".", 1)[-1] not in _COVERED}
    base = {"use_mae": model_args.get("use_mae"), "use_pkt": model_args.get("use_pkt"),
            "error_rate": _error_rate(data_args.get("train_path")), **other}
    stages = {}
    for stage in ("sft", "ppo"):
        if (cell_dir / stage / "run_status.json").is_file():
            stages[stage] = {"dir": stage, "status": _read_json(cell_dir / stage / "run_status.json")}
    evaluations = []
    for model in models:
        reports, metrics = {}, {}
        for test_set in TEST_SETS:
            rel = Path(model) / "eval" / test_set / "report.json"
            report = _read_json(cell_dir / rel)
            reports[test_set] = rel.as_posix()
            metrics.update({k: report[k] for k in _HEADLINE[test_set] if k in report})
        evaluations.append({"model": model, "setting": {**base, "irm": model == "ppo"}, "seed": config.get("seed_everything"),
                            "reports": reports, "metrics": metrics})
    timings = _read_json(cell_dir / "timings.json") if (cell_dir / "timings.json").is_file() else {}
    return {"name": cell_dir.name, "params": params, "sft_args": sft_args, "irm": irm, "train_path": data_args.get("train_path"),
            "stages": stages, "evaluations": evaluations, "timings": timings, "wall_s": round(sum(timings.values()), 2)}


def _report_to_sweep(record: dict[str, Any]) -> None:
    """Under ``wandb agent`` (``WANDB_SWEEP_ID`` set): log the cell's headline numbers to the agent's run."""
    if not os.environ.get("WANDB_SWEEP_ID"):
        return
    import wandb

    run = wandb.init(config=record["params"])
    run.log({f"{e['model']}/{k}": v for e in record["evaluations"] for k, v in e["metrics"].items()})
    run.finish()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if "fit" not in argv:
        parser.parse_args(argv)  # --help exits here
        parser.error("give the SFT stage's arguments after 'fit', e.g. ... fit --config configs/quickstart.yaml")
    split = argv.index("fit")
    args = parser.parse_args(argv[:split])
    # SIGTERM unwinds like Ctrl-C, so the running stage is stopped rather than orphaned.
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        _Cell(args, argv[split + 1:]).run()
    except CellError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
