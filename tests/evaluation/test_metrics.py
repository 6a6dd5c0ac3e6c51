"""Per-case TS/PI/CF verdicts in the official / corrected / bfcl modes, and the torchmetrics."""

from __future__ import annotations

import json

import pytest
import torch

from tl_lightning.benchmarks.rotbench import rotbench_extract
from tl_lightning.data.calls import parse_calls, values_equal
from tl_lightning.data.cases import EvalCase
from tl_lightning.data.schema import FeedbackCategory, Message, Tool, ToolCall
from tl_lightning.evaluation.bfcl_checker import standardize_string
from tl_lightning.evaluation.metrics import MultiTurnErrorRates, ToolCallAccuracy
from tl_lightning.evaluation.multiturn import FORMAT_ERROR, EpisodeResult, TurnRecord, count_call_errors
from tl_lightning.evaluation.report import multi_turn_report
from tl_lightning.evaluation.scoring import CaseVerdict, case_category, judge_case, score_case
from tl_lightning.rewards import RewardCategory


def tool(name: str, required: tuple[str, ...] = (), **types: str | dict) -> Tool:
    props = {k: (v if isinstance(v, dict) else {"type": v}) for k, v in types.items()}
    return Tool(name, parameters={"type": "object", "properties": props}, required=required)


def case(gold, tools, scenario="", answer_style="exact", **meta) -> EvalCase:
    return EvalCase(
        id="c", index=0, tools=tools, messages=[Message("user", "q")], gold=gold,
        scenario=scenario, answer_style=answer_style, meta=meta,
    )  # fmt: skip


def levels(v: CaseVerdict) -> tuple[bool, bool, bool]:
    return (v.TS, v.PI, v.CF)


ALL, NONE = (True, True, True), (False, False, False)

# --------------------------------------------------------------------------- RoTBench-style (official / corrected)

ROT_TOOLS = [tool("search", q="string", lang="string"), tool("ask_to_user", question="string"), tool("fPnish", answer="string")]
ROT_META = {"skip_value_tools": ["ask_to_user", "fPnish"], "finish_tool": "fPnish"}


def rot_case(*answers: ToolCall) -> EvalCase:
    return case([[a] for a in answers], ROT_TOOLS, **ROT_META)


def react(name: str, args: str, tail: str = "") -> str:
    return f"Thought: t\nAction: {name}\nAction Input: {args}{tail}"


SEARCH = rot_case(ToolCall("search", {"q": "x", "lang": "en"}))


@pytest.mark.parametrize(
    ("text", "official", "corrected"),
    [
        (react("search", '{"q": "x", "lang": "en"}'), ALL, ALL),
        (react("search", '{"lang": "en", "q": "y"}'), (True, True, False), (True, True, False)),
        (react("search", '{"q": "x"}'), (True, False, False), (True, False, False)),
        (react("other", '{"q": "x", "lang": "en"}'), NONE, NONE),
        # the scorer json.loads everything after "Action Input: ": trailing text fails it
        (react("search", '{"q": "x", "lang": "en"}', "\nObservation: ok"), NONE, ALL),
        # it slices the name at find("Action:") + 8, so a missing space eats a letter
        ('Action:search\nAction Input: {"q": "x", "lang": "en"}', NONE, ALL),
        ('Action: search \nAction Input: {"q": "x", "lang": "en"}', NONE, ALL),  # name "search " != "search"
        (react("search", '"q=x"'), NONE, NONE),  # JSON string input
        (react("search", "[1]"), NONE, NONE),  # non-dict input (the official scorer crashes at PI)
        (react("search", "{bad json"), NONE, NONE),
        ("no action at all", NONE, NONE),
    ],
)
def test_official_and_corrected_on_react_text(text, official, corrected):
    pred = parse_calls(text, "react")
    assert levels(score_case(pred, SEARCH, "official")) == official
    assert levels(score_case(text, SEARCH, "official")) == official  # a raw string is the same
    assert levels(score_case(pred, SEARCH, "corrected")) == corrected


