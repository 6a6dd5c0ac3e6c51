"""Score a predictions file against a test set, with no model: ``python -m tl_lightning score``.

    python -m tl_lightning score --benchmark rotbench --data ../shared/benchmarks/rotbench --category clean \\
        --predictions preds.jsonl --mode official --output out/rotbench_clean
    python -m tl_lightning score --benchmark bfcl --data ../shared/benchmarks/bfcl_v3_exec \\
        --predictions preds.jsonl --mode bfcl --format python --output out/bfcl
    python -m tl_lightning score --benchmark tooleyes --data ../shared/benchmarks/tooleyes \\
        --predictions traces.jsonl --output out/tooleyes
    # the gold answers as a predictions file (a self-check: 100 in corrected mode)
    python -m tl_lightning score --benchmark toolalpaca --data ../shared/benchmarks/toolalpaca --write-gold gold.jsonl

Writes ``OUTPUT/report.json`` and ``OUTPUT/report.md`` (see :mod:`tl_lightning.evaluation.report`)
and prints the headline numbers. Prediction formats: :mod:`tl_lightning.evaluation.predictions`.
Multi-turn predictions are replayed through the task's environment (SchemaSimulator for ToolEyes,
the sandbox for the synthetic set) to classify every call, unless their turns carry recorded feedback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tl_lightning.benchmarks import BENCHMARKS, REGISTRY, BenchmarkSet, load_benchmark
from tl_lightning.data.cases import MultiTurnTask
from tl_lightning.data.paths import is_quickstart
from tl_lightning.evaluation.multiturn import Episode, EpisodeResult
from tl_lightning.evaluation.predictions import (
    Alignment,
    align_predictions,
    gold_predictions,
    read_predictions,
    write_jsonl,
)
from tl_lightning.evaluation.report import headline, multi_turn_report, single_turn_report, write_report
from tl_lightning.synthetic import ensure_quickstart_data

__all__ = ["build_parser", "main", "replay_episode", "score_predictions"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tl_lightning score",
        description="Score a predictions file (one JSON object per line: {index|id, output} or {id, turns}) against a test set.",
    )
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    p.add_argument("--data", required=True, help="the set's file or folder (e.g. ../shared/benchmarks/rotbench), or 'quickstart' for synthetic")
    p.add_argument("--category", default=None, help="RoTBench level, BFCL category, ToolAlpaca API, ToolEyes scenario, synthetic single/multi")
    p.add_argument("--predictions", default=None, help="predictions JSONL")
    p.add_argument("--mode", default=None, choices=("official", "corrected", "bfcl"), help="scoring mode (default: official for rotbench, bfcl for bfcl, corrected otherwise)")
    p.add_argument("--format", default="auto", choices=("auto", "react", "python", "json"), help="how to parse outputs (default auto-detect)")
    p.add_argument("--output", default=None, help="folder for report.json and report.md")
    p.add_argument("--write-gold", "--gold", dest="write_gold", default=None, metavar="PATH", help="write the gold answers as a predictions file to PATH")
    p.add_argument("--lenient", action="store_true", help="skip bad records (counted in the report) instead of failing")
    p.add_argument("--no-repair", action="store_true", help="ToolAlpaca: do not repair the 4 known invalid gold inputs")
    p.add_argument("--seed", type=int, default=0, help="seed of the multi-turn execution environment")
    return p


def _load(args: argparse.Namespace) -> BenchmarkSet:
    options: dict[str, Any] = {}
    if args.benchmark == "toolalpaca":
        options["repair"] = not args.no_repair
    if is_quickstart(args.data):
        ensure_quickstart_data()
    return load_benchmark(args.benchmark, args.data, strict=not args.lenient, category=args.category, **options)


def replay_episode(task: MultiTurnTask, turns: list[Any], call_format: str = "auto", seed: int = 0) -> EpisodeResult:
    """Replay recorded turns (strings, or ``{"output", "feedback"}`` traces) of one task."""
    ep = Episode(task, call_format=call_format, seed=seed)
    used = 0
    for turn in turns:
        if ep.done:
            break
        if isinstance(turn, dict):
            ep.step(turn["output"], turn.get("feedback"))
        else:
            ep.step(turn)
        used += 1
    result = ep.result()
    result.truncated_outputs = len(turns) - used
    return result


def score_predictions(
    bench: BenchmarkSet, rows: list[dict[str, Any]], mode: str, call_format: str = "auto", benchmark: str = "", seed: int = 0
) -> dict[str, Any]:
    """The report for prediction ``rows`` (already read) on ``bench``."""
    aligned: Alignment = align_predictions(rows, bench.cases)
    pred_info = {"n": len(rows), "missing": aligned.missing, "unknown": aligned.unknown, "duplicate": aligned.duplicate}
    name = benchmark or bench.name
    if bench.multi_turn:
        results = []
        for task in bench.cases:
            row = aligned.by_case.get(task.id)
            if row is not None and "turns" not in row:
                raise ValueError(f"prediction for multi-turn task {task.id} has no 'turns' list")
            results.append(replay_episode(task, row["turns"] if row else [], call_format, seed))
        return multi_turn_report(results, benchmark=name, call_format=call_format, data=bench.summary(), predictions=pred_info)
    if mode != "bfcl" and any(c.answer_style == "possible_values" for c in bench.cases):
        raise ValueError(f"{name}: gold answers are BFCL possible-value lists, which only --mode bfcl compares")
    outputs: dict[str, str | None] = {}
    for case in bench.cases:
        row = aligned.by_case.get(case.id)
        if row is not None and "output" not in row:
            raise ValueError(f"prediction for single-turn case {case.id} has no 'output'")
        outputs[case.id] = row["output"] if row is not None else None
    return single_turn_report(bench.cases, outputs, mode, call_format, benchmark=name, data=bench.summary(), predictions=pred_info)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(parser, args)
    except (ValueError, OSError) as e:  # TrajectoryFormatError is a ValueError: file, record, problem
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.predictions is None and args.write_gold is None:
        parser.error("give --predictions (to score) and/or --write-gold PATH")
    bench = _load(args)
    if args.write_gold:
        fmt = REGISTRY[args.benchmark].format if args.format == "auto" else args.format
        path = write_jsonl(args.write_gold, gold_predictions(bench.cases, fmt))
        print(f"wrote {len(bench.cases)} gold predictions ({fmt}) to {path}")
    if args.predictions is None:
        return 0
    if args.output is None:
        parser.error("--output DIR is required to score")
    mode = args.mode or REGISTRY[args.benchmark].mode
    report = score_predictions(bench, read_predictions(args.predictions), mode, args.format, benchmark=bench.name, seed=args.seed)
    js, md = write_report(report, args.output)
    print(headline(report))
    if bench.unsolvable:
        print(f"  {len(bench.unsolvable)} unsolvable case(s) counted as they fall: {', '.join(bench.unsolvable)}")
    if bench.repaired:
        print(f"  {len(bench.repaired)} repaired gold answer(s): {', '.join(bench.repaired)}")
    if bench.report.n_skipped:
        print(f"  {bench.report}")
    if report["predictions"]["missing"]:
        print("  cases without a prediction are scored as wrong (listed in the report)")
    print(f"  report: {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
