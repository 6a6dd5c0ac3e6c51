"""ToolAlpaca ``eval_real.json``: 11 real APIs, 114 instructions, scored on the first gold step.

Format: a JSON list of API objects. ``Function_Description`` maps tool name -> description text
holding ``Parameters: {json}`` (parameter -> ``"Required. <type>. <description>"``); its key
``components`` describes output structures and is not a tool. Instruction j of an API has gold
answer j, a list of steps ``{Action, Action_Input}`` with ``Action_Input`` a JSON string.

Quirks handled:
- 4 CurrencyBeacon gold inputs repeat a key token (``"symbols": "symbols": [...]``) and are not
  valid JSON. Strict reading raises an error naming the file, API and instruction; lenient reading
  skips and counts them; ``repair=True`` collapses the repeated ``"key":`` token (the only repair
  applied, and only when the result parses), and lists the repaired cases.
- 6 AviationAPI gold first actions name tools that are not documented: the case keeps its gold
  and is marked ``meta["unsolvable"] = True`` (counted as it falls, as in the paper).
- API keys are masked as ``***`` in gold inputs and in ``Authentication``, which the system
  prompt shows the model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tl_lightning.benchmarks.base import BenchmarkSet
from tl_lightning.data.cases import EvalCase
from tl_lightning.data.errors import ReadReport, TrajectoryFormatError
from tl_lightning.data.records import BAD_JSON, describe_exception, iter_records
from tl_lightning.data.schema import Message, Tool, ToolCall

__all__ = ["read_toolalpaca", "parse_function_description", "repair_repeated_key"]

_NOT_TOOLS = frozenset({"components"})
# Types the ToolAlpaca converter writes as the first (or second, after "Required.") sentence.
_TYPES = {"string", "integer", "number", "boolean", "array", "object"}
_REPEATED_KEY = re.compile(r'("([^"\\]+)"\s*:\s*)"\2"\s*:\s*')


def parse_function_description(name: str, text: str) -> Tool:
    """A ToolAlpaca ``Function_Description`` entry as a :class:`Tool` (JSON-schema parameters)."""
    marker = text.find("Parameters:")
    if marker < 0:
        raise ValueError(f"tool {name!r}: description has no 'Parameters: {{...}}'")
    start = text.find("{", marker)
    try:
        params, _ = json.JSONDecoder().raw_decode(text, start)
    except (json.JSONDecodeError, ValueError) as e:
        raise ValueError(f"tool {name!r}: 'Parameters:' is not a JSON object: {e}") from None
    if not isinstance(params, dict):
        raise ValueError(f"tool {name!r}: 'Parameters:' is not a JSON object")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for pname, desc in params.items():
        parts = str(desc).split(". ", 2) if isinstance(desc, str) else [""]
        if parts[0].strip() == "Required":
            required.append(pname)
            parts = parts[1:]
        ptype = parts[0].strip().rstrip(".") if parts else ""
        if ptype in _TYPES:
            rest = ". ".join(parts[1:]).strip()
        else:  # no type sentence: keep everything as the description
            ptype, rest = "string", ". ".join(parts).strip()
        properties[pname] = {"type": ptype, "description": rest}
    description = text[:marker].strip()
    output = text[text.find("Output:") :].strip() if "Output:" in text else ""
    if output:
        description = f"{description}\n{output}"
    return Tool(name=name, description=description, parameters={"type": "object", "properties": properties}, required=tuple(required))


def repair_repeated_key(text: str) -> str | None:
    """Collapse a repeated key token (``"k": "k": v`` -> ``"k": v``); None unless that yields valid JSON."""
    fixed = _REPEATED_KEY.sub(r"\1", text)
    if fixed == text:
        return None
    try:
        json.loads(fixed)
    except json.JSONDecodeError:
        return None
    return fixed


def _system(api: dict[str, Any]) -> str:
    lines = [f"API: {api.get('Name', '')}", f"Description: {api.get('Description', '')}"]
    auth = api.get("Authentication") or {}
    if auth:
        lines.append(f"Authentication information: {json.dumps(auth)}")
    return "\n".join(lines)


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    return path / "eval_real.json" if path.is_dir() else path


def read_toolalpaca(
    path: str | Path, strict: bool = True, category: str | None = None, repair: bool = False
) -> BenchmarkSet:
    """Read ToolAlpaca ``eval_real.json`` into 114 ``EvalCase``s (gold = the first gold step).

    ``category`` (an API name) keeps only that API's instructions. Scenario = the API's Category.
    A record here is an API entry, which holds several cases: a bad entry skips all of them (one
    skipped record if the entry did not even decode).
    """
    file = _resolve(path)
    report = ReadReport(path=str(file))
    cases: list[EvalCase] = []
    repaired: dict[str, str] = {}
    unsolvable: list[str] = []
    notes: list[str] = []
    index = -1
    for raw in iter_records(file, layout="array"):
        a, api = raw.number, raw.value
        api_name = api.get("Name", f"#{a}") if isinstance(api, dict) else f"#{a}"
        try:
            if raw.error is not None:
                raise ValueError(f"{BAD_JSON}: {raw.error}")
            if not isinstance(api, dict):
                raise ValueError("API entry is not an object")
            fd = api["Function_Description"]
            tools = [parse_function_description(n, t) for n, t in fd.items() if n not in _NOT_TOOLS]
            instructions, answers = api["Instructions"], api["Golden_Answers"]
            if not isinstance(instructions, list) or not isinstance(answers, list):
                raise ValueError("'Instructions' and 'Golden_Answers' must be lists")
            if len(instructions) != len(answers):
                raise ValueError(f"{len(instructions)} instructions but {len(answers)} gold answers")
        except Exception as e:  # any failure inside one entry is that entry's problem
            err = TrajectoryFormatError(file, f"{api_name!r} (entry {a})", describe_exception(e), record_kind="API")
            if strict:
                raise err from e
            instructions = api.get("Instructions") if isinstance(api, dict) else None
            n = len(instructions) if isinstance(instructions, list) else 1
            report.n_records += n
            for _ in range(n):
                index += 1
                report.skip(err, kind="invalid API entry")
            continue
        names = {t.name for t in tools}
        for j, (instruction, steps) in enumerate(zip(instructions, answers, strict=True)):
            index += 1
            report.n_records += 1
            case_id = f"toolalpaca-{index:03d}"
            where = f"{api_name!r} (entry {a}), instruction {j} ({str(instruction)[:60]!r})"
            try:
                first = steps[0]
                raw_input = first["Action_Input"]
                try:
                    arguments = json.loads(raw_input) if raw_input.strip() else {}
                except json.JSONDecodeError as e:  # a RecursionError or digit-limit ValueError is not repairable
                    fixed = repair_repeated_key(raw_input) if repair else None
                    if fixed is None:
                        raise ValueError(f"gold Action_Input is not valid JSON ({e}): {raw_input!r}") from None
                    arguments = json.loads(fixed)
                    repaired[case_id] = f"{raw_input} -> {fixed}"
                if not isinstance(arguments, dict):
                    raise ValueError(f"gold Action_Input is not a JSON object: {raw_input!r}")
                call = ToolCall(name=first["Action"], arguments=arguments, raw=raw_input)
            except Exception as e:  # any failure inside one case is that case's problem
                err = TrajectoryFormatError(file, where, describe_exception(e), record_kind="API")
                if strict:
                    raise err from e
                report.skip(err, kind="invalid gold Action_Input")
                continue
            meta: dict[str, Any] = {"api": api_name, "instruction_index": j, "n_gold_steps": len(steps)}
            if call.name not in names:
                meta["unsolvable"] = True
                unsolvable.append(case_id)
                notes.append(f"{case_id}: gold tool {call.name!r} is not among {api_name}'s documented tools (unsolvable)")
            cases.append(
                EvalCase(
                    id=case_id,
                    index=index,
                    tools=tools,
                    messages=[Message("user", str(instruction))],
                    gold=[[call]],
                    scenario=str(api.get("Category", "")),
                    source_id=f"{api_name}/{j}",
                    system=_system(api),
                    meta=meta,
                )
            )
    report.n_read = len(cases)
    if category is not None:
        cases = [c for c in cases if c.meta["api"] == category]
        if not cases:
            raise ValueError(f"{file}: no API named {category!r}")
        kept = {c.id for c in cases}
        repaired = {k: v for k, v in repaired.items() if k in kept}
        unsolvable = [u for u in unsolvable if u in kept]
        notes = [n for n in notes if n.split(":")[0] in kept]
    return BenchmarkSet(name="toolalpaca", cases=cases, report=report, repaired=repaired, unsolvable=unsolvable, notes=notes)