def test_empty_input_fails_every_level_officially_but_not_corrected():
    c = rot_case(ToolCall("search", {}))
    pred = parse_calls(react("search", "{}"), "react")
    verdict = score_case(pred, c, "official")
    assert levels(verdict) == NONE and "empty" in verdict.reason
    assert levels(score_case([ToolCall("search", {})], c, "official")) == NONE  # parsed calls too
    assert levels(score_case(pred, c, "corrected")) == ALL


def test_gold_none_values_are_not_compared_but_keys_are():
    c = rot_case(ToolCall("search", {"q": "x", "lang": "None"}))
    for mode in ("official", "corrected"):
        assert levels(score_case([ToolCall("search", {"q": "x", "lang": "fr"})], c, mode)) == ALL
        assert levels(score_case([ToolCall("search", {"q": "x"})], c, mode)) == (True, False, False)


def test_official_none_deletion_leaks_into_the_next_answer():
    c = rot_case(ToolCall("search", {"q": "x", "lang": "None"}), ToolCall("search", {"q": "y", "lang": "en"}))
    pred = [ToolCall("search", {"q": "y", "lang": "en"})]
    # answer 1 deletes "lang" from the shared prediction, so answer 2's key compare fails
    assert levels(score_case(pred, c, "official")) == (True, True, False)
    assert levels(score_case(pred, c, "corrected")) == ALL


def test_finish_and_ask_tools_are_not_value_compared_and_finish_maps_to_perturbed_name():
    c = rot_case(ToolCall("fPnish", {"answer": "It is sunny"}))
    for mode in ("official", "corrected"):
        assert levels(score_case(parse_calls(react("finish", '{"answer": "no idea"}')), c, mode)) == ALL
        assert levels(score_case([ToolCall("fPnish", {"answer": "x"})], c, mode)) == ALL
        assert levels(score_case([ToolCall("fPnish", {"text": "x"})], c, mode)) == (True, False, False)
    ask = rot_case(ToolCall("ask_to_user", {"question": "Which city?"}))
    assert levels(score_case([ToolCall("ask_to_user", {"question": "Where?"})], ask, "official")) == ALL


def test_any_acceptable_answer_counts():
    c = rot_case(ToolCall("search", {"q": "x", "lang": "en"}), ToolCall("ask_to_user", {"question": "?"}))
    assert levels(score_case([ToolCall("ask_to_user", {"question": "which?"})], c, "official")) == ALL


def test_value_equality_official_python_vs_corrected_json():
    c = rot_case(ToolCall("search", {"q": 1, "lang": "en"}))
    pred = [ToolCall("search", {"q": True, "lang": "en"})]
    assert levels(score_case(pred, c, "official")) == ALL  # Python: True == 1
    assert levels(score_case(pred, c, "corrected")) == (True, True, False)
    text_vs_int = [ToolCall("search", {"q": "1", "lang": "en"})]
    assert levels(score_case(text_vs_int, c, "official")) == (True, True, False)
    assert values_equal(3, 3.0) and values_equal([1, (2,)], (1, [2])) and not values_equal(1, True)
    assert not values_equal("a", "A") and values_equal({"a": [1]}, {"a": [1.0]})


def test_rotbench_extract_mirrors_the_scorer_slicing():
    assert rotbench_extract('Thought: x\nAction: f\nAction Input: {"a": "1"}') == ("f", {"a": "1"})
    assert rotbench_extract('Action: f\n\nAction Input: {"a": 1}') == ("f\n", {"a": 1})  # one newline stripped
    assert rotbench_extract('Action: f\nAction Input: "s"') == ("f", None)
    assert rotbench_extract("Action: f\nAction Input: {} tail") == ("f", None)


