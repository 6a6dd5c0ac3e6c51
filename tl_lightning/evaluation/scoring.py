"""Per-case single-turn verdicts (TS / PI / CF) in three modes. Pure functions, no tensors.

The levels are cumulative (DESIGN.md §1): **TS** the tool names are right, **PI** also the
argument-name sets, **CF** also the values. A case has one or more acceptable answers
(``EvalCase.gold``), each a list of calls; a level holds if it holds for any answer. A case whose
gold holds no call at all (BFCL ``irrelevance``) is right at every level iff no call is produced.

Modes
-----
``official`` reproduces the RoTBench scorer (``Code/Evaluation/evaluate.py`` @ Junjie-Ye/RoTBench):

- For ReAct output (a :class:`ParseResult` with ``format == "react"``, including a failed react
  parse, or a raw string that ``parse_calls(text)`` reads as react) the call is re-extracted from
  the text exactly as the scorer does: the name is the text between
  ``find("Action:") + 8`` and ``find("Action Input:")`` minus one trailing newline, and the input is
  ``json.loads`` of everything after ``find("Action Input:") + 14`` (so any text after the JSON,
  e.g. an ``Observation:``, fails). Other formats use the parsed calls.
- A prediction with no input, an input that is not JSON, a JSON string, or an empty / falsy
  value fails at **every** level (so RoTBench clean's own gold answers score 92.38: 8 cases have
  only ``{}`` gold). A non-empty non-dict JSON input (a list or a number) passes TS and then
  crashes the official scorer at PI; here it fails at every level.
- A predicted name ``finish`` is taken as the case's finish tool (``case.meta["finish_tool"]``,
  the perturbed last tool in noisy RoTBench levels).
- Values are compared with Python ``==`` on the ``json.loads`` results: no string normalisation,
  case- and whitespace-sensitive, ``"3" != 3`` but ``3 == 3.0`` and ``1 == True``.
- Gold keys whose value is the string ``"None"`` are deleted from gold and prediction before the
  value compare (the key itself must still be predicted, PI compares key sets first). The scorer
  deletes them from one prediction dict shared by all acceptable answers, so a deletion leaks
  into the next answer's key compare; reproduced.
- Answers whose tool is in ``case.meta["skip_value_tools"]`` (RoTBench's ask-user and finish
  tools) or is literally named ``finish`` / ``ask_to_user`` are not value-compared.

``corrected`` keeps those rules with documented fixes only:

1. An empty-argument prediction ``{}`` is a call like any other (matches ``{}`` gold).
2. The call comes from :func:`parse_calls` rather than fixed-offset slicing: surrounding
   whitespace in the name is ignored, ``Action:`` need not be followed by a space, and text after
   the Action Input JSON object (a hallucinated ``Observation:``) is ignored.
3. ``"None"`` deletions do not leak from one acceptable answer into the next.
4. Values are compared with JSON semantics (:func:`values_equal`): booleans equal only booleans
   (``1 != True``), ints and floats compare numerically, lists and tuples element-wise, dicts by
   key set and values; strings exactly. (No ``"3" == 3``: RoTBench schemas type these parameters
   as strings, so a string is the right answer.)

Several calls per answer (parallel calls, a generalisation: the RoTBench scorer is single-call)
need the same number of predicted calls and a one-to-one matching in any order, found as a
bipartite matching at each level, in both modes.

``bfcl`` follows BFCL's AST checker (``bfcl_eval/eval_checker/ast_eval/ast_checker.py`` in
ShishirPatil/gorilla), Python language; :func:`bfcl_call_error` gives the per-call rules. CF is
the checker's verdict; PI is its structural part (right count and names, required parameters
present, no unexpected parameters, no missing non-optional gold parameter); TS is right count and
names. As in the checker, parallel calls are matched greedily: each gold call, in order, takes the
first still-unmatched predicted call that passes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tl_lightning.data.cases import EvalCase
from tl_lightning.data.schema import Tool, ToolCall
from tl_lightning.rewards import RewardCategory, tool_call_reward
from tl_lightning.tools.calls import ParseResult, parse_calls, values_equal

__all__ = [
    "SCORING_MODES",
    "CaseVerdict",
    "Prediction",
    "ScoringMode",
    "as_calls",
    "rotbench_extract",
    "bfcl_call_error",
    "case_category",
    "score_case",
    "standardize_string",
]

ScoringMode = Literal["official", "corrected", "bfcl"]
SCORING_MODES: tuple[str, ...] = ("official", "corrected", "bfcl")
#: What scorers accept as a prediction: a parse result, a list of calls, or raw text (parsed with "auto").
Prediction = ParseResult | Sequence[ToolCall] | str

_FINISH, _ASK = "finish", "ask_to_user"


@dataclass(frozen=True)
class CaseVerdict:
    """The cumulative levels for one case (``CF`` implies ``PI`` implies ``TS``) and, when a level
    fails, why the first failing level failed."""

    TS: bool
    PI: bool
    CF: bool
    reason: str = ""

    def __post_init__(self) -> None:
        if (self.CF and not self.PI) or (self.PI and not self.TS):
            raise ValueError(f"verdict levels must be cumulative, got TS={self.TS} PI={self.PI} CF={self.CF}")


_FAIL = CaseVerdict(False, False, False)


def _verdict(ts: bool, pi: bool, cf: bool, reasons: tuple[str, str, str]) -> CaseVerdict:
    pi, cf = pi and ts, cf and pi and ts
    reason = "" if cf else reasons[0] if not ts else reasons[1] if not pi else reasons[2]
    return CaseVerdict(ts, pi, cf, reason)


# --------------------------------------------------------------------------- helpers


def as_calls(pred: Prediction) -> tuple[list[ToolCall], str | None]:
    """(calls, error) from any accepted prediction form; raw text is parsed with ``format="auto"``."""
    if isinstance(pred, str):
        pred = parse_calls(pred)
    if isinstance(pred, ParseResult):
        if pred.error is not None:
            return [], pred.error
        return list(pred.calls), (None if pred.calls else "no call")
    calls = list(pred)
    if not all(isinstance(c, ToolCall) for c in calls):
        raise TypeError("a prediction must be a ParseResult, a list of ToolCall, or a string")
    return calls, (None if calls else "no call")


def _has_perfect_matching(n: int, ok: Callable[[int, int], bool]) -> bool:
    """Whether the n x n relation ok(pred_i, gold_j) has a perfect matching (Kuhn's algorithm)."""
    match_of_gold: list[int] = [-1] * n

    def augment(i: int, seen: list[bool]) -> bool:
        for j in range(n):
            if not seen[j] and ok(i, j):
                seen[j] = True
                if match_of_gold[j] < 0 or augment(match_of_gold[j], seen):
                    match_of_gold[j] = i
                    return True
        return False

    return all(augment(i, [False] * n) for i in range(n))


def _skip_tools(case: EvalCase) -> set[str]:
    return set(case.meta.get("skip_value_tools", ())) | {_FINISH, _ASK}


def _names_match(pred_name: str, gold_name: str, finish_tool: str | None) -> bool:
    # RoTBench: a model answering "finish" where the (perturbed) finish tool is gold is right.
    return pred_name == gold_name or (pred_name == _FINISH and gold_name == finish_tool)


# --------------------------------------------------------------------------- official (RoTBench)


def rotbench_extract(text: str) -> tuple[str, Any]:
    """(action, action_input) exactly as the RoTBench scorer slices a ReAct output.

    ``action_input`` is None where the scorer would return 0 (JSON error or a JSON string);
    otherwise the decoded JSON value, which may be empty or a non-dict.
    """
    a, b = text.find("Action:"), text.find("Action Input:")
    action = text[a + 8 : b]
    if action.endswith("\n"):  # the scorer strips exactly one trailing newline (and crashes on "")
        action = action[:-1]
    try:
        value = json.loads(text[b + 14 :])
    except (ValueError, RecursionError):
        return action, None
    return action, (None if isinstance(value, str) else value)


def _official_single(name: str, args: dict[str, Any], answers: list[ToolCall], case: EvalCase) -> CaseVerdict:
    """The three loops of the RoTBench scorer (ts_eval, pi_eval, cf_eval) for a one-call prediction."""
    finish_tool = case.meta.get("finish_tool")
    skip = _skip_tools(case)
    ts = any(_names_match(name, g.name, finish_tool) for g in answers)
    pi = any(_names_match(name, g.name, finish_tool) and g.arguments.keys() == args.keys() for g in answers)
    cf = False
    shared = dict(args)  # one prediction dict for every answer: "None" deletions leak, as in the scorer
    for g in answers:
        if not _names_match(name, g.name, finish_tool) or g.arguments.keys() != shared.keys():
            continue
        gold_args = dict(g.arguments)
        for key in [k for k, v in gold_args.items() if v == "None"]:
            del gold_args[key], shared[key]
        if gold_args == shared or g.name in skip:
            cf = True
            break
    return _verdict(ts, pi, cf, ("wrong tool name", "wrong argument names", "wrong argument values"))


def _official(pred: Prediction, case: EvalCase) -> CaseVerdict:
    if isinstance(pred, str):
        pred = parse_calls(pred)
    raw = pred.text if isinstance(pred, ParseResult) and pred.format == "react" else ""
    if raw:
        name, args = rotbench_extract(raw)
        if not args or not isinstance(args, dict):
            return CaseVerdict(False, False, False, "empty or non-dict Action Input")
        if not name:
            return CaseVerdict(False, False, False, "empty Action")
        calls = [ToolCall(name, args, raw)]
    else:
        calls, error = as_calls(pred)
        if error is not None:
            return CaseVerdict(False, False, False, error)
        if any(not c.arguments for c in calls):
            return CaseVerdict(False, False, False, "empty arguments (scored as wrong by the official rules)")
    single = [answer[0] for answer in case.gold if len(answer) == 1]
    if len(calls) == 1 and len(single) == len(case.gold):
        return _official_single(calls[0].name, calls[0].arguments, single, case)
    return _matched(calls, case, lambda a, b: a == b)


# --------------------------------------------------------------------------- corrected


def _matched(calls: list[ToolCall], case: EvalCase, equal: Callable[[Any, Any], bool]) -> CaseVerdict:
    """Levels by one-to-one matching of predicted to gold calls (any order, equal counts)."""
    finish_tool = case.meta.get("finish_tool")
    skip = _skip_tools(case)

    def name_ok(p: ToolCall, g: ToolCall) -> bool:
        return _names_match(p.name, g.name, finish_tool)

    def keys_ok(p: ToolCall, g: ToolCall) -> bool:
        return name_ok(p, g) and p.arguments.keys() == g.arguments.keys()

    def values_ok(p: ToolCall, g: ToolCall) -> bool:
        if not keys_ok(p, g):
            return False
        if g.name in skip:
            return True
        return all(v == "None" or equal(p.arguments[k], v) for k, v in g.arguments.items())

    levels = []
    for pair_ok in (name_ok, keys_ok, values_ok):
        levels.append(
            any(
                len(answer) == len(calls)
                and _has_perfect_matching(len(calls), lambda i, j, a=answer, f=pair_ok: f(calls[i], a[j]))
                for answer in case.gold
            )
        )
    count_ok = any(len(answer) == len(calls) for answer in case.gold)
    ts_reason = "wrong tool name" if count_ok else f"wrong number of calls ({len(calls)})"
    return _verdict(*levels, (ts_reason, "wrong argument names", "wrong argument values"))


def _corrected(pred: Prediction, case: EvalCase) -> CaseVerdict:
    calls, error = as_calls(pred)
    if error is not None:
        return CaseVerdict(False, False, False, error)
    return _matched(calls, case, values_equal)


# --------------------------------------------------------------------------- bfcl

# BFCL AST-checker semantics for one predicted call against one gold call (Python language).
#
# Re-implements the rules of ``simple_function_checker`` in BFCL's
# ``bfcl_eval/eval_checker/ast_eval/ast_checker.py`` (ShishirPatil/gorilla) so that verdicts agree
# with it; the gold call's arguments map each parameter to its list of accepted values, ``""`` in
# a list meaning "may be omitted". In the checker's order:
#
# 1. the predicted name must equal the gold (= described) function's name;
# 2. every ``required`` parameter of the schema must be given;
# 3. every given parameter must be in the schema and in the gold call;
# 4. its value must have the schema type (``string, integer, float, boolean, array, tuple, dict,
#    any`` -> ``str, int, float, bool, list, list, dict, str``; an int counts as a float; a tuple
#    counts as a list for ``tuple``; for ``array``/``tuple`` every item must have the ``items``
#    type). A value whose type differs from the schema but equals the type of the accepted values
#    is a "variable" and is only checked by membership (the checker's ``is_variable``);
# 5. values: strings, list items and dict values that are strings are compared after
#    :func:`standardize_string` (drop spaces and ``,./-_*^``, lowercase, ``'`` -> ``"``); dicts key
#    by key (a gold key with ``""`` may be omitted); lists of dicts dict by dict in order; lists as
#    a whole; anything else by ``value in accepted`` (Python ``==``);
# 6. every gold parameter not given must accept ``""``.
#
# Extensions (not in the checker, which would raise): schema types ``number`` and ``object`` are
# read as ``float`` and ``dict``; a missing or unknown type, or a gold function absent from the
# tools, is reported as an error instead of crashing.

_PY_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "number": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "object": dict,
    "any": str,
}
_NESTED = ("array", "tuple")
_STRIP = re.compile(r"[ ,./\-_*^]")


