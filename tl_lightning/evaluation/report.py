"""Evaluation reports: per-case verdicts, totals, per-scenario breakdowns, error categories.

Both ``score`` (prediction files) and the ``test`` stage (generated outputs) build their reports
here, so the numbers agree wherever they come from. Percentages are of all cases (single-turn:
TS/PI/CF, docs/method.md#evaluation) or of all calls / tasks (multi-turn: DE/CE over calls, VA over tasks).

``report.json`` holds the headline numbers at the top level (``TS``/``PI``/``CF`` or
``DE``/``CE``/``VA``), ``per_scenario``, ``error_categories`` (single-turn: the IRM outcome of each
case, :func:`tl_lightning.evaluation.scoring.case_category`, the same as the torchmetric's breakdown;
multi-turn: the feedback category of each call, ``format_error`` for a turn with no parseable call),
``unparseable`` outputs, the data notes (skipped, repaired and unsolvable cases) and a ``cases``
list (index, id, per-level booleans, category) for diffing two models case by case.

An output that cannot be scored or executed at all (a pathological value; see
:func:`~tl_lightning.evaluation.scoring.judge_case`) is counted as wrong and listed under
``unparseable`` with its reason; it never ends the run. A case with no prediction at all (``score``) is
wrong too, but counted apart: category ``missing``, ``n_missing``, never among the unparseable. A rate over
nothing is 0.0 (see :mod:`tl_lightning.evaluation.metrics`, whose torchmetrics follow the same rule).

A ``test`` run that did not reach every case (``--trainer.limit_test_batches``) reports over the cases it
ran, as its torchmetrics do, and says so: ``partial`` holds ``cases_run``, ``cases_in_set`` and why, and the
headline reads ``32 of 300 cases, a partial run``.

The ``test`` stage collects its outputs in an :class:`EvalOutputs` and hands them to
:func:`write_eval_outputs`, which writes ``predictions.jsonl`` (the ``score`` input) and the report.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_lightning.data.calls import ParseResult
from tl_lightning.data.cases import EvalCase
from tl_lightning.evaluation.multiturn import FORMAT_ERROR, EpisodeResult
from tl_lightning.evaluation.predictions import write_jsonl
from tl_lightning.evaluation.scoring import judge_case, parse_output
from tl_lightning.rundir import write_json_atomic

if TYPE_CHECKING:
    from tl_lightning.benchmarks import BenchmarkSet

__all__ = [
    "MISSING",
    "EvalOutputs",
    "case_record",
    "headline",
    "multi_turn_report",
    "prediction_rows",
    "single_turn_report",
    "turn_trace",
    "write_eval_outputs",
    "write_report",
]
_MAX_LISTED = 200
#: The category of a case that has no prediction at all (``score``): wrong, but not an unparseable output.
MISSING = "missing"
NO_PREDICTION = "no prediction for this case"


def _pct(k: int | float, n: int) -> float:
    """Percent, rounded to 2 places; 0.0 of nothing (the same rule as the torchmetrics)."""
    return round(100.0 * k / n, 2) if n else 0.0


def case_record(case: EvalCase, output: str | None, mode: str, call_format: str) -> dict[str, Any]:
    """Score one single-turn case: the per-case row of ``report.json`` (plus ``parse_error``, which
    also holds why an output could not be scored at all)."""
    parsed = ParseResult(error=NO_PREDICTION) if output is None else parse_output(output, call_format)
    judged = judge_case(parsed, case, mode)
    verdict = judged.verdict
    return {
        "index": case.index,
        "id": case.id,
        "source_id": case.source_id,
        "scenario": case.scenario,
        "TS": verdict.TS,
        "PI": verdict.PI,
        "CF": verdict.CF,
        "category": MISSING if output is None else judged.category.value,
        "reason": verdict.reason,
        "parse_error": parsed.error if not parsed.ok else judged.error,
        "unsolvable": bool(case.meta.get("unsolvable", False)),
    }


def _levels(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    return {"n": n, **{k: _pct(sum(r[k] for r in rows), n) for k in ("TS", "PI", "CF")}}


def single_turn_report(
    cases: list[EvalCase],
    outputs: dict[str, str | None],
    mode: str,
    call_format: str = "auto",
    benchmark: str = "",
    data: dict[str, Any] | None = None,
    predictions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report for single-turn ``cases`` given each case's raw output (``outputs[case.id]``; None = missing)."""
    rows = [case_record(c, outputs.get(c.id), mode, call_format) for c in cases]
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_scenario[r["scenario"]].append(r)
    expects_call = {c.id: bool(c.gold) and bool(c.gold[0]) for c in cases}
    unparseable = [
        {"index": r["index"], "id": r["id"], "error": r["parse_error"], "output": (outputs.get(r["id"]) or "")[:300]}
        for r in rows
        if r["parse_error"] and expects_call[r["id"]] and r["category"] != MISSING
    ]
    solvable = [r for r in rows if not r["unsolvable"]]
    report = {
        "benchmark": benchmark,
        "kind": "single_turn",
        "mode": mode,
        "format": call_format,
        **_levels(rows),
        "solvable_only": _levels(solvable) if len(solvable) != len(rows) else None,
        "per_scenario": {s: _levels(rs) for s, rs in sorted(by_scenario.items())},
        "error_categories": dict(Counter(r["category"] for r in rows).most_common()),
        "unparseable": unparseable,
        "n_unparseable": len(unparseable),
        "n_missing": sum(r["category"] == MISSING for r in rows),
        "data": data or {},
        "predictions": predictions or {},
        "cases": [{k: v for k, v in r.items() if k != "parse_error"} for r in rows],
    }
    return report


