"""Prediction files: what ``score`` reads and what the ``test`` stage writes (JSON Lines).

Single-turn sets, one line per case::

    {"index": 0, "output": "Thought: ...\\nAction: get_weather\\nAction Input: {\\"city\\": \\"Paris\\"}"}
    {"id": "exec_simple_3", "output": "calc_binomial_probability(n=20, k=5, p=0.6)"}

Multi-turn sets, one line per task, the model's raw output of every turn in order; each turn may
instead be a trace entry ``{"output": ..., "feedback": [one string per call]}`` (what the ``test``
stage writes, except for a turn that ended on a format error, which it writes bare so that it is
re-parsed), in which case the recorded feedback is classified instead of re-executing::

    {"id": "tooleyes-0003", "turns": ["Action: get_uuid\\nAction Input: {}", "Action: finish\\nAction Input: {\\"answer\\": \\"...\\"}"]}

A line names its case by ``id`` (the case id the reader assigns, e.g. ``rotbench-clean-0004``, or
BFCL's own id) or by ``index`` (position in the source file; RoTBench's official alignment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_lightning.data.calls import format_calls, readback_problem
from tl_lightning.data.cases import EvalCase, MultiTurnTask
from tl_lightning.data.errors import TrajectoryFormatError
from tl_lightning.data.schema import FINISH_TOOL, ToolCall

__all__ = ["Alignment", "align_predictions", "gold_predictions", "read_predictions", "resolve_possible_values", "write_jsonl"]

_OMIT = object()


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read a predictions file; every line must be an object with ``index`` or ``id`` and ``output`` or ``turns``."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TrajectoryFormatError(path, line_no, f"invalid JSON: {e}", record_kind="line") from None
            problem = _check_row(row)
            if problem:
                raise TrajectoryFormatError(path, line_no, problem, record_kind="line")
            rows.append(row)
    return rows


def _check_row(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "a prediction must be a JSON object"
    if "id" not in row and "index" not in row:
        return "a prediction needs an 'id' or an 'index'"
    if "index" in row and (not isinstance(row["index"], int) or isinstance(row["index"], bool)):
        return f"'index' must be an integer, got {row['index']!r}"
    if "output" in row:
        if not isinstance(row["output"], str):
            return f"'output' must be a string (the raw model text), got {type(row['output']).__name__}"
    elif "turns" in row:
        turns = row["turns"]
        if not isinstance(turns, list):
            return "'turns' must be a list of outputs"
        for t in turns:
            ok = isinstance(t, str) or (
                isinstance(t, dict) and isinstance(t.get("output"), str) and isinstance(t.get("feedback", []), list)
            )
            if not ok:
                return "each turn must be a string or {\"output\": str, \"feedback\": [str, ...]}"
    else:
        return "a prediction needs an 'output' (single-turn) or 'turns' (multi-turn)"
    return None


@dataclass
class Alignment:
    """Predictions matched to cases: ``by_case`` maps case id -> prediction row."""

    by_case: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)


def align_predictions(rows: list[dict[str, Any]], cases: list[EvalCase] | list[MultiTurnTask]) -> Alignment:
    """Match rows to cases by ``id`` first, else by ``index``; the first row for a case wins."""
    by_id = {c.id: c for c in cases}
    by_index = {c.index: c for c in cases}
    out = Alignment()
    for row in rows:
        case = by_id.get(str(row["id"])) if "id" in row else None
        if case is None and "index" in row:
            case = by_index.get(row["index"])
        key = f"id={row['id']}" if "id" in row else f"index={row['index']}"
        if case is None:
            out.unknown.append(key)
        elif case.id in out.by_case:
            out.duplicate.append(key)
        else:
            out.by_case[case.id] = row
    out.missing = [c.id for c in cases if c.id not in out.by_case]
    return out


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def resolve_possible_values(arguments: dict[str, list[Any]]) -> dict[str, Any]:
    """A BFCL possible-answer call's arguments -> one concrete call: the first accepted value of each
    parameter, omitting parameters whose accepted values are only ``""`` (optional, omitted).
    Nested dicts are possible answers themselves (each key a list of accepted values)."""
    out = {}
    for k, accepted in arguments.items():
        v = _first(accepted)
        if v is not _OMIT:
            out[k] = v
    return out


def _first(accepted: list[Any]) -> Any:
    for v in accepted:
        if v != "":
            return _concrete(v)
    return _OMIT


def _concrete(v: Any) -> Any:
    if isinstance(v, dict):
        return resolve_possible_values({k: (x if isinstance(x, list) else [x]) for k, x in v.items()})
    if isinstance(v, list):
        return [_concrete(x) for x in v]
    return v


def gold_predictions(cases: list[EvalCase] | list[MultiTurnTask], call_format: str) -> list[dict[str, Any]]:
    """The gold answers written as a predictions file (the first acceptable answer of each case).

    Scoring it checks the reader and scorer end to end: 100 in ``corrected`` mode (``bfcl`` mode for
    BFCL's possible-answer categories), 92.38 on RoTBench clean in ``official`` mode. A case whose
    gold is "no call" (BFCL irrelevance) gets a plain-text refusal. A multi-turn task gets its
    ``reference`` solution (synthetic sets: one call per turn, then ``finish``; DE = CE = 0,
    VA = success = 100) or, with none (ToolEyes), the one-turn ``finish(answer=...)`` trace.
    """
    rows = []
    for case in cases:
        if isinstance(case, MultiTurnTask):
            ref = case.meta.get("reference") or {}
            calls = [ToolCall(c["name"], c.get("arguments") or {}) for c in ref.get("calls", [])]
            calls.append(ToolCall(FINISH_TOOL, {"answer": ref.get("answer", "I cannot handle the task.")}))
            turns = [format_calls([c], call_format, thought=_thought(call_format)) for c in calls]
            rows.append({"id": case.id, "index": case.index, "turns": turns})
            continue
        if not case.gold or not case.gold[0]:
            rows.append({"id": case.id, "index": case.index, "output": "None of the given functions applies to this request."})
            continue
        answer = case.gold[0]
        for call in answer:
            problem = readback_problem(call, call_format)
            if problem:  # a gold file the scorer cannot read back would score its own gold as wrong
                raise ValueError(f"case {case.id}: the gold call to {call.name!r} cannot be written: {problem}; "
                                 "write the gold in another --format")
        if case.answer_style == "possible_values":
            answer = [ToolCall(c.name, resolve_possible_values(c.arguments)) for c in answer]
        rows.append({"id": case.id, "index": case.index, "output": format_calls(answer, call_format, thought=_thought(call_format))})
    return rows


def _thought(call_format: str) -> str | None:
    return "" if call_format == "react" else None
