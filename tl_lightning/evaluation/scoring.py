"""Per-case single-turn verdicts (TS / PI / CF) in three modes. Pure functions, no tensors.

The levels are cumulative (docs/method.md#evaluation): **TS** the tool names are right, **PI** also the
argument-name sets, **CF** also the values. A case has one or more acceptable answers
(``EvalCase.gold``), each a list of calls; a level holds if it holds for any answer. A case whose
gold holds no call at all (BFCL ``irrelevance``) is right at every level iff no call is produced
(a native-format reply in plain text, which the parser reads as ``finish``, is an answer, not a call).

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
ShishirPatil/gorilla), Python language; :mod:`~tl_lightning.evaluation.bfcl_checker` holds the
per-call rules. CF is
the checker's verdict; PI is its structural part (right count and names, required parameters
present, no unexpected parameters, no missing non-optional gold parameter); TS is right count and
names. As in the checker, parallel calls are matched greedily: each gold call, in order, takes the
first still-unmatched predicted call that passes.

A prediction that cannot be scored at all (e.g. a huge integer that overflows a float) is a
format error of its own case, never fatal: :func:`judge_case`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tl_lightning.benchmarks.rotbench import rotbench_extract
from tl_lightning.data.calls import NATIVE_FORMATS, ParseResult, parse_calls, values_equal
from tl_lightning.data.cases import EvalCase
from tl_lightning.data.schema import ToolCall
from tl_lightning.evaluation.bfcl_checker import (
    as_possible_values,
    bfcl_call_error,
    bfcl_structure_error,
    exact_answer,
)
from tl_lightning.rewards import RewardCategory, tool_call_reward

__all__ = [
    "MODEL_OUTPUT_ERRORS", "SCORING_MODES", "CaseVerdict", "Judgement", "Prediction", "ScoringMode",
    "as_calls", "case_category", "format_error", "judge_case", "parse_output", "score_case",
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


def _bfcl(pred: Prediction, case: EvalCase) -> CaseVerdict:
    calls, error = as_calls(pred)
    if error is not None:
        return CaseVerdict(False, False, False, error)
    tools = {t.name: t for t in case.tools}
    best = ("wrong number of calls", "", "")
    ts = pi = cf = False
    for answer in case.gold:
        gold = [as_possible_values(g, case.answer_style, tools.get(g.name)) for g in answer]
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


def _tool_calls(pred: Prediction) -> list[ToolCall]:
    """The calls of a prediction to an irrelevant query: a native-format plain-text reply (parsed as
    ``finish``) called no tool."""
    calls, _ = as_calls(pred)
    if isinstance(pred, ParseResult) and pred.format in NATIVE_FORMATS:
        calls = [c for c in calls if c.name != _FINISH]
    return calls


def score_case(pred: Prediction, case: EvalCase, mode: str = "official") -> CaseVerdict:
    """TS/PI/CF verdict of one prediction for one case under ``mode`` (see the module docstring)."""
    if mode not in SCORING_MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; expected one of {SCORING_MODES}")
    if _is_irrelevance(case):
        calls = _tool_calls(pred)
        return CaseVerdict(True, True, True) if not calls else CaseVerdict(False, False, False, "called a tool on an irrelevant query")
    if mode == "official":
        return _official(pred, case)
    if mode == "corrected":
        return _corrected(pred, case)
    return _bfcl(pred, case)


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
        return RewardCategory.WRONG_TOOL if _tool_calls(pred) else RewardCategory.CORRECT
    if error is not None:
        return RewardCategory.UNPARSEABLE
    order = list(RewardCategory)
    best = RewardCategory.UNPARSEABLE
    for answer in case.gold:
        gold = exact_answer(answer, calls) if case.answer_style == "possible_values" else answer
        _, category = tool_call_reward(calls, gold, case.tools)
        best = max(best, category, key=order.index)
    if best is RewardCategory.CORRECT:
        return RewardCategory.WRONG_VALUES if verdict.TS else RewardCategory.UNPARSEABLE
    return best


# --------------------------------------------------------------------------- never fatal

#: What a pathological model output raises when scored or executed: ``repr`` of a 4,000-digit int
#: (ValueError), ``float()`` of a huge int, tuple keys in ``json.dumps`` (TypeError), deep nesting.
#: Such an output is a format error of its own case, never the end of a run; a bug still raises.
MODEL_OUTPUT_ERRORS: tuple[type[BaseException], ...] = (ArithmeticError, ValueError, TypeError, RecursionError)


def format_error(exc: BaseException) -> str:
    """The report's reason for an output that could not be scored or executed, e.g.
    ``format error: OverflowError: int too large to convert to float`` (at most 300 characters)."""
    return f"format error: {type(exc).__name__}: {exc}"[:300]


def parse_output(text: str, call_format: str = "auto") -> ParseResult:
    """:func:`parse_calls`, with an exception on pathological text turned into a parse error."""
    try:
        return parse_calls(text, call_format)
    except MODEL_OUTPUT_ERRORS as e:
        return ParseResult(error=format_error(e), text=text)


@dataclass(frozen=True)
class Judgement:
    """One case's verdict and IRM outcome; ``error`` says why the output could not be scored at all
    (then the verdict fails every level and the outcome is ``unparseable``)."""

    verdict: CaseVerdict
    category: RewardCategory
    error: str | None = None


def judge_case(pred: Prediction, case: EvalCase, mode: str = "official") -> Judgement:
    """:func:`score_case` and :func:`case_category` together; a prediction whose scoring raises one of
    :data:`MODEL_OUTPUT_ERRORS` is judged a format error instead. The torchmetric and the report both
    judge through here, so they count such a case the same way."""
    if mode not in SCORING_MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; expected one of {SCORING_MODES}")
    try:
        if isinstance(pred, str):
            pred = parse_calls(pred)
        verdict = score_case(pred, case, mode)
        return Judgement(verdict, case_category(pred, case, verdict))
    except MODEL_OUTPUT_ERRORS as e:
        reason = format_error(e)
        return Judgement(CaseVerdict(False, False, False, reason), RewardCategory.UNPARSEABLE, reason)