def test_multi_call_answers_match_in_any_order_with_equal_counts():
    tools = [tool("f", a="integer"), tool("g", b="string")]
    c = case([[ToolCall("f", {"a": 1}), ToolCall("g", {"b": "x"})]], tools)
    for mode in ("official", "corrected"):
        assert levels(score_case([ToolCall("g", {"b": "x"}), ToolCall("f", {"a": 1})], c, mode)) == ALL
        assert levels(score_case([ToolCall("f", {"a": 1})], c, mode)) == NONE
        assert levels(score_case([ToolCall("g", {"b": "y"}), ToolCall("f", {"a": 1})], c, mode)) == (True, True, False)


def test_invalid_mode_and_levels_are_cumulative():
    with pytest.raises(ValueError, match="unknown scoring mode"):
        score_case([], SEARCH, "strict")
    with pytest.raises(ValueError, match="cumulative"):
        CaseVerdict(False, True, False)


# --------------------------------------------------------------------------- BFCL AST checker semantics

TRI = tool("calculate_triangle_area", ("base", "height"), base="integer", height="integer", unit="string")
TRI_CASE = case(
    [[ToolCall("calculate_triangle_area", {"base": [10], "height": [5], "unit": ["units", ""]})]],
    [TRI], scenario="simple_python", answer_style="possible_values",
)  # fmt: skip


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        ("calculate_triangle_area(base=10, height=5)", ALL),  # optional unit omitted
        ("calculate_triangle_area(base=10, height=5, unit='Units ')", ALL),  # normalised string
        ("calculate_triangle_area(base=10, height=5, unit='cm')", (True, True, False)),
        ("calculate_triangle_area(base=10.0, height=5)", (True, True, False)),  # float for integer: type error
        ("calculate_triangle_area(base=True, height=5)", (True, True, False)),  # bool is not an int
        ("calculate_triangle_area(base=10)", (True, False, False)),  # missing required
        ("calculate_triangle_area(base=10, height=5, color='red')", (True, False, False)),  # unexpected parameter
        ("area(base=10, height=5)", NONE),
        ("[calculate_triangle_area(base=10, height=5), calculate_triangle_area(base=10, height=5)]", NONE),
        ("not a call", NONE),
    ],
)
def test_bfcl_simple(pred, expected):
    assert levels(score_case(parse_calls(pred), TRI_CASE, "bfcl")) == expected


def bfcl_case(gold_args: dict, **types) -> EvalCase:
    return case([[ToolCall("f", gold_args)]], [tool("f", **types)], answer_style="possible_values")


def test_bfcl_int_accepted_for_float_and_number():
    assert score_case([ToolCall("f", {"x": 2})], bfcl_case({"x": [2.0]}, x="float"), "bfcl").CF
    assert score_case([ToolCall("f", {"x": 2})], bfcl_case({"x": [2.0]}, x="number"), "bfcl").CF
    assert not score_case([ToolCall("f", {"x": 2.5})], bfcl_case({"x": [2]}, x="integer"), "bfcl").CF


def test_bfcl_lists_nested_types_and_strings():
    floats = bfcl_case({"v": [[1.0, 2.0]]}, v={"type": "array", "items": {"type": "float"}})
    assert score_case([ToolCall("f", {"v": [1.0, 2.0]})], floats, "bfcl").CF
    # ints fail the item type check, then pass as a "variable" of the accepted type and [1, 2] == [1.0, 2.0]
    assert score_case([ToolCall("f", {"v": [1, 2]})], floats, "bfcl").CF
    assert not score_case([ToolCall("f", {"v": [1.0, 3.0]})], floats, "bfcl").CF
    assert not score_case([ToolCall("f", {"v": (1.0, 2.0)})], floats, "bfcl").CF  # a tuple is not an array
    names = bfcl_case({"n": [["New York", "LA"]]}, n={"type": "array", "items": {"type": "string"}})
    assert score_case([ToolCall("f", {"n": ["new-york", "l.a."]})], names, "bfcl").CF
    assert not score_case([ToolCall("f", {"n": ["LA", "New York"]})], names, "bfcl").CF  # order matters
    assert standardize_string("April 1, 2024 'x'") == 'april12024"x"'


