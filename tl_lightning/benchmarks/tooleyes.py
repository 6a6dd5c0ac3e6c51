"""ToolEyes zero-shot (Ye et al. 2024): 382 multi-turn tasks over real-world tools.

Format: a JSON list of ``{id, conversations: [system, user], path, scenario}``. The system value
embeds the tool list exactly like RoTBench (instructions, a JSON list from the first ``[``, then
``"\\n\\nLet's Begin!"``), so :func:`~tl_lightning.benchmarks.rotbench.split_react_system` parses
it. There is no gold trajectory: the model calls tools until ``finish`` (at most 9 turns), calls
are executed by the ``SchemaSimulator`` (``environment="schema"``) and scored with DE/CE/VA.

Quirks handled: ids repeat (380 unique of 382), so tasks get index-based unique ids
(``source_id`` keeps the original); a few tool lists repeat a name (the first is kept, recorded
in ``meta["duplicate_tools"]`` and the set's notes).
"""

from __future__ import annotations

from pathlib import Path

from tl_lightning.benchmarks.base import BenchmarkSet, read_cases
from tl_lightning.benchmarks.rotbench import dedupe_tools, split_react_system
from tl_lightning.data.cases import MultiTurnTask
from tl_lightning.data.schema import Message

__all__ = ["read_tooleyes"]


def _record_to_task(rec, index: int, max_turns: int) -> MultiTurnTask:
    if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
        raise ValueError("record is not an object with a 'conversations' list")
    conv = rec["conversations"]
    if [c.get("from") for c in conv[:2]] != ["system", "user"]:
        raise ValueError(f"conversations must start [system, user], got {[c.get('from') for c in conv]}")
    system, specs = split_react_system(conv[0]["value"])
    tools, duplicates = dedupe_tools(specs)
    meta = {"path": rec.get("path", ""), "finish_tool": specs[-1]["name"] if specs else "", **duplicates}
    return MultiTurnTask(
        id=f"tooleyes-{index:04d}",
        index=index,
        tools=tools,
        messages=[Message("user", str(conv[1]["value"]))],
        scenario=str(rec.get("scenario", "")),
        source_id=str(rec.get("id", "")),
        system=system,
        max_turns=max_turns,
        environment="schema",
        meta=meta,
    )


def read_tooleyes(
    path: str | Path, strict: bool = True, category: str | None = None, max_turns: int = 9
) -> BenchmarkSet:
    """Read ToolEyes tasks (``tooleyes_zero_shot.json`` or its folder); ``category`` keeps one scenario."""
    file = Path(path)
    if file.is_dir():
        file = file / "tooleyes_zero_shot.json"
    tasks, report, notes = read_cases(file, lambda rec, raw: _record_to_task(rec, raw.ordinal, max_turns), strict)
    if category is not None:
        tasks = [t for t in tasks if t.scenario == category]
    return BenchmarkSet(name="tooleyes", cases=tasks, report=report, notes=notes)