def _rates(results: list[EpisodeResult]) -> dict[str, Any]:
    calls = sum(r.n_calls for r in results)
    out = {
        "n": len(results),
        "n_calls": calls,
        "DE": _pct(sum(r.n_de for r in results), calls),
        "CE": _pct(sum(r.n_ce for r in results), calls),
        "VA": _pct(sum(r.finished for r in results), len(results)),
    }
    checked = [r for r in results if r.success is not None]
    if checked:
        out["success"] = _pct(sum(bool(r.success) for r in checked), len(checked))
    return out


def multi_turn_report(
    results: list[EpisodeResult],
    benchmark: str = "",
    call_format: str = "auto",
    data: dict[str, Any] | None = None,
    predictions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report for multi-turn episodes: DE/CE over all calls, VA over tasks (+ sandbox success)."""
    by_scenario: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        by_scenario[r.scenario].append(r)
    unparseable = [
        {"id": r.id, "index": r.index, "turn": t, "error": turn.error, "output": turn.output[:300]}
        for r in results
        for t, turn in enumerate(r.turns)
        if FORMAT_ERROR in turn.categories
    ]
    return {
        "benchmark": benchmark,
        "kind": "multi_turn",
        "format": call_format,
        **_rates(results),
        "per_scenario": {s: _rates(rs) for s, rs in sorted(by_scenario.items())},
        "error_categories": dict(Counter(c for r in results for c in r.categories).most_common()),
        "unparseable": unparseable,
        "n_unparseable": len(unparseable),
        "data": data or {},
        "predictions": predictions or {},
        "cases": [
            {
                "index": r.index,
                "id": r.id,
                "scenario": r.scenario,
                "VA": r.finished,
                "turns": len(r.turns),
                "n_calls": r.n_calls,
                "DE_calls": r.n_de,
                "CE_calls": r.n_ce,
                "categories": r.categories,
                "success": r.success,
            }
            for r in results
        ],
    }


def headline(report: dict[str, Any]) -> str:
    """One line with the headline numbers and what they are over: cases (of the set, when the run was partial),
    unparseable outputs and cases without a prediction, each counted on its own."""
    name = report.get("benchmark", "")
    partial = report.get("partial")
    multi = report["kind"] == "multi_turn"
    unit = "tasks" if multi else "cases"
    scope = [f"{report['n']} of {partial['cases_in_set']} {unit}, a partial run ({partial['why']})" if partial
             else f"{report['n']} {unit}"]
    if multi:
        scope.append(f"{report['n_calls']} calls")
    else:
        scope.append(f"{report['n_unparseable']} unparseable")
    missing = report.get("n_missing", len((report.get("predictions") or {}).get("missing") or []))
    if missing:
        scope.append(f"{missing} without a prediction")
    if multi:
        extra = f" success={report['success']:.2f}" if "success" in report else ""
        return f"{name}: DE={report['DE']:.2f} CE={report['CE']:.2f} VA={report['VA']:.2f}{extra} ({', '.join(scope)})"
    return f"{name} [{report['mode']}]: TS={report['TS']:.2f} PI={report['PI']:.2f} CF={report['CF']:.2f} ({', '.join(scope)})"


def _markdown(report: dict[str, Any]) -> str:
    multi = report["kind"] == "multi_turn"
    keys = ["DE", "CE", "VA"] + (["success"] if "success" in report else []) if multi else ["TS", "PI", "CF"]
    lines = [f"# {report.get('benchmark', '')} evaluation", ""]
    if report.get("partial"):
        part = report["partial"]
        lines += [f"**Partial run**: {report['n']} of {part['cases_in_set']} cases ({part['why']}); every number below "
                  "is over the cases run.", ""]
    if not multi:
        lines += [f"Scoring mode: `{report['mode']}`; call format: `{report['format']}`.", ""]
    lines += ["| scope | n | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    scopes = [("overall", report)] + list(report["per_scenario"].items())
    if not multi and report.get("solvable_only"):
        scopes.insert(1, ("solvable only", report["solvable_only"]))
    for scope, vals in scopes:
        lines.append(f"| {scope or '-'} | {vals['n']} | " + " | ".join(f"{vals.get(k, 0.0):.2f}" for k in keys) + " |")
    total = sum(report["error_categories"].values()) or 1
    lines += ["", "## Error categories" + (" (per call)" if multi else " (per case, IRM outcome)"), "", "| category | count | % |", "|---|---|---|"]
    lines += [f"| {c} | {n} | {100 * n / total:.2f} |" for c, n in report["error_categories"].items()]
    data = report.get("data") or {}
    for title, items in (
        ("Unsolvable cases (counted as they fall)", data.get("unsolvable")),
        ("Repaired gold answers", [f"{k}: {v}" for k, v in (data.get("repaired") or {}).items()]),
        ("Skipped records", data.get("skip_errors")),
        ("Data notes", data.get("notes")),
        ("Cases without a prediction", (report.get("predictions") or {}).get("missing")),
        ("Predictions matching no case", (report.get("predictions") or {}).get("unknown")),
        ("Duplicate predictions (ignored)", (report.get("predictions") or {}).get("duplicate")),
    ):
        if items:
            lines += ["", f"## {title} ({len(items)})", ""] + [f"- {x}" for x in items[:_MAX_LISTED]]
    if report["unparseable"]:
        lines += ["", f"## Unparseable outputs ({report['n_unparseable']})", ""]
        for u in report["unparseable"][:_MAX_LISTED]:
            lines.append(f"- `{u['id']}`: {u['error']}: `{json.dumps(u['output'][:120], ensure_ascii=False)}`")
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "report.json", out / "report.md"
    md.write_text(_markdown(report), encoding="utf-8")
    write_json_atomic(js, report)  # last, and whole: a grid cell takes a readable report.json for a finished test
    return js, md


@dataclass
class EvalOutputs:
    """What the ``test`` stage keeps for its report: each single-turn case's raw output and each
    multi-turn task's episode, by case id. Picklable, so every process's part can be gathered."""

    outputs: dict[str, str] = field(default_factory=dict)
    episodes: dict[str, EpisodeResult] = field(default_factory=dict)

    @classmethod
    def merge(cls, parts: Iterable[EvalOutputs]) -> EvalOutputs:
        merged = cls()
        for part in parts:
            merged.outputs.update(part.outputs)
            merged.episodes.update(part.episodes)
        return merged


def turn_trace(turn: Any) -> str | dict[str, Any]:
    """One multi-turn turn as a predictions file holds it."""
    # A turn that ended on an error is written bare, so `score` re-parses / re-executes it and reaches
    # the same format error; other turns carry their feedback, which `score` classifies instead.
    return turn.output if turn.error is not None else {"output": turn.output, "feedback": turn.feedback}


def prediction_rows(bench: BenchmarkSet, collected: EvalOutputs) -> list[dict[str, Any]]:
    """The ``predictions.jsonl`` rows (the ``score`` input) of the cases in ``collected``, in the set's order."""
    if bench.multi_turn:
        return [{"id": t.id, "index": t.index, "turns": [turn_trace(turn) for turn in collected.episodes[t.id].turns]}
                for t in bench.cases if t.id in collected.episodes]
    return [{"id": c.id, "index": c.index, "output": collected.outputs[c.id]} for c in bench.cases if c.id in collected.outputs]


def write_eval_outputs(
    bench: BenchmarkSet, collected: EvalOutputs, mode: str, call_format: str, out_dir: str | Path,
    partial_why: str = "not every case was run",
) -> dict[str, Any]:
    """Write ``predictions.jsonl`` and ``report.json`` / ``report.md`` into ``out_dir`` for the
    outputs ``collected`` on ``bench`` (in the set's case order); returns the report. Scoring the
    predictions file with ``score`` gives the same per-case verdicts.

    The report is over the cases that were run: when ``collected`` misses some of the set's cases, it is
    marked ``partial`` (with ``partial_why``), and the cases never run are neither wrong nor unparseable."""
    out_dir = Path(out_dir)
    summary = bench.summary()
    if bench.multi_turn:
        results = [collected.episodes[t.id] for t in bench.cases if t.id in collected.episodes]
        report = multi_turn_report(results, benchmark=bench.name, call_format=call_format, data=summary)
    else:
        ran = [c for c in bench.cases if c.id in collected.outputs]
        report = single_turn_report(ran, dict(collected.outputs), mode, call_format, benchmark=bench.name, data=summary)
    report["partial"] = ({"cases_run": report["n"], "cases_in_set": len(bench.cases), "why": partial_why}
                         if report["n"] < len(bench.cases) else None)
    write_jsonl(out_dir / "predictions.jsonl", prediction_rows(bench, collected))
    write_report(report, out_dir)
    return report
