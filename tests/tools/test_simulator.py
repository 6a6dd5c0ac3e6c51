"""SchemaSimulator on a real ToolEyes record: each documentation-error category, success, finish."""

from __future__ import annotations

import json

import pytest

from tl_lightning.data.feedback import classify_feedback
from tl_lightning.data.schema import FeedbackCategory as C
from tl_lightning.data.schema import Tool, ToolCall
from tl_lightning.tools.simulator import SchemaSimulator, tools_from_system_prompt


@pytest.fixture(scope="module")
def tooleyes(benchmarks_dir):
    with open(benchmarks_dir / "tooleyes" / "tooleyes_zero_shot.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture()
def advice(tooleyes) -> SchemaSimulator:
    # Record 30 (the advice-slip API) has tools with required parameters.
    return SchemaSimulator(tools_from_system_prompt(tooleyes[30]["conversations"][0]["value"]), seed=0)


def test_every_tooleyes_record_parses(tooleyes):
    for record in tooleyes:
        tools = tools_from_system_prompt(record["conversations"][0]["value"])
        names = [t.name for t in tools]
        assert "finish" in names and len(names) >= 2
        SchemaSimulator(tools)


@pytest.mark.parametrize(
    ("name", "args", "text", "category"),
    [
        ("get_advice", {}, "name 'get_advice' is not defined", C.TOOL_HALLUCINATION),
        ("advice_by_id", {"id": "5"}, "advice_by_id() got an unexpected keyword argument 'id'", C.PARAMETER_HALLUCINATION),
        ("advice_by_id", {}, "advice_by_id() missing 1 required positional argument: 'slip_id'", C.PARAMETER_MISSING),
        ("search_advice", {"query": ["love"]}, "AttributeError: 'list' object has no attribute 'strip'", C.TOOL_CALL_FAILURE),
    ],
)
def test_documentation_errors(advice, name, args, text, category):
    out = advice.execute_outcome(ToolCall(name, args))
    assert out.text == text and out.category is category
    assert classify_feedback(out.text) is category
    assert not advice.done


def test_success_is_shaped_by_the_arguments_and_deterministic(advice, tooleyes):
    call = ToolCall("advice_by_id", {"slip_id": 52})  # a number for a string parameter: HTTP APIs stringify it
    out = advice.execute_outcome(call)
    assert out.category is C.ALL_RIGHT and classify_feedback(out.text) is C.ALL_RIGHT
    payload = json.loads(out.text)
    assert payload["tool"] == "advice_by_id" and payload["status"] == "success"
    assert payload["results"] and all(r["slip_id"] == 52 for r in payload["results"])
    again = SchemaSimulator(tools_from_system_prompt(tooleyes[30]["conversations"][0]["value"]), seed=0)
    assert again.execute(call) == out.text
    other = [SchemaSimulator(advice.tools, seed=s).execute(call) for s in range(1, 6)]
    assert any(o != out.text for o in other)  # the seed matters


def test_finish_ends_the_episode(advice):
    assert advice.execute_outcome(ToolCall("finish", {})).category is C.PARAMETER_MISSING
    assert not advice.done
    out = advice.execute_outcome(ToolCall("finish", {"answer": "Here is some advice."}))
    assert out.category is C.ALL_RIGHT and advice.done and advice.final_answer == "Here is some advice."
    advice.reset()
    assert not advice.done


def test_typed_schemas_and_openai_specs():
    spec = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "n": {"type": "integer"}, "mode": {"type": "string", "enum": ["a", "b"]}}, "required": ["n"]}}}
    sim = SchemaSimulator([spec, Tool("g")])
    assert sim.execute(ToolCall("f", {"n": "3"})) == "TypeError: '<=' not supported between instances of 'str' and 'int'"
    assert sim.execute(ToolCall("f", {"n": 3, "mode": "c"})) == "ValueError: 'c' is not a valid mode; expected one of 'a', 'b'"
    assert json.loads(sim.execute(ToolCall("f", {"n": 3, "mode": "a"})))["results"][0]["n"] == 3
    assert json.loads(sim.execute(ToolCall("g", {})))["status"] == "success"


def test_ask_to_user_gets_a_fixed_reply(advice):
    out = advice.execute_outcome(ToolCall("ask_to_user", {"question": "Which topic?"}))
    assert json.loads(out.text) == {"response": "Please continue with the information you have."}
    assert out.category is C.ALL_RIGHT and classify_feedback(out.text) is C.ALL_RIGHT


# ------------------------------------------------------------- execute never raises (issue 15)
_SPEC = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
    "n": {"type": "integer"}, "q": {"type": "string"}, "mode": {"type": "string", "enum": ["a", "b"]}}, "required": ["n"]}}}


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ({"n": 10**5000}, "ValueError: Exceeds the limit (4300 digits)"),
        ({"n": 1, "q": 10**5000}, "ValueError: Exceeds the limit (4300 digits)"),
        ({"n": 1, "mode": 10**5000}, "ValueError: Exceeds the limit (4300 digits)"),
        ({"n": 1, "q": float("nan")}, "ValueError: Out of range float values are not JSON compliant"),
        ({"n": 1, "q": "\udcff"}, "ValueError: argument 'q' is not valid text"),
    ],
)
def test_values_json_cannot_carry_are_call_failures(args, text):
    sim = SchemaSimulator([_SPEC])
    out = sim.execute_outcome(ToolCall("f", args))
    assert out.text.startswith(text)
    assert out.category is C.TOOL_CALL_FAILURE and classify_feedback(out.text) is C.TOOL_CALL_FAILURE
    out = sim.execute_outcome(ToolCall("finish", {"answer": list(args.values())[-1]}))  # the bad value
    assert out.category is C.TOOL_CALL_FAILURE and not sim.done


@pytest.mark.parametrize("call", [None, "f(n=1)", {"name": "f", "arguments": {"n": 1}}])
def test_a_non_toolcall_is_a_call_failure(call):
    out = SchemaSimulator([_SPEC]).execute_outcome(call)
    assert out.text.startswith("TypeError: a tool call must be a ToolCall")
    assert out.category is C.TOOL_CALL_FAILURE and classify_feedback(out.text) is C.TOOL_CALL_FAILURE


def test_a_broken_third_party_schema_is_feedback_not_a_crash():
    spec = {"name": "g", "parameters": {"type": "object", "properties": {"x": {"type": "string", "enum": 5}}}}
    out = SchemaSimulator([spec]).execute_outcome(ToolCall("g", {"x": "a"}))
    assert out.category is C.OTHERS and classify_feedback(out.text) is C.OTHERS
    assert json.loads(out.text) == {"error": "Internal server error (TypeError)"}
