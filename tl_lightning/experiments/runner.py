"""Run a W&B grid sweep locally, cell by cell, resumably: ``python -m tl_lightning sweep``.

    python -m tl_lightning sweep configs/sweeps/tl_ablation.yaml --out runs/ablation            # 4 x 3 cells
    python -m tl_lightning sweep configs/sweeps/tl_ablation.yaml --out runs/ablation --seeds 0 --dry-run
    python -m tl_lightning sweep configs/sweeps/mae_error_rate.yaml --out runs/error_rate
    python -m tl_lightning sweep configs/sweeps/tl_ablation.yaml --out runs/ablation --table-only  # results only
    python -m tl_lightning sweep configs/sweeps/tl_ablation.yaml --out /tmp/again --only '*use_pkt_true-seed_everything_0'  # one cell
    # shorter runs (tests): --extra for both fits, --sft-args/--ppo-args/--test-args for one stage
    python -m tl_lightning sweep FILE --out D --extra='--trainer.max_steps 2' --test-args='--data.init_args.limit 4'

The file is the one ``wandb sweep FILE`` takes (:mod:`tl_lightning.experiments.sweep`); with a W&B server,
``wandb sweep FILE`` + ``wandb agent`` run the same cells. Here the cells run one after another in grid order,
each command a subprocess in its own process group, its output appended to ``OUT/<cell name>/cell.log``:

- a ``cell`` command (:mod:`tl_lightning.experiments.cell`) gets ``--dir OUT/<cell name>`` and the
  pass-through arguments; the cell itself skips or resumes its stages;
- a plain ``fit`` command gets ``--trainer.default_root_dir OUT/<cell name>``, plus ``--ckpt_path``
  (or ``--overwrite true``) when an earlier attempt was killed;
- any other command just runs.

A cell is finished when ``OUT/<cell name>/cell.json`` exists (the cell writes it; for other commands the
runner does, after exit code 0) and what it vouches for verifies: a ``cell``'s fits and reports
(:func:`~tl_lightning.experiments.checks.cell_problem`), a plain ``fit``'s status and HF export
(:func:`tl_lightning.rundir.fit_finished`). Finished cells are skipped, so rerunning the same command resumes a
killed grid. Ctrl-C or SIGTERM ends the running cell's whole process group (its stages included) before the
runner exits. The progress bar's ETA is the mean wall time of the finished cells times the cells left.
At the end, ``OUT/results.md`` and ``OUT/results.csv`` are (re)written from the cells that have
evaluations (:func:`tl_lightning.experiments.results.write_results`).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tl_lightning.experiments.cell import CellError, fit_resume_args
from tl_lightning.experiments.checks import cell_problem
from tl_lightning.experiments.sweep import SweepError, cell_name, expand_command, grid, load_sweep, macro_args
from tl_lightning.rundir import fit_finished, write_json_atomic

__all__ = ["GridCell", "build_parser", "main", "plan", "run_grid"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tl_lightning sweep",
        description="Run the grid of a W&B sweep file locally, one cell after another; finished cells are skipped.",
    )
    p.add_argument("sweep", help="a W&B sweep YAML with method: grid (e.g. configs/sweeps/tl_ablation.yaml)")
    p.add_argument("--out", required=True, help="the grid's folder: one sub-folder per cell, results.md/.csv")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="replace the values of the seed parameter")
    p.add_argument("--only", nargs="+", default=None, metavar="NAME",
                   help="run only the cells whose folder name matches one of these shell patterns (e.g. to reproduce one cell)")
    p.add_argument("--dry-run", action="store_true", help="print every cell's command (and a cell's stages) and run nothing")
    p.add_argument("--table-only", action="store_true", help="only rewrite results.md/results.csv from the finished cells")
    p.add_argument("--keep-going", action="store_true", help="after a failed cell, go on with the next (default: stop)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the paired intervals (default 2000)")
    arg_help = {
        "extra": "both fits of a cell (or a plain fit command)", "sft": "the SFT fit", "ppo": "the PPO fit",
        "test": "every test run", "cell": "the cell command itself (cell options, e.g. --irm off)",
    }
    for name, what in arg_help.items():
        flag = "--extra" if name == "extra" else f"--{name}-args"
        p.add_argument(flag, action="append", default=[], metavar="ARGS",
                       help=f"arguments for {what}: one shell-quoted string, repeatable; write {flag}='--a 1 --b 2'")
    return p


@dataclass
class GridCell:
    """One cell of the grid: its parameters, folder and command (``kind``: ``cell``, ``fit`` or ``other``)."""

    params: dict[str, Any]
    dir: Path
    command: list[str]
    kind: str

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def done(self) -> bool:
        """Whether the cell finished and its outputs verify (a ``cell.json`` alone is not enough)."""
        if self.kind == "cell":
            return cell_problem(self.dir) is None
        try:
            json.loads((self.dir / "cell.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return self.kind != "fit" or fit_finished(self.dir)


def _kind(command: list[str]) -> str:
    for tok in command:
        if tok in ("cell", "fit"):
            return tok
        if tok.startswith("-") and tok != "-m":
            break
    return "other"


def _split(strings: list[str]) -> list[str]:
    return [tok for s in strings for tok in shlex.split(s)]


def plan(args: argparse.Namespace) -> list[GridCell]:
    """The grid's cells with their commands, pass-through arguments included."""
    sweep = load_sweep(args.sweep)
    out = Path(args.out)
    cells = []
    for params in grid(sweep, args.seeds):
        cell_dir = out / cell_name(params)
        command = expand_command(sweep, params, args_json_file=cell_dir / "sweep_args.json", python=sys.executable)
        kind = _kind(command)
        if kind == "cell":
            at = command.index("cell") + 1
            inserted = ["--dir", str(cell_dir), *_split(args.cell_args)]
            for flag, values in (("--fit-args", args.extra), ("--sft-args", args.sft_args), ("--ppo-args", args.ppo_args),
                                 ("--test-args", args.test_args)):
                inserted += [f"{flag}={v}" for v in values]
            command = command[:at] + inserted + command[at:]
        elif kind == "fit":
            command += [*_split(args.extra), *_split(args.sft_args), "--trainer.default_root_dir", str(cell_dir)]
        cells.append(GridCell(params, cell_dir, command, kind))
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise SweepError(f"{args.sweep}: two cells get the same folder name; make the parameter values distinct")
    if getattr(args, "only", None):
        cells = [c for c in cells if any(fnmatch.fnmatchcase(c.name, pattern) for pattern in args.only)]
        if not cells:
            raise SweepError(f"{args.sweep}: no cell matches --only {' '.join(args.only)}; the cells are {', '.join(names)}")
    return cells