def test_bfcl_dict_values_and_optional_keys():
    c = bfcl_case({"d": [{"a": ["x", ""], "b": [1]}]}, d="dict")
    assert score_case([ToolCall("f", {"d": {"b": 1}})], c, "bfcl").CF
    assert score_case([ToolCall("f", {"d": {"a": " X", "b": 1}})], c, "bfcl").CF
    assert not score_case([ToolCall("f", {"d": {"b": 1, "c": 2}})], c, "bfcl").CF
    assert not score_case([ToolCall("f", {"d": {"a": "x"}})], c, "bfcl").CF  # b is not optional


def test_bfcl_exact_gold_tuples_become_lists():
    c = case([[ToolCall("f", {"p": (45.76, 4.85)})]], [tool("f", p={"type": "tuple", "items": {"type": "float"}})])
    assert score_case([ToolCall("f", {"p": (45.76, 4.85)})], c, "bfcl").CF
    assert score_case([ToolCall("f", {"p": [45.76, 4.85]})], c, "bfcl").CF


def test_bfcl_exact_gold_dicts_take_the_answer_file_shape():
    c = case([[ToolCall("f", {"d": {"city": "New York"}, "l": [{"k": 1}]})]], [tool("f", d="dict", l={"type": "array", "items": {"type": "dict"}})])
    assert score_case([ToolCall("f", {"d": {"city": "new york"}, "l": [{"k": 1}]})], c, "bfcl").CF
    assert not score_case([ToolCall("f", {"d": {"city": "Boston"}, "l": [{"k": 1}]})], c, "bfcl").CF
    assert not score_case([ToolCall("f", {"d": {"city": "New York"}, "l": [{"k": 2}]})], c, "bfcl").CF


def test_bfcl_parallel_any_order_but_greedy_like_the_checker():
    tools = [tool("f", ("x",), x="integer"), tool("g", y="string")]
    any_order = case([[ToolCall("f", {"x": [1]}), ToolCall("g", {"y": ["a"]})]], tools, answer_style="possible_values")
    assert levels(score_case([ToolCall("g", {"y": "A"}), ToolCall("f", {"x": 1})], any_order, "bfcl")) == ALL
    greedy = case([[ToolCall("f", {"x": [1, 2]}), ToolCall("f", {"x": [1]})]], tools, answer_style="possible_values")
    # gold 1 takes the first prediction that fits (x=1), leaving x=2 for gold 2, which rejects it; a
    # bipartite matching would succeed, the official checker does not
    assert levels(score_case([ToolCall("f", {"x": 1}), ToolCall("f", {"x": 2})], greedy, "bfcl")) == (True, True, False)
    assert levels(score_case([ToolCall("f", {"x": 2}), ToolCall("f", {"x": 1})], greedy, "bfcl")) == ALL


def test_irrelevance_is_right_iff_no_call():
    c = case([], [TRI], scenario="irrelevance")
    for mode in ("official", "corrected", "bfcl"):
        assert levels(score_case(parse_calls("I cannot help with that."), c, mode)) == ALL
        assert levels(score_case([ToolCall("calculate_triangle_area", {"base": 1})], c, mode)) == NONE


# --------------------------------------------------------------------------- RoTBench clean gold answers


def _rotbench_cases(path) -> list[tuple[EvalCase, list[str]]]:
    out = []
    for i, record in enumerate(json.loads(path.read_text())):
        system = record["conversations"][0]["value"]
        tools = [Tool.from_openai(t) for t in json.loads(system[system.find("[") : -13])]
        answers = record["conversations"][-1]["value"]
        gold = [[ToolCall(*rotbench_extract(a))] for a in answers]
        meta = {"skip_value_tools": [tools[-2].name, tools[-1].name], "finish_tool": tools[-1].name}
        out.append((EvalCase(str(i), i, tools, [Message("user", "q")], gold, scenario=record["scenario"], meta=meta), answers))
    return out