def standardize_string(text: str) -> str:
    """BFCL's string normalisation: drop spaces and ``,./-_*^``, lowercase, single -> double quotes."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _answer_type(accepted: list[Any]) -> type | None:
    return next((type(a) for a in accepted if a != ""), None)


def _type_error(value: Any, accepted: list[Any], expected: type, nested: type | None) -> tuple[str | None, bool]:
    """(error or None, is_variable) following the checker's ``type_checker``."""
    answer_type = _answer_type(accepted)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return None, is_variable
        for item in accepted:
            # A non-list accepted item (e.g. "") passes without looking at the elements, as in the checker.
            if type(item) is not list or all(_type_error(v, item, nested, None)[0] is None for v in value):
                return None, is_variable
        # nested failure falls through to the variable check below, as in the checker
    if answer_type is not None and type(value) is answer_type:
        return None, True
    return f"expected type {expected.__name__}, got {type(value).__name__} ({value!r})", is_variable


def _std(v: Any) -> Any:
    return standardize_string(v) if type(v) is str else v


def _string_ok(value: str, accepted: list[Any]) -> bool:
    return standardize_string(value) in [standardize_string(a) for a in accepted if type(a) is str]


def _list_ok(value: list[Any], accepted: list[Any]) -> bool:
    out = [_std(v) for v in value]
    # len("") == 0, so an optional marker "" turns into [] and accepts an empty list, as in the checker.
    return out in [[_std(x) for x in a] for a in accepted]


