"""Berkeley Function-Calling Leaderboard (BFCL v3): single-turn function calling.

Two folder layouts, both JSON Lines, questions ``{"id", "question": [[{role, content}, ...]],
"function": [{name, description, parameters: {type: "dict", properties, required}}]}``:

- **v3 exec** (``exec_<cat>.json`` + ``exec_<cat>_answer.json``): ``ground_truth`` is a list of
  Python call strings (``"f(a=1, b='x')"``, 2-4 of them for parallel cases), parsed here with
  ``ast`` (literal values only, never ``eval``) into one exact answer (``answer_style="exact"``).
- **AST categories** (``BFCL_v3_<cat>.json`` + ``possible_answer/BFCL_v3_<cat>.json``; names without
  the ``BFCL_v3_`` prefix are accepted too): ``ground_truth`` is a list of
  ``{func: {param: [accepted values]}}`` where ``""`` in a list means the parameter may be omitted;
  cases get ``answer_style="possible_values"`` and each gold argument value is its accepted list.
  ``irrelevance`` categories have no answer file: the only right answer is no call (``gold == []``,
  ``meta["irrelevance"] = True``).

Schemas keep BFCL's own type names (``dict``, ``float``, ``tuple``, ``any``, ...): the ``bfcl``
scoring mode type-checks against them (``meta["schema_dialect"] = "bfcl"``).
"""

from __future__ import annotations

import ast
from functools import partial
from pathlib import Path
from typing import Any

from tl_lightning.benchmarks.base import BenchmarkSet, read_cases
from tl_lightning.data.cases import EvalCase
from tl_lightning.data.errors import ReadReport, TrajectoryFormatError
from tl_lightning.data.literals import literal_value
from tl_lightning.data.records import RawRecord, iter_records
from tl_lightning.data.schema import Message, Tool, ToolCall

__all__ = ["EXEC_CATEGORIES", "AST_CATEGORIES", "read_bfcl", "parse_ground_truth_call"]

EXEC_CATEGORIES = ("simple", "multiple", "parallel", "parallel_multiple")
AST_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple", "irrelevance")
_PREFIX = "BFCL_v3_"


def _dotted_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted_name(node.value)}.{node.attr}"
    raise ValueError(f"call target is not a (dotted) name: {ast.dump(node)[:80]}")