def test_rotbench_clean_gold_scores_92_38_official_and_100_corrected(benchmarks_dir):
    pairs = _rotbench_cases(benchmarks_dir / "rotbench" / "clean.json")
    cases = [c for c, _ in pairs]
    preds = [parse_calls(answers[0], "react") for _, answers in pairs]
    for mode, expected in (("official", 92.38), ("corrected", 100.0)):
        metric = ToolCallAccuracy.for_cases(cases, mode=mode)
        metric.update(preds, cases)
        out = metric.compute()
        assert [round(out[k].item(), 2) for k in ("TS", "PI", "CF")] == [expected] * 3
        assert out["n"].item() == 105 and sorted(metric.scenarios) == ["AM", "DU", "FT", "IR", "PL", "RS", "TG"]
        assert out["scenario/TG/n"].item() == 15
    # the 8 failures are exactly the cases whose only gold input is {}
    empty_only = sum(all(not g[0].arguments for g in c.gold) for c in cases)
    assert empty_only == 8


# --------------------------------------------------------------------------- torchmetrics


def test_tool_call_accuracy_exact_percentages_and_categories():
    tools = [tool("f", a="integer"), tool("g", b="string")]
    cases = [
        case([[ToolCall("f", {"a": 1})]], tools, scenario="A"),
        case([[ToolCall("f", {"a": 1})]], tools, scenario="A"),
        case([[ToolCall("g", {"b": "x"})]], tools, scenario="B"),
        case([[ToolCall("g", {"b": "x"})]], tools, scenario="B"),
    ]
    preds = [
        [ToolCall("f", {"a": 1})],  # correct
        [ToolCall("f", {"a": 2})],  # wrong value
        parse_calls("garbage ("),  # unparseable
        [ToolCall("g", {"c": "x"})],  # hallucinated + missing parameter
    ]
    metric = ToolCallAccuracy(mode="corrected", scenarios=["A", "B", "C"])
    metric.update(preds[:2], cases[:2])
    metric.update(preds[2:], cases[2:])
    out = metric.compute()
    assert (out["TS"].item(), out["PI"].item(), out["CF"].item()) == (75.0, 50.0, 25.0)
    assert (out["scenario/A/TS"].item(), out["scenario/A/PI"].item(), out["scenario/A/CF"].item()) == (100.0, 100.0, 50.0)
    assert (out["scenario/B/TS"].item(), out["scenario/B/PI"].item(), out["scenario/B/CF"].item()) == (50.0, 0.0, 0.0)
    assert out["scenario/C/TS"].item() == 0.0 and out["scenario/C/n"].item() == 0  # a rate over nothing is 0.0
    assert out["category/correct"].item() == 25.0
    assert out["category/wrong_values"].item() == 25.0
    assert out["category/unparseable"].item() == 25.0
    assert out["category/param_hallucination_missing"].item() == 25.0
    assert sum(out[f"category/{c.value}"].item() for c in RewardCategory) == 100.0


def test_tool_call_accuracy_errors_and_empty():
    metric = ToolCallAccuracy(scenarios=["A"])
    with pytest.raises(ValueError, match="2 predictions for 1 cases"):
        metric.update([[], []], [SEARCH])
    with pytest.raises(ValueError, match="scenario 'Z' is not among"):
        metric.update([[]], [case([[ToolCall("f", {})]], [tool("f")], scenario="Z")])
    with pytest.raises(ValueError, match="unknown scoring mode"):
        ToolCallAccuracy(mode="lenient")
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert ToolCallAccuracy().compute()["TS"].item() == 0.0


def test_case_category_is_consistent_with_the_verdict():
    c = rot_case(ToolCall("search", {}))
    pred = [ToolCall("search", {})]
    assert case_category(pred, c, score_case(pred, c, "official")) is RewardCategory.UNPARSEABLE
    assert case_category(pred, c, score_case(pred, c, "corrected")) is RewardCategory.CORRECT