def _as_list(values: Any) -> list[Any]:
    # A malformed answer (a bare value where a list of accepted values belongs) is read as [value].
    return values if isinstance(values, list) else [values]


def _dict_ok(value: dict[Any, Any], accepted: list[Any]) -> bool:
    for answer in accepted:
        if not isinstance(answer, dict):
            continue  # "" (optional marker)
        good = True
        for key, v in value.items():
            if key not in answer or _std(v) not in [_std(x) for x in _as_list(answer[key])]:
                good = False
                break
        if good and all(key in value or "" in _as_list(vals) for key, vals in answer.items()):
            return True
    return False


def _list_dict_ok(value: list[Any], accepted: list[Any]) -> bool:
    for answer in accepted:
        if (
            isinstance(answer, list)
            and len(value) == len(answer)
            and all(isinstance(v, dict) and _dict_ok(v, [a]) for v, a in zip(value, answer, strict=True))
        ):
            return True
    return False


def bfcl_structure_error(tool: Tool | None, call: ToolCall, gold: ToolCall) -> str | None:
    """The checker's name and parameter-set rules only (steps 1-3 and 6); None when they pass."""
    if tool is None:
        return f"gold function {gold.name!r} is not among the tools"
    if call.name != tool.name:
        return f"function name {tool.name!r} not found in the prediction (got {call.name!r})"
    for param in tool.required:
        if param not in call.arguments:
            return f"missing required parameter {param!r}"
    for param in call.arguments:
        if param not in tool.properties or param not in gold.arguments:
            return f"unexpected parameter {param!r}"
    for param, accepted in gold.arguments.items():
        if param not in call.arguments and "" not in accepted:
            return f"parameter {param!r} not provided and not optional"
    return None


