"""The quick-start synthetic test sets (``test_single.jsonl`` / ``test_multi.jsonl``) as cases.

Formats (written by ``tl_lightning.synthetic.generator``):

- ``test_single.jsonl``: ``{"id", "tools": [openai specs], "messages": [{"role": "user", ...}],
  "gold": [[{"name", "arguments"}, ...], ...], "scenario"}`` -> :class:`EvalCase`;
- ``test_multi.jsonl``: ``{"id", "tools", "messages", "scenario", "toolkits", "initial_state",
  "success", "max_turns"}`` -> :class:`MultiTurnTask` with ``environment="sandbox"`` (the toolkits,
  initial state, machine-checkable success condition and the optional ``reference`` solution go
  to ``meta``).

The kind is decided per record (a ``gold`` key means single-turn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_lightning.benchmarks.base import BenchmarkSet, read_cases
from tl_lightning.data.cases import EvalCase, MultiTurnTask
from tl_lightning.data.errors import TrajectoryFormatError
from tl_lightning.data.paths import resolve_data_path
from tl_lightning.data.records import RawRecord
from tl_lightning.data.schema import Message, Tool, ToolCall

__all__ = ["read_synthetic_cases", "resolve_synthetic_path"]


def resolve_synthetic_path(path: str | Path, category: str | None = None) -> Path:
    """``"quickstart"`` / ``"quickstart:test_multi"`` -> the generated file; a folder + category
    (``single``/``multi``) -> ``test_<category>.jsonl`` in it; a file -> itself.

    Bare ``"quickstart"`` means a test split here (``test_<category>``, default single), not the
    train split it names for training. Raises FileNotFoundError if the quick-start set has not been
    generated (``tl_lightning.synthetic.ensure_quickstart_data()`` generates it).
    """
    text = str(path)
    if text == "quickstart":
        return resolve_data_path(f"quickstart:test_{category or 'single'}")
    if text.startswith("quickstart:"):
        return resolve_data_path(text)
    p = Path(path)
    if p.is_dir():
        return p / f"test_{category or 'single'}.jsonl"
    return p


def _messages(rec: dict[str, Any]) -> list[Message]:
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("'messages' must be a non-empty list")
    return [Message(m["role"], m["content"]) for m in msgs]


def _tools(rec: dict[str, Any]) -> list[Tool]:
    specs = rec.get("tools")
    if not isinstance(specs, list) or not specs:
        raise ValueError("'tools' must be a non-empty list of OpenAI tool specs")
    return [Tool.from_openai(s) for s in specs]


def _call(obj: Any) -> ToolCall:
    if not isinstance(obj, dict) or "name" not in obj:
        raise ValueError(f"gold call must be {{name, arguments}}, got {str(obj)[:120]}")
    return ToolCall(name=obj["name"], arguments=obj.get("arguments") or {})


def _record_to_case(rec: Any, index: int) -> EvalCase | MultiTurnTask:
    if not isinstance(rec, dict) or "id" not in rec:
        raise ValueError("record is not an object with an 'id'")
    common = dict(id=str(rec["id"]), index=index, tools=_tools(rec), messages=_messages(rec), scenario=str(rec.get("scenario", "")), source_id=str(rec["id"]))
    if "gold" in rec:
        gold = rec["gold"]
        if not isinstance(gold, list) or not gold or not all(isinstance(a, list) for a in gold):
            raise ValueError("'gold' must be a non-empty list of answers, each a list of calls")
        return EvalCase(gold=[[_call(c) for c in answer] for answer in gold], **common)
    missing = [k for k in ("toolkits", "success") if k not in rec]
    if missing:
        raise ValueError(f"multi-turn record lacks {missing} (single-turn records need 'gold')")
    meta = {"toolkits": list(rec["toolkits"]), "initial_state": rec.get("initial_state") or {}, "success": rec["success"]}
    if "reference" in rec:  # the generator's own solution: calls in order, then the answer
        meta["reference"] = rec["reference"]
    return MultiTurnTask(max_turns=int(rec.get("max_turns", 9)), environment="sandbox", meta=meta, **common)


def read_synthetic_cases(path: str | Path, strict: bool = True, category: str | None = None) -> BenchmarkSet:
    """Read a quick-start test file (JSON Lines) into ``EvalCase``s or ``MultiTurnTask``s."""
    file = resolve_synthetic_path(path, category)
    if not file.is_file():
        raise TrajectoryFormatError(file, None, "synthetic test file not found")
    seen: set[str] = set()
    kinds: list[type] = []

    def convert(rec: Any, raw: RawRecord) -> EvalCase | MultiTurnTask:
        case = _record_to_case(rec, raw.ordinal)
        if case.id in seen:
            raise ValueError(f"duplicate id {case.id!r}")
        if kinds and type(case) is not kinds[0]:
            raise ValueError("single-turn and multi-turn records mixed in one file")
        seen.add(case.id)
        kinds.append(type(case))
        return case

    cases, report, _ = read_cases(file, convert, strict, layout="lines")
    return BenchmarkSet(name=f"synthetic-{file.stem}", cases=cases, report=report)
