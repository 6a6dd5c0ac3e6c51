"""RoTBench (Ye et al. 2024): single-turn tool use under five levels of noise.

Format (``Data/First_Turn/<level>.json``): a JSON list of ``{id, conversations, scenario}`` where
``conversations`` is ``[system, user, assistant]``:

- the system value is the instructions, then a JSON list of tool schemas starting at the first
  ``[``, then the 13-character tail ``"\\n\\nLet's Begin!"`` (the official scorer slices ``[:-13]``);
- the user value ends with ``"\\nBegin!\\n"`` (stripped from the query here);
- the assistant value is a LIST of acceptable answers ``"Thought: ...\\nAction: NAME\\nAction Input: {json}"``.

Quirks handled: records i and i+105 of the noisy levels share an ``id``, so cases get index-based
unique ids (``source_id`` keeps the original); the last two tools are the ask-user and finish
tools, possibly with perturbed names, and are recorded in ``meta["skip_value_tools"]`` (not
value-compared) and ``meta["finish_tool"]`` (the official scorer accepts a plain ``finish`` for it);
a few tool lists repeat a name (later duplicates are dropped from ``tools``, see ``meta``).
ToolEyes uses the same system-prompt layout, so its reader reuses :func:`split_react_system`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tl_lightning.data.cases import EvalCase
from tl_lightning.data.errors import ReadReport, TrajectoryFormatError
from tl_lightning.data.schema import Message, Tool, ToolCall

__all__ = ["LEVELS", "read_rotbench", "split_react_system", "parse_react_answer", "dedupe_tools"]

LEVELS = ("clean", "slight", "medium", "heavy", "union")
SYSTEM_TAIL = "\n\nLet's Begin!"
USER_TAIL = "\nBegin!\n"


def split_react_system(value: str) -> tuple[str, list[dict[str, Any]]]:
    """Split a RoTBench/ToolEyes system value into (instructions, tool specs).

    The specs are the JSON list from the first ``[`` up to the ``"\\n\\nLet's Begin!"`` tail, exactly
    as the official scorer slices it. Raises ``ValueError`` saying what is wrong.
    """
    start = value.find("[")
    if start < 0:
        raise ValueError("system message holds no JSON tool list (no '[')")
    if not value.endswith(SYSTEM_TAIL):
        raise ValueError(f"system message does not end with {SYSTEM_TAIL!r} (ends {value[-20:]!r})")
    try:
        specs = json.loads(value[start : -len(SYSTEM_TAIL)])
    except json.JSONDecodeError as e:
        raise ValueError(f"tool list in the system message is not valid JSON: {e}") from None
    if not isinstance(specs, list) or not all(isinstance(s, dict) and "name" in s for s in specs):
        raise ValueError("tool list in the system message is not a list of {name, ...} objects")
    return value[:start], specs


def dedupe_tools(specs: list[dict[str, Any]]) -> tuple[list[Tool], list[str]]:
    """Tools from specs, keeping the first of any repeated name (a Trajectory needs unique names).

    Returns the tools and the names that were repeated, so the caller can record them.
    """
    tools: dict[str, Tool] = {}
    repeated: list[str] = []
    for spec in specs:
        tool = Tool.from_openai(spec)
        if tool.name in tools:
            repeated.append(tool.name)
            continue
        tools[tool.name] = tool
    return list(tools.values()), repeated


def parse_react_answer(text: str) -> ToolCall:
    """One gold answer ``"Thought: ...\\nAction: NAME\\nAction Input: {json}"`` as a call.

    Slices exactly like the official scorer (the action is the text between ``"Action: "`` and
    ``"Action Input:"`` minus one trailing newline) so that gold names match what it compares.
    """
    a, b = text.find("Action:"), text.find("Action Input:")
    if a < 0 or b < 0 or b < a:
        raise ValueError(f"gold answer has no 'Action:' / 'Action Input:' lines: {text[:120]!r}")
    name = text[a + 8 : b]
    if name.endswith("\n"):
        name = name[:-1]
    try:
        arguments = json.loads(text[b + 14 :])
    except json.JSONDecodeError as e:
        raise ValueError(f"gold Action Input is not valid JSON ({e}): {text[b:][:120]!r}") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"gold Action Input is not a JSON object: {text[b:][:120]!r}")
    return ToolCall(name=name, arguments=arguments, raw=text)


def _thought(text: str) -> str:
    head = text[: text.find("Action:")] if "Action:" in text else ""
    return head.removeprefix("Thought:").strip()


def _record_to_case(rec: Any, index: int, level: str) -> EvalCase:
    if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
        raise ValueError("record is not an object with a 'conversations' list")
    conv = rec["conversations"]
    if len(conv) != 3 or [c.get("from") for c in conv] != ["system", "user", "assistant"]:
        raise ValueError(f"conversations must be [system, user, assistant], got {[c.get('from') for c in conv]}")
    system, specs = split_react_system(conv[0]["value"])
    if len(specs) < 2:
        raise ValueError(f"expected the ask-user and finish tools last, got {len(specs)} tool(s)")
    tools, repeated = dedupe_tools(specs)
    query = conv[1]["value"]
    if not isinstance(query, str):
        raise ValueError("user value is not a string")
    answers = conv[2]["value"]
    if not isinstance(answers, list) or not answers:
        raise ValueError("assistant value must be a non-empty list of acceptable answers")
    gold = [[parse_react_answer(a)] for a in answers]
    meta: dict[str, Any] = {
        "level": level,
        # Positional, as in the official scorer (config[-2], config[-1]): names may be perturbed.
        "skip_value_tools": [specs[-2]["name"], specs[-1]["name"]],
        "ask_tool": specs[-2]["name"],
        "finish_tool": specs[-1]["name"],
        "gold_thoughts": [_thought(a) for a in answers],
    }
    if repeated:
        meta["duplicate_tools"] = repeated
    return EvalCase(
        id=f"rotbench-{level}-{index:04d}",
        index=index,
        tools=tools,
        messages=[Message("user", query.removesuffix(USER_TAIL))],
        gold=gold,
        scenario=str(rec.get("scenario", "")),
        source_id=str(rec.get("id", "")),
        system=system,
        meta=meta,
    )


def _resolve(path: str | Path, category: str | None) -> tuple[Path, str]:
    path = Path(path)
    if path.is_dir():
        level = category or "clean"
        if level not in LEVELS:
            raise ValueError(f"unknown RoTBench level {level!r}; choose one of {', '.join(LEVELS)}")
        return path / f"{level}.json", level
    level = category or path.stem
    return path, level


def read_rotbench(path: str | Path, strict: bool = True, category: str | None = None):
    """Read one RoTBench level into ``EvalCase``s (gold: every acceptable answer, one call each).

    ``path`` is a level file or the folder of level files (``category`` = level, default ``clean``).
    """
    from tl_lightning.benchmarks.registry import BenchmarkSet

    file, level = _resolve(path, category)
    cases, report, notes = read_json_cases(file, "RoTBench", lambda rec, i: _record_to_case(rec, i, level), strict)
    return BenchmarkSet(name=f"rotbench-{level}", cases=cases, report=report, notes=notes)


def read_json_cases(file: Path, what: str, convert: Callable[[Any, int], Any], strict: bool) -> tuple[list, ReadReport, list[str]]:
    """Convert every record of a JSON-array benchmark file with ``convert(record, index)``.

    Strict mode raises :class:`TrajectoryFormatError` (file, 0-based index, problem) at the first bad record;
    lenient mode skips and counts it in the report. ``notes`` lists records whose repeated tool names were
    de-duplicated (``meta["duplicate_tools"]``).
    """
    try:
        records = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise TrajectoryFormatError(file, None, f"cannot read {what} file: {e}") from None
    if not isinstance(records, list):
        raise TrajectoryFormatError(file, None, "expected a JSON list of records")
    report = ReadReport(path=str(file), n_records=len(records))
    items: list = []
    notes: list[str] = []
    for i, rec in enumerate(records):
        try:
            item = convert(rec, i)
        except (ValueError, KeyError, TypeError) as e:
            err = TrajectoryFormatError(file, i, str(e), record_kind="index")
            if strict:
                raise err from None
            report.skip(err)
            continue
        if "duplicate_tools" in item.meta:
            notes.append(f"{item.id}: repeated tool name(s) {item.meta['duplicate_tools']}; kept the first of each")
        items.append(item)
    report.n_read = len(items)
    return items, report, notes