def bfcl_call_error(tool: Tool | None, call: ToolCall, gold: ToolCall) -> str | None:
    """Why the checker rejects ``call`` for ``gold`` (accepted values per parameter), or None."""
    structure = bfcl_structure_error(tool, call, gold)
    if structure is not None and not structure.startswith("parameter "):
        return structure
    assert tool is not None
    for param, value in call.arguments.items():
        spec = tool.properties[param]
        type_name = spec.get("type") if isinstance(spec, dict) else None
        if type_name not in _PY_TYPES:
            return f"parameter {param!r}: unsupported schema type {type_name!r}"
        expected = _PY_TYPES[type_name]
        nested = None
        if type_name in _NESTED:
            item_type = (spec.get("items") or {}).get("type")
            nested = _PY_TYPES.get(item_type) if item_type else None
        if type_name == "tuple" and type(value) is tuple:
            value = list(value)
        if type_name in ("float", "number") and type(value) is int:
            value = float(value)
        accepted = gold.arguments[param]
        error, is_variable = _type_error(value, accepted, expected, nested)
        if error is not None:
            return f"parameter {param!r}: {error}"
        if not is_variable:
            if expected is dict:
                ok = _dict_ok(value, accepted)
            elif expected is list and nested is dict:
                ok = _list_dict_ok(value, accepted)
            elif expected is str:
                ok = _string_ok(value, accepted)
            elif expected is list:
                ok = _list_ok(value, accepted)
            else:
                ok = value in accepted
            if not ok:
                return f"invalid value for parameter {param!r}: {value!r} (accepted: {accepted!r})"
            continue
        if value not in accepted:
            return f"invalid value for parameter {param!r}: {value!r} (accepted: {accepted!r})"
    return structure  # only a missing non-optional parameter can remain