def _last_line(log: Path, prefix: str = "[cell") -> str:
    """The latest progress line a cell printed (``[cell <name>] <stage>: ...``), for the display."""
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith(prefix):
            return line.split("] ", 1)[-1].split(": ", 1)[0]
    return ""


def _finish_plain(cell: GridCell, wall_s: float) -> None:
    status = cell.dir / "run_status.json"
    record = {"name": cell.name, "params": cell.params, "command": cell.command, "evaluations": [],
              "status": json.loads(status.read_text(encoding="utf-8")) if status.is_file() else None, "wall_s": round(wall_s, 2)}
    write_json_atomic(cell.dir / "cell.json", record)


def _prepare(cell: GridCell) -> list[str] | None:
    """The command to run now (a plain fit gets its resume arguments), or None when nothing is left to do."""
    if cell.kind != "fit":
        return cell.command
    resume = fit_resume_args(cell.dir)
    return None if resume is None else cell.command + resume


def _eta(walls: list[float], left: int) -> str:
    if not walls:
        return "ETA after the first cell"
    seconds = int(sum(walls) / len(walls) * left)
    return f"ETA {seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


#: Seconds a stopped cell gets to end on SIGTERM before its process group is killed.
STOP_GRACE_S = 60.0


def _stop(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """End the process group of ``proc`` (the cell and every stage it started): SIGTERM, then SIGKILL after
    ``grace_s`` or at a second Ctrl-C / SIGTERM."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired, KeyboardInterrupt, SystemExit):
        pass
    finally:
        try:  # whatever is left of the group, the leader included
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _run_cell(command: list[str], cell: GridCell, on_poll: Callable[[float], None], poll_s: float) -> int:
    """Run one cell's command with its output appended to ``cell.log`` (a resumed cell keeps its earlier
    attempts' output); ``on_poll(elapsed_s)`` updates the display while it runs."""
    start = time.perf_counter()
    with open(cell.dir / "cell.log", "a", encoding="utf-8") as log:
        log.write(f"\n$ {shlex.join(command)}\n")
        log.flush()
        # Its own process group: an interrupted grid stops the cell and the stage it is running, not the cell alone.
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                on_poll(time.perf_counter() - start)
                try:
                    return proc.wait(timeout=poll_s)
                except subprocess.TimeoutExpired:
                    continue
        finally:
            if proc.poll() is None:  # interrupted: the next run resumes the cell
                _stop(proc)


def _wall(cell: GridCell) -> float:
    return float(json.loads((cell.dir / "cell.json").read_text(encoding="utf-8")).get("wall_s") or 0.0)


def run_grid(cells: list[GridCell], keep_going: bool = False, poll_s: float = 1.0) -> list[GridCell]:
    """Run the unfinished cells in order with a Rich progress display; returns the cells that failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    walls = [_wall(c) for c in cells if c.done]  # earlier sessions' cells count for the ETA too
    failed: list[GridCell] = []

    def left() -> int:
        return sum(1 for c in cells if not c.done and c not in failed)

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[now]}")]
    with Progress(*columns, refresh_per_second=2) as progress:
        task = progress.add_task("grid", total=len(cells), completed=len(cells) - left(), eta=_eta(walls, left()), now="")
        for cell in cells:
            if cell.done:
                continue
            cell.dir.mkdir(parents=True, exist_ok=True)
            # what ${args_json_file} points to, as the W&B agent writes it
            (cell.dir / "sweep_args.json").write_text(macro_args(cell.params)["args_json"][0] + "\n", encoding="utf-8")
            start = time.perf_counter()
            try:
                command = _prepare(cell)
            except CellError as e:  # e.g. a fit that diverged: rerunning it would not help
                failed.append(cell)
                progress.console.print(f"[red]{cell.name} failed[/red]: {e}", highlight=False)
                if not keep_going:
                    break
                continue
            code = 0
            if command is not None:
                progress.console.print(f"[bold]{cell.name}[/bold]: {shlex.join(command)}", highlight=False, soft_wrap=True)

                def show(elapsed: float, cell: GridCell = cell) -> None:
                    stage = _last_line(cell.dir / "cell.log") if cell.kind == "cell" else cell.kind
                    progress.update(task, now=f"{cell.name} {stage} {elapsed:.0f}s")

                code = _run_cell(command, cell, show, poll_s)
            wall = time.perf_counter() - start
            if code == 0 and cell.kind != "cell":
                _finish_plain(cell, wall)
            if code != 0 or not cell.done:
                failed.append(cell)
                progress.console.print(f"[red]{cell.name} failed[/red] (exit {code}); log: {cell.dir / 'cell.log'}", highlight=False)
                if not keep_going:
                    break
                continue
            walls.append(_wall(cell) or wall)
            progress.update(task, advance=1, eta=_eta(walls, left()), now="")
            progress.console.print(f"{cell.name}: done in {wall:.0f}s", highlight=False)
    return failed


def _dry_run(cells: list[GridCell]) -> None:
    from tl_lightning.experiments import cell as cell_module

    for c in cells:
        state = "finished, skipped" if c.done else "to run"
        print(f"# {c.name} ({state})\n{shlex.join(c.command)}")
        if c.kind == "cell" and not c.done:  # what the cell would run now, without running it
            at = c.command.index("cell") + 1
            cell_module.main([*c.command[at:c.command.index("fit", at)], "--dry-run", *c.command[c.command.index("fit", at):]])
        print()


def _table(cells: list[GridCell], out: Path, n_boot: int) -> None:
    from tl_lightning.experiments.results import write_results

    evaluated = [c.dir for c in cells if c.done and json.loads((c.dir / "cell.json").read_text(encoding="utf-8")).get("evaluations")]
    if not evaluated:
        print(f"no evaluated cells under {out} yet: no results table")
        return
    md, csv_path = write_results(evaluated, out, n_boot=n_boot)
    print(f"results of {len(evaluated)} cell(s): {md} and {csv_path}")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: _run_cell's cleanup stops the running cell's process group


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        cells = plan(args)
        if args.dry_run:
            _dry_run(cells)
            return 0
        failed = [] if args.table_only else run_grid(cells, keep_going=args.keep_going)
        _table(cells, Path(args.out), args.n_boot)
    except (SweepError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume (finished cells are skipped)", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if failed:
        print(f"{len(failed)} cell(s) failed: {', '.join(c.name for c in failed)}", file=sys.stderr)
        return 1
    return 0
