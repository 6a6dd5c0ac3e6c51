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

The official scorer's ReAct slicing (:func:`official_react_slices`, :func:`rotbench_extract`) lives
here once: gold answers are read with it, and the ``official`` scoring mode re-extracts predictions
with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tl_lightning.benchmarks.base import BenchmarkSet, read_cases
from tl_lightning.data.cases import EvalCase
from tl_lightning.data.schema import Message, Tool, ToolCall

__all__ = [
    "LEVELS",
    "dedupe_tools",
    "official_react_slices",
    "parse_react_answer",
    "read_rotbench",
    "rotbench_extract",
    "split_react_system",
]

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


def dedupe_tools(specs: list[dict[str, Any]]) -> tuple[list[Tool], dict[str, list[str]]]:
    """Tools from specs, keeping the first of any repeated name (a Trajectory needs unique names).

    Returns the tools and the case metadata that records the repeated names (``{"duplicate_tools": [...]}``,
    empty when there are none), so that reports can list them.
    """
    tools: dict[str, Tool] = {}
    repeated: list[str] = []
    for spec in specs:
        tool = Tool.from_openai(spec)
        if tool.name in tools:
            repeated.append(tool.name)
            continue
        tools[tool.name] = tool
    return list(tools.values()), ({"duplicate_tools": repeated} if repeated else {})


def official_react_slices(text: str) -> tuple[str, str]:
    """(action, action input text) sliced exactly as the RoTBench scorer does.

    The action is ``text[find("Action:") + 8 : find("Action Input:")]`` minus one trailing newline
    (the scorer strips exactly one, and crashes on ""); the input is everything after
    ``find("Action Input:") + 14``. Missing markers are not checked: ``find`` returns -1 and the
    slices are whatever the scorer would compare.
    """
    a, b = text.find("Action:"), text.find("Action Input:")
    action = text[a + 8 : b]
    if action.endswith("\n"):
        action = action[:-1]
    return action, text[b + 14 :]


def rotbench_extract(text: str) -> tuple[str, Any]:
    """(action, action_input) as the RoTBench scorer reads a ReAct output.

    ``action_input`` is None where the scorer would return 0 (JSON error or a JSON string);
    otherwise the decoded JSON value, which may be empty or a non-dict.
    """
    action, raw_input = official_react_slices(text)
    try:
        value = json.loads(raw_input)
    except (ValueError, RecursionError):
        return action, None
    return action, (None if isinstance(value, str) else value)


def parse_react_answer(text: str) -> ToolCall:
    """One gold answer ``"Thought: ...\\nAction: NAME\\nAction Input: {json}"`` as a call.

    Sliced by :func:`official_react_slices`, so that gold names match what the scorer compares.
    """
    a, b = text.find("Action:"), text.find("Action Input:")
    if a < 0 or b < 0 or b < a:
        raise ValueError(f"gold answer has no 'Action:' / 'Action Input:' lines: {text[:120]!r}")
    name, raw_input = official_react_slices(text)
    try:
        arguments = json.loads(raw_input)
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
    tools, duplicates = dedupe_tools(specs)
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
        **duplicates,
    }
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


def read_rotbench(path: str | Path, strict: bool = True, category: str | None = None) -> BenchmarkSet:
    """Read one RoTBench level into ``EvalCase``s (gold: every acceptable answer, one call each).

    ``path`` is a level file or the folder of level files (``category`` = level, default ``clean``).
    """
    file, level = _resolve(path, category)
    cases, report, notes = read_cases(file, lambda rec, raw: _record_to_case(rec, raw.ordinal, level), strict)
    return BenchmarkSet(name=f"rotbench-{level}", cases=cases, report=report, notes=notes)