def _json_like(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_like(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_like(v) for k, v in value.items()}
    return value


def _possible(call: ToolCall, style: str, tool: Tool | None) -> ToolCall:
    """Gold as accepted-value lists. Exact gold v becomes [v], with tuples as lists (BFCL's answer
    files are JSON, so its checker never sees a tuple on the gold side; exec gold strings have
    them), and, for dict-typed parameters, each dict value v as [v] (the answer files' shape)."""
    if style == "possible_values":
        return call
    props = tool.properties if tool is not None else {}
    args = {}
    for key, value in call.arguments.items():
        spec = props.get(key) if isinstance(props.get(key), dict) else {}
        value = _json_like(value)
        is_dict = _PY_TYPES.get(spec.get("type", "")) is dict
        items_dict = spec.get("type") in _NESTED and _PY_TYPES.get((spec.get("items") or {}).get("type", "")) is dict
        if is_dict and isinstance(value, dict):
            value = {k: [v] for k, v in value.items()}
        elif items_dict and isinstance(value, list):
            value = [{k: [v] for k, v in d.items()} if isinstance(d, dict) else d for d in value]
        args[key] = [value]
    return ToolCall(call.name, args, call.raw)


def _bfcl(pred: Prediction, case: EvalCase) -> CaseVerdict:
    calls, error = as_calls(pred)
    if error is not None:
        return CaseVerdict(False, False, False, error)
    tools = {t.name: t for t in case.tools}
    best = ("wrong number of calls", "", "")
    ts = pi = cf = False
    for answer in case.gold:
        gold = [_possible(g, case.answer_style, tools.get(g.name)) for g in answer]
        if len(gold) != len(calls):
            continue
        n = len(calls)
        a_ts = _has_perfect_matching(n, lambda i, j, g=gold: calls[i].name == g[j].name)
        a_pi = a_ts and _has_perfect_matching(
            n, lambda i, j, g=gold: bfcl_structure_error(tools.get(g[j].name), calls[i], g[j]) is None
        )
        # The checker's own greedy pass: gold call k takes the first free prediction that passes.
        free, a_cf, cf_error = list(range(n)), True, ""
        for g in gold:
            errors = [bfcl_call_error(tools.get(g.name), calls[i], g) for i in free]
            hit = next((i for i, e in zip(free, errors, strict=True) if e is None), None)
            if hit is None:
                a_cf, cf_error = False, f"no prediction matches gold call {g.name!r}: {errors[0] if errors else ''}"
                break
            free.remove(hit)
        a_pi, a_cf = a_pi and a_ts, a_cf and a_pi and a_ts
        if (a_ts, a_pi, a_cf) > (ts, pi, cf):
            ts, pi, cf = a_ts, a_pi, a_cf
            best = ("wrong function names", "wrong parameters", cf_error)
    return _verdict(ts, pi, cf, best)


# --------------------------------------------------------------------------- entry point


def _is_irrelevance(case: EvalCase) -> bool:
    return not any(case.gold) or "irrelevance" in str(case.meta.get("category", case.scenario))


def score_case(pred: Prediction, case: EvalCase, mode: str = "official") -> CaseVerdict:
    """TS/PI/CF verdict of one prediction for one case under ``mode`` (see the module docstring)."""
    if mode not in SCORING_MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; expected one of {SCORING_MODES}")
    if _is_irrelevance(case):
        calls, _ = as_calls(pred)
        return CaseVerdict(True, True, True) if not calls else CaseVerdict(False, False, False, "called a tool on an irrelevant query")
    if mode == "official":
        return _official(pred, case)
    if mode == "corrected":
        return _corrected(pred, case)
    return _bfcl(pred, case)


def _exact_gold(answer: list[ToolCall], calls: list[ToolCall]) -> list[ToolCall]:
    """A possible-values answer as one exact answer: the first accepted value of each parameter,
    optional parameters ("" accepted) only where the prediction gives them."""
    out = []
    for g in answer:
        given = next((set(c.arguments) for c in calls if c.name == g.name), set())
        args = {
            k: next((v for v in vals if v != ""), "")
            for k, vals in g.arguments.items()
            if "" not in vals or k in given
        }
        out.append(ToolCall(g.name, args, g.raw))
    return out


def case_category(pred: Prediction, case: EvalCase, verdict: CaseVerdict) -> RewardCategory:
    """The IRM outcome (:class:`RewardCategory`) of a prediction, for error breakdowns in reports.

    The outcome is the best over the acceptable answers of :func:`tool_call_reward`, made
    consistent with ``verdict`` (the mode's own judgement): a CF-correct case is ``correct``; a case
    the reward calls correct but the mode does not is ``unparseable`` when it failed TS (e.g. the
    official rules reject empty inputs) and ``wrong_values`` otherwise. An irrelevance case is
    ``correct`` or ``wrong_tool``.
    """
    if verdict.CF:
        return RewardCategory.CORRECT
    calls, error = as_calls(pred)
    if _is_irrelevance(case):
        return RewardCategory.WRONG_TOOL if calls else RewardCategory.CORRECT
    if error is not None:
        return RewardCategory.UNPARSEABLE
    order = list(RewardCategory)
    best = RewardCategory.UNPARSEABLE
    for answer in case.gold:
        gold = _exact_gold(answer, calls) if case.answer_style == "possible_values" else answer
        _, category = tool_call_reward(calls, gold, case.tools)
        best = max(best, category, key=order.index)
    if best is RewardCategory.CORRECT:
        return RewardCategory.WRONG_VALUES if verdict.TS else RewardCategory.UNPARSEABLE
    return best