def episode(categories: list[str], finished: bool, scenario: str = "") -> EpisodeResult:
    """An episode with one call per turn of the given categories."""
    turns = [TurnRecord(output="", categories=[c], error="x" if c == FORMAT_ERROR else None) for c in categories]
    return EpisodeResult(id=str(id(turns)), index=0, scenario=scenario, turns=turns, finished=finished)


def test_count_call_errors_by_hand():
    assert count_call_errors([]) == (0, 0)
    assert count_call_errors(["all_right", FeedbackCategory.TOOL_HALLUCINATION.value, FORMAT_ERROR, "all_right"]) == (1, 1)
    assert count_call_errors(["parameter_missing", "tool_call_failure", "tool_instability", "others", "parameter_hallucination"]) == (2, 3)
    with pytest.raises(ValueError):
        count_call_errors(["no_such_category"])


def test_multi_turn_error_rates_exact():
    records = [
        episode(["all_right", "tool_hallucination", FORMAT_ERROR, "all_right"], finished=True),
        episode(["parameter_missing", "tool_call_failure", "tool_instability", "others"], finished=False),
        episode(["all_right", "all_right"], finished=True),
    ]
    assert [(r.n_de, r.n_ce) for r in records] == [(1, 1), (1, 3), (0, 0)]
    metric = MultiTurnErrorRates()
    metric.update(records[:1])
    metric.update(records[1:])
    out = metric.compute()
    assert out["DE"].item() == pytest.approx(200 / 10) and out["CE"].item() == pytest.approx(400 / 10)
    assert out["VA"].item() == pytest.approx(200 / 3)
    assert (out["n"].item(), out["calls"].item()) == (3, 10)
    assert out["DE"].dtype == torch.float64


def test_multi_turn_metric_and_report_agree_with_no_calls():
    """The one rule for a rate over nothing: 0.0 in the report and in the torchmetric alike."""
    records = [episode([], finished=False), episode([], finished=True)]
    metric = MultiTurnErrorRates()
    metric.update(records)
    out = metric.compute()
    report = multi_turn_report(records)
    assert (report["n_calls"], report["DE"], report["CE"], report["VA"]) == (0, 0.0, 0.0, 50.0)
    assert (out["DE"].item(), out["CE"].item(), out["VA"].item()) == (report["DE"], report["CE"], report["VA"])
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert MultiTurnErrorRates().compute()["VA"].item() == multi_turn_report([])["VA"] == 0.0


# --------------------------------------------------------------------------- never fatal

BFCL_AREA = case(
    [[ToolCall("area", {"r": [1.5], "n": ["", 3]})]], [tool("area", ("r",), r="float", n="integer")], answer_style="possible_values"
)


@pytest.mark.parametrize(
    "args",
    [
        {"r": 16**4000},  # float() of it overflows
        {"r": 999999**64 * 999999**64},  # a 768-digit int: overflows too
        {"r": 1.5, "n": 16**4000},  # an int past Python's 4,300-digit repr limit
    ],
)
def test_an_unscoreable_prediction_is_a_format_error_not_a_crash(args):
    pred = [ToolCall("area", args)]
    judged = judge_case(pred, BFCL_AREA, "bfcl")
    assert levels(judged.verdict) == NONE and judged.category is RewardCategory.UNPARSEABLE
    assert judged.error.startswith("format error: ") and judged.verdict.reason == judged.error
    metric = ToolCallAccuracy(mode="bfcl")
    metric.update([pred, [ToolCall("area", {"r": 1.5})]], [BFCL_AREA, BFCL_AREA])
    out = metric.compute()
    assert (out["TS"].item(), out["CF"].item(), out["category/unparseable"].item()) == (50.0, 50.0, 50.0)
    with pytest.raises(ValueError, match="unknown scoring mode"):  # a caller's mistake still raises
        judge_case(pred, BFCL_AREA, "lenient")