def parse_ground_truth_call(text: str, tool: Tool | None = None) -> ToolCall:
    """``"f(a=1, b=[2, 3])"`` -> ``ToolCall("f", {"a": 1, "b": [2, 3]})`` through ``ast``, literals only.

    Positional arguments (one exec ground truth, ``calculate_mean([1, 3])``) bind to ``tool``'s
    parameters in schema order, as Python would bind them.
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"ground truth is not a Python call ({e.msg}): {text[:120]!r}") from None
    call = tree.body
    if not isinstance(call, ast.Call):
        raise ValueError(f"ground truth is not a call: {text[:120]!r}")
    arguments: dict[str, Any] = {}
    if call.args:
        order = list(tool.properties) if tool is not None else []
        if len(call.args) > len(order):
            raise ValueError(f"ground truth has {len(call.args)} positional argument(s) that no schema order binds: {text[:120]!r}")
        for pname, node in zip(order, call.args, strict=False):
            try:
                arguments[pname] = literal_value(node)
            except (ValueError, SyntaxError, TypeError, ZeroDivisionError, RecursionError, MemoryError):
                raise ValueError(f"positional argument {pname!r} is not a literal: {text[:120]!r}") from None
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError(f"ground truth uses **kwargs: {text[:120]!r}")
        try:
            arguments[kw.arg] = literal_value(kw.value)
        except (ValueError, SyntaxError, TypeError, ZeroDivisionError, RecursionError, MemoryError):
            raise ValueError(f"argument {kw.arg!r} is not a literal: {text[:120]!r}") from None
    return ToolCall(name=_dotted_name(call.func), arguments=arguments, raw=text)


def _possible_answer_calls(ground_truth: Any) -> list[ToolCall]:
    if not isinstance(ground_truth, list):
        raise ValueError("possible answer 'ground_truth' must be a list of {function: {param: [values]}}")
    calls = []
    for item in ground_truth:
        if not isinstance(item, dict) or len(item) != 1:
            raise ValueError(f"possible answer entry must be one {{function: params}} object, got {str(item)[:120]}")
        (name, params), = item.items()
        if not isinstance(params, dict) or not all(isinstance(v, list) for v in params.values()):
            raise ValueError(f"possible answer for {name!r} must map each parameter to a list of accepted values")
        calls.append(ToolCall(name=name, arguments=params))
    return calls


def _question_case(q: Any) -> tuple[str, list[Message], list[Tool]]:
    if not isinstance(q, dict) or "id" not in q:
        raise ValueError("question record is not an object with an 'id'")
    turns = q.get("question")
    if not isinstance(turns, list) or not turns:
        raise ValueError("'question' must be a non-empty list of turns")
    if len(turns) != 1:
        raise ValueError(f"{len(turns)} turns: multi-turn BFCL categories are not single-turn cases")
    turn = turns[0]
    if isinstance(turn, dict):  # some older files hold the message list directly
        turn = [turn]
    messages = [Message(m["role"], m["content"]) for m in turn]
    functions = q.get("function")
    if not isinstance(functions, list) or not functions:
        raise ValueError("'function' must be a non-empty list of function documents")
    return str(q["id"]), messages, [Tool.from_openai(f) for f in functions]


def _gold_schema_problem(gold: list[list[ToolCall]], tools: list[Tool]) -> str | None:
    """Why no schema-following call can match this gold (one exec ground truth passes ``price=``,
    which ``book_room`` does not document), or None."""
    by_name = {t.name: t for t in tools}
    for answer in gold:
        for call in answer:
            tool = by_name.get(call.name)
            if tool is None:
                return f"gold calls {call.name!r}, which is not among the functions"
            extra = sorted(set(call.arguments) - set(tool.properties))
            if extra:
                return f"gold passes {extra} to {call.name!r}, whose schema does not document them"
    return None


def _category_files(path: Path, category: str | None) -> list[tuple[str, Path, Path | None, str]]:
    """(category, question file, answer file or None, layout) for each category found under ``path``."""
    if path.is_file():
        return [_classify_file(path)]
    found: dict[str, tuple[str, Path, Path | None, str]] = {}
    for q in sorted(path.glob("exec_*.json")):
        if q.stem.endswith("_answer"):
            continue
        cat = q.stem.removeprefix("exec_")
        found[cat] = (cat, q, path / f"exec_{cat}_answer.json", "exec")
    for q in sorted(list(path.glob(f"{_PREFIX}*.json")) + [p for p in path.glob("*.json") if not p.name.startswith(("exec_", _PREFIX))]):
        cat = q.stem.removeprefix(_PREFIX)
        if cat in found:
            continue
        answer = path / "possible_answer" / q.name
        found[cat] = (cat, q, answer if answer.is_file() else None, "ast")
    if not found:
        raise TrajectoryFormatError(path, None, "no BFCL question files (exec_<cat>.json or BFCL_v3_<cat>.json) in this folder")
    if category is not None:
        key = category.removeprefix(_PREFIX).removeprefix("exec_")
        if key not in found:
            raise ValueError(f"{path}: no BFCL category {category!r}; found {', '.join(found)}")
        return [found[key]]
    order = {c: i for i, c in enumerate(EXEC_CATEGORIES + AST_CATEGORIES)}
    return sorted(found.values(), key=lambda f: (order.get(f[0], len(order)), f[0]))


def _classify_file(q: Path) -> tuple[str, Path, Path | None, str]:
    if q.name.startswith("exec_"):
        cat = q.stem.removeprefix("exec_")
        return cat, q, q.with_name(f"exec_{cat}_answer.json"), "exec"
    answer = q.parent / "possible_answer" / q.name
    return q.stem.removeprefix(_PREFIX), q, answer if answer.is_file() else None, "ast"


def _question_to_case(
    q: Any,
    raw: RawRecord,
    *,
    category: str,
    layout: str,
    answer_file: Path | None,
    answers: dict[str, tuple[int, Any]],
    first_index: int,
) -> EvalCase:
    """One question record (and its answer, looked up by id) as a case; ``answer_file`` None: irrelevance."""
    qid, messages, tools = _question_case(q)
    if answer_file is None:
        gold: list[list[ToolCall]] = []
    else:
        if qid not in answers:
            raise ValueError(f"no answer with id {qid!r} in {answer_file.name}")
        a_line, answer = answers[qid]
        truth = answer.get("ground_truth")
        if layout == "exec":
            if not isinstance(truth, list) or not all(isinstance(t, str) for t in truth):
                raise ValueError(f"{answer_file.name} line {a_line}: 'ground_truth' must be a list of call strings")
            by_name = {t.name: t for t in tools}
            gold = [[parse_ground_truth_call(t, by_name.get(t.split("(")[0].strip())) for t in truth]]
        else:
            gold = [_possible_answer_calls(truth)]
    meta: dict[str, Any] = {"category": category, "layout": layout, "schema_dialect": "bfcl"}
    if answer_file is None:
        meta["irrelevance"] = True
    problem = _gold_schema_problem(gold, tools)
    if problem:
        meta["unsolvable"] = True
        meta["gold_problem"] = problem
    if layout == "exec":
        meta["execution_result_type"] = answers[qid][1].get("execution_result_type")
    return EvalCase(
        id=qid,
        index=first_index + raw.ordinal,  # position in the set, counted over skipped records too
        tools=tools,
        messages=messages,
        gold=gold,
        scenario=category,
        source_id=qid,
        answer_style="exact" if layout == "exec" else "possible_values",
        meta=meta,
    )


def read_bfcl(path: str | Path, strict: bool = True, category: str | None = None) -> BenchmarkSet:
    """Read BFCL question/answer files into ``EvalCase``s (scenario = category).

    ``path`` is a BFCL folder (either layout) or one question file; ``category`` picks one category
    (``simple``, ``exec_simple``, ``BFCL_v3_simple_python`` ...; default all, in BFCL's order).
    """
    path = Path(path)
    report = ReadReport(path=str(path))
    cases: list[EvalCase] = []
    unsolvable: list[str] = []
    notes: list[str] = []
    for cat, qfile, afile, layout in _category_files(path, category):
        if afile is None and "irrelevance" not in cat:
            raise TrajectoryFormatError(qfile, None, f"no answer file for category {cat!r} (expected possible_answer/{qfile.name})")
        answers: dict[str, tuple[int, Any]] = {}
        if afile is not None:
            if not afile.is_file():
                raise TrajectoryFormatError(afile, None, f"answer file for category {cat!r} not found")
            # An answer line that does not decode leaves its question without an answer, which that
            # question's record then reports.
            for a in iter_records(afile, layout="lines"):
                if isinstance(a.value, dict) and "id" in a.value:
                    answers[str(a.value["id"])] = (a.number, a.value)
        convert = partial(
            _question_to_case, category=cat, layout=layout, answer_file=afile, answers=answers, first_index=report.n_records
        )
        found, report, _ = read_cases(qfile, convert, strict, layout="lines", report=report)
        for case in found:
            if "gold_problem" in case.meta:
                unsolvable.append(case.id)
                notes.append(f"{case.id}: {case.meta['gold_problem']}")
        cases += found
    ids = [c.id for c in cases]
    if len(set(ids)) != len(ids):  # ids must be unique to align predictions by id
        for c in cases:
            c.id = f"{c.scenario}/{c.source_id}" if ids.count(c.source_id) > 1 else c.id
    return BenchmarkSet(name="bfcl", cases=cases, report=report, unsolvable=unsolvable, notes=notes)
