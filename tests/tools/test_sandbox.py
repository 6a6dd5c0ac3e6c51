"""Sandbox: schema derivation, validation errors, exceptions, timeouts, state, determinism, injection safety,
and the promise that executing a call never raises, whatever it holds."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_lightning.data.feedback import classify_feedback
from tl_lightning.data.schema import FeedbackCategory as C
from tl_lightning.data.schema import ToolCall
from tl_lightning.tools.sandbox import Sandbox, default_toolkits
from tl_lightning.tools.toolkit import ToolError, Toolkit, _class_tools, tool
from tl_lightning.tools.toolkits import TOOLKITS


class SlowKit(Toolkit):
    name = "slow"
    host = "api.slow.example"

    def initial_state(self) -> dict:
        return {"counter": 0}

    @tool
    def nap(self, seconds: float) -> dict:
        """Sleep a while.

        Args:
            seconds: How long to sleep.
        """
        time.sleep(seconds)
        return {"slept": seconds}

    @tool
    def bump(self, by: int = 1) -> dict:
        """Increase the counter.

        Args:
            by: The increment.
        """
        self.state["counter"] += by
        return {"counter": self.state["counter"]}

    @tool
    def slow_bump(self, seconds: float) -> dict:
        """Sleep a while, then increase the counter.

        Args:
            seconds: How long to sleep first.
        """
        time.sleep(seconds)
        self.state["counter"] += 1
        return {"counter": self.state["counter"]}

    @tool
    def echo(self, value: dict) -> dict:
        """Echo an object.

        Args:
            value: Any object.
        """
        return {"value": value}

    @tool
    def explode(self, kind: Literal["type", "key", "tool", "bytes", "exit", "nan", "inf"]) -> dict:
        """Fail in a chosen way.

        Args:
            kind: Which failure.
        """
        if kind == "type":
            return {"x": "a" + 1}
        if kind == "key":
            return {}["missing"]
        if kind == "tool":
            raise ToolError("Recently completed scan for 'x' not found")
        if kind == "bytes":
            return {"data": b"\x00"}
        if kind in ("nan", "inf"):
            return {"value": float(kind)}
        raise SystemExit(3)

    @tool
    def typed(self, n: int, x: float, flag: bool, items: list[str], note: str | None = None) -> dict:
        """Echo typed values.

        Args:
            n: An integer.
            x: A number.
            flag: A switch.
            items: Some strings.
            note: An optional note.
        """
        return {"n": n, "x": x, "flag": flag, "items": items, "note": note}


@pytest.fixture()
def box() -> Sandbox:
    return Sandbox([SlowKit(), *default_toolkits()], seed=0, timeout_s=1.0)


def run(sb: Sandbox, name: str, **args):
    return sb.execute_outcome(ToolCall(name, args))


# ------------------------------------------------------------------------------- schemas
def test_toolkit_counts_and_prefix_families():
    sb = Sandbox()
    names = [t.name for t in sb.tools]
    assert len(TOOLKITS) >= 8 and len(names) >= 40 and len(names) == len(set(names))
    for family in (["get_weather_forecast", "get_weather_history", "get_weather_alerts"],
                   ["search_flights", "search_hotels", "search_restaurants"], ["convert_currency", "convert_units"]):
        assert set(family) <= set(names)


def test_schema_derived_from_signature_and_docstring():
    t = Sandbox(["weather"]).tool("get_weather_forecast")
    assert t.description == "Get the daily weather forecast for a city, starting tomorrow."
    assert t.required == ("city",)
    assert t.properties == {
        "city": {"type": "string", "description": 'The city name, e.g. "Paris".'},
        "days": {"type": "integer", "description": "Number of days to forecast, from 1 to 7.", "default": 3},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit.", "default": "celsius"},
    }
    alerts = Sandbox(["weather"]).tool("get_weather_alerts").properties["severity"]
    assert alerts == {"type": "string", "enum": ["minor", "moderate", "severe"], "nullable": True,
                      "description": "Only return alerts of this severity."}
    mean = Sandbox(["math"]).tool("calculate_mean").properties["numbers"]
    assert mean == {"type": "array", "items": {"type": "number"}, "description": "The numbers."}


def test_schemas_agree_with_transformers_get_json_schema():
    from transformers.utils import get_json_schema

    for cls in (*TOOLKITS, SlowKit):
        for name, derived in _class_tools(cls).items():
            ref = get_json_schema(getattr(cls, name))["function"]
            params = json.loads(json.dumps(derived.to_openai()["function"]["parameters"]))
            for p in params["properties"].values():
                p.pop("default", None)  # ours adds defaults; transformers does not
            ref_params = {**ref["parameters"], "required": ref["parameters"].get("required", [])}
            assert params == ref_params, name
            assert ref["description"].split("\n\n")[0] == derived.description


def test_undocumented_argument_is_rejected():
    class Bad(Toolkit):
        name = "bad"

        @tool
        def f(self, x: int) -> dict:
            """No Args section."""
            return {}

    with pytest.raises(TypeError, match="does not describe 'x'"):
        Bad()


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("name", "args", "text", "category"),
    [
        ("get_weather", {"city": "Paris"}, "name 'get_weather' is not defined", C.TOOL_HALLUCINATION),
        ("get_weather_forecast", {"city": "Paris", "sortBy": "x"},
         "get_weather_forecast() got an unexpected keyword argument 'sortBy'", C.PARAMETER_HALLUCINATION),
        ("get_weather_history", {"city": "Paris"},
         "get_weather_history() missing 1 required positional argument: 'date'", C.PARAMETER_MISSING),
        ("get_weather_history", {}, "get_weather_history() missing 2 required positional arguments: 'city' and 'date'",
         C.PARAMETER_MISSING),
        ("typed", {}, "typed() missing 4 required positional arguments: 'n', 'x', 'flag', and 'items'", C.PARAMETER_MISSING),
        ("get_weather_forecast", {"city": "Paris", "days": "3"},
         "TypeError: '<=' not supported between instances of 'str' and 'int'", C.TOOL_CALL_FAILURE),
        ("complete_task", {"task_id": "1"}, "TypeError: list indices must be integers or slices, not str", C.TOOL_CALL_FAILURE),
        ("typed", {"n": 1.5, "x": 1, "flag": True, "items": []},
         "TypeError: 'float' object cannot be interpreted as an integer", C.TOOL_CALL_FAILURE),
        ("typed", {"n": True, "x": 1, "flag": True, "items": []},
         "TypeError: argument 'n' must be int, not bool", C.TOOL_CALL_FAILURE),
        ("typed", {"n": 1, "x": 1, "flag": "yes", "items": []},
         "TypeError: argument 'flag' must be bool, not str", C.TOOL_CALL_FAILURE),
        ("typed", {"n": 1, "x": 1, "flag": True, "items": [1]},
         "AttributeError: 'int' object has no attribute 'strip'", C.TOOL_CALL_FAILURE),
        ("typed", {"n": 1, "x": 1, "flag": True, "items": 5}, "TypeError: 'int' object is not iterable", C.TOOL_CALL_FAILURE),
        ("get_weather_forecast", {"city": "Paris", "unit": "kelvin"},
         "ValueError: 'kelvin' is not a valid unit; expected one of 'celsius', 'fahrenheit'", C.TOOL_CALL_FAILURE),
        ("get_weather_forecast", {"city": 7}, "AttributeError: 'int' object has no attribute 'strip'", C.TOOL_CALL_FAILURE),
    ],
)
def test_validation_errors(box, name, args, text, category):
    out = run(box, name, **args)
    assert out.text == text
    assert out.category is category
    assert classify_feedback(out.text) is category


def test_valid_types_pass(box):
    out = run(box, "typed", n=2, x=3, flag=False, items=["a"], note=None)  # an int is a valid float
    assert out.category is C.ALL_RIGHT
    assert json.loads(out.text) == {"n": 2, "x": 3, "flag": False, "items": ["a"], "note": None}
    assert run(box, "typed", n=2, x=3.5, flag=True, items=("a", "b")).category is C.ALL_RIGHT  # a parsed tuple literal


# ---------------------------------------------------------------------------- exceptions
@pytest.mark.parametrize(
    ("kind", "text", "category"),
    [
        ("type", 'TypeError: can only concatenate str (not "int") to str', C.TOOL_CALL_FAILURE),
        ("key", "KeyError: 'missing'", C.TOOL_CALL_FAILURE),
        ("tool", '{"error": "Recently completed scan for \'x\' not found"}', C.OTHERS),
        ("bytes", "TypeError: Object of type bytes is not JSON serializable", C.TOOL_CALL_FAILURE),
        ("exit", '{"error": "SystemExit: 3"}', C.OTHERS),
    ],
)
def test_exception_inside_tool_becomes_feedback(box, kind, text, category):
    out = run(box, "explode", kind=kind)
    assert out.text == text
    assert out.category is category
    assert classify_feedback(out.text) is category


def test_real_tool_errors(box):
    out = run(box, "get_weather_history", city="Paris", date="next friday")
    assert out.text == "ValueError: Invalid isoformat string: 'next friday'"
    assert classify_feedback(out.text) is C.TOOL_CALL_FAILURE
    out = run(box, "get_weather_forecast", city="Atlantis")
    assert out.text == '{"error": "City \'Atlantis\' not found"}'
    assert out.category is C.OTHERS and classify_feedback(out.text) is C.OTHERS


def test_timeout_reports_instability_and_sandbox_keeps_working():
    sb = Sandbox([SlowKit()], timeout_s=0.05)
    t0 = time.perf_counter()
    out = run(sb, "nap", seconds=0.5)
    assert time.perf_counter() - t0 < 0.4
    assert out.text == "ConnectionError: HTTPSConnectionPool(host='api.slow.example', port=443): Read timed out. (read timeout=0.05)"
    assert out.category is C.TOOL_INSTABILITY and classify_feedback(out.text) is C.TOOL_INSTABILITY
    assert json.loads(run(sb, "nap", seconds=0.0).text) == {"slept": 0.0}


# --------------------------------------------------------------------------------- state
def test_state_reset_between_episodes(box):
    assert json.loads(run(box, "add_task", title="pay rent").text)["task_id"] == 1
    assert json.loads(run(box, "bump", by=2).text) == {"counter": 2}
    box.reset()
    assert json.loads(run(box, "list_tasks").text)["tasks"] == []
    assert json.loads(run(box, "bump").text) == {"counter": 1}
    start = {"todo": {"tasks": [{"task_id": 7, "title": "x", "due_date": None, "priority": "low", "done": False}], "next_id": 8}}
    box.reset(start)
    assert json.loads(run(box, "complete_task", task_id=7).text) == {"task_id": 7, "title": "x", "done": True}
    assert start["todo"]["tasks"][0]["done"] is False  # reset copied the given state
    assert box.state["todo"]["tasks"][0]["done"] is True
    with pytest.raises(ValueError, match="unknown toolkits"):
        box.reset({"nope": {}})


def test_finish_ends_episode(box):
    assert not box.done
    assert run(box, "finish").category is C.PARAMETER_MISSING
    out = run(box, "finish", answer="It is sunny.")
    assert out.category is C.ALL_RIGHT and box.done and box.final_answer == "It is sunny."
    box.reset()
    assert not box.done and box.final_answer is None


def test_expose_limits_the_tools():
    sb = Sandbox(["weather"], expose=["get_air_quality"])
    assert [t.name for t in sb.tools] == ["get_air_quality"]
    assert run(sb, "get_weather_forecast", city="Paris").text == "name 'get_weather_forecast' is not defined"


# ------------------------------------------------------------------------- determinism
def test_instability_is_seeded_and_restarts_on_reset():
    def texts(sb: Sandbox) -> list[str]:
        return [run(sb, "get_air_quality", city="Rome").category.value for _ in range(40)]

    a, b = Sandbox(["weather"], seed=1, instability_rate=0.5), Sandbox(["weather"], seed=1, instability_rate=0.5)
    first = texts(a)
    assert first == texts(b)
    assert 5 < first.count("tool_instability") < 35
    a.reset()
    assert texts(a) == first
    assert texts(Sandbox(["weather"], seed=2, instability_rate=0.5)) != first
    out = run(Sandbox(["weather"], instability_rate=1.0), "get_air_quality", city="Rome")
    assert out.text.startswith("ConnectionError: HTTPSConnectionPool(host='api.weather.example', port=443): Max retries exceeded")
    assert classify_feedback(out.text) is C.TOOL_INSTABILITY


def test_fail_next_then_recover():
    sb = Sandbox(["weather"])
    sb.fail_next()
    assert run(sb, "get_air_quality", city="Rome").category is C.TOOL_INSTABILITY
    assert run(sb, "get_air_quality", city="Rome").category is C.ALL_RIGHT


def test_tools_are_deterministic_across_instances():
    call = ToolCall("search_flights", {"origin": "Paris", "destination": "Rome", "date": "2025-06-10"})
    assert Sandbox().execute(call) == Sandbox().execute(call)


# ---------------------------------------------------------------------- injection safety
def test_argument_values_are_data_never_code(box, tmp_path: Path):
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    out = run(box, "write_file", path="/notes/x.txt", content=payload)
    assert out.category is C.ALL_RIGHT
    assert json.loads(run(box, "read_file", path="/notes/x.txt").text)["content"] == payload
    assert json.loads(run(box, "get_weather_forecast", city=payload).text) == {"error": f"City '{payload}' not found"}
    assert run(box, payload, city="x").text == f"name '{payload}' is not defined"
    assert run(box, "get_weather_forecast", **{payload: 1}).category is C.PARAMETER_HALLUCINATION
    assert not marker.exists()


# Letters that spell none of the classifier's patterns: a city named "timed out" would rightly be
# reported as not found (others) while its message matches an instability pattern.
_TEXT = st.text(alphabet="abcxyz019 -_/.'\"", max_size=12)
_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | _TEXT,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=6)
_SANDBOX = Sandbox(timeout_s=None)
_NAMES = [t.name for t in _SANDBOX.tools] + ["finish", "no_such_tool"]


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(_NAMES), args=st.dictionaries(st.sampled_from(["city", "date", "days", "path", "content", "task_id",
       "amount", "from_currency", "to_currency", "numbers", "value", "x", "answer"]), _json, max_size=4))
def test_execute_never_raises_and_category_matches_classifier(name, args):
    _SANDBOX.reset()
    out = _SANDBOX.execute_outcome(ToolCall(name, args))
    assert isinstance(out.text, str)
    assert classify_feedback(out.text) is out.category, (name, args, out.text)


# ------------------------------------------------------------- execute never raises (issue 15)
def _deep(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize("call", [None, "get_air_quality(city='Rome')", {"name": "finish", "arguments": {"answer": "x"}}, 42])
def test_a_non_toolcall_is_a_call_failure(box, call):
    out = box.execute_outcome(call)
    assert out.text.startswith("TypeError: a tool call must be a ToolCall")
    assert out.category is C.TOOL_CALL_FAILURE and classify_feedback(out.text) is C.TOOL_CALL_FAILURE
    assert box.execute(call) == out.text


def test_finish_with_a_huge_int_answer_is_a_call_failure(box):
    out = run(box, "finish", answer=10**5000)
    assert out.text.startswith("ValueError: Exceeds the limit (4300 digits) for integer string conversion")
    assert out.category is C.TOOL_CALL_FAILURE and classify_feedback(out.text) is C.TOOL_CALL_FAILURE
    assert not box.done and box.final_answer is None
    assert run(box, "finish", answer=10**100).category is C.ALL_RIGHT and box.final_answer == str(10**100)


@pytest.mark.parametrize(
    ("name", "args", "text"),
    [
        ("typed", {"n": 10**5000, "x": 1, "flag": True, "items": []}, "ValueError: Exceeds the limit (4300 digits)"),
        ("get_weather_forecast", {"city": "Paris", "days": -(10**5000)}, "ValueError: Exceeds the limit (4300 digits)"),
        ("typed", {"n": 1, "x": math.nan, "flag": True, "items": []}, "ValueError: Out of range float values are not JSON compliant"),
        ("convert_currency", {"amount": math.inf, "from_currency": "USD", "to_currency": "EUR"},
         "ValueError: Out of range float values are not JSON compliant"),
        ("echo", {"value": {"n": [1, 10**5000]}}, "ValueError: Exceeds the limit (4300 digits)"),
        ("echo", {"value": _deep(100_000)}, "ValueError: argument 'value' is nested more than 64 levels deep"),
        ("echo", {"value": {"k": object()}}, "TypeError: Object of type object is not JSON serializable"),
        ("echo", {"value": {("a", "b"): 1}}, "TypeError: keys must be str, int, float, bool or None, not tuple"),
        ("get_weather_forecast", {"city": "Par\ud800is"}, "ValueError: argument 'city' is not valid text"),
    ],
)
def test_values_json_cannot_carry_are_call_failures(box, name, args, text):
    out = run(box, name, **args)
    assert out.text.startswith(text)
    assert out.category is C.TOOL_CALL_FAILURE and classify_feedback(out.text) is C.TOOL_CALL_FAILURE
    out.text.encode("utf-8")  # the feedback itself can always be written out


def test_huge_strings_are_data(box):
    huge = "x" * 5_000_000
    out = run(box, "get_weather_forecast", city=huge)
    assert out.category is C.OTHERS and out.text == json.dumps({"error": f"City '{huge}' not found"})
    assert run(box, "finish", answer=huge).category is C.ALL_RIGHT and box.final_answer == huge


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_non_finite_results_are_call_failures(box, kind):
    out = run(box, "explode", kind=kind)
    assert out.text == "ValueError: Out of range float values are not JSON compliant"
    assert out.category is C.TOOL_CALL_FAILURE and classify_feedback(out.text) is C.TOOL_CALL_FAILURE


def test_non_finite_result_of_a_shipped_tool():
    out = run(Sandbox(["finance"]), "convert_currency", amount=1e308, from_currency="USD", to_currency="JPY")
    assert out.text == "ValueError: Out of range float values are not JSON compliant"
    assert out.category is C.TOOL_CALL_FAILURE


def test_a_timed_out_call_never_touches_state_after_reset():
    sb = Sandbox([SlowKit()], timeout_s=0.05)
    out = run(sb, "slow_bump", seconds=0.3)
    assert out.category is C.TOOL_INSTABILITY and "Read timed out" in out.text
    sb.reset()
    assert json.loads(run(sb, "bump", by=5).text) == {"counter": 5}
    deadline = time.monotonic() + 5
    while any(t.name == "tool-slow_bump" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)  # let the abandoned call finish its late write
    assert sb.state == {"slow": {"counter": 5}}


def test_a_timed_out_call_leaves_no_trace_in_its_episode():
    sb = Sandbox([SlowKit()], timeout_s=0.05)
    assert run(sb, "slow_bump", seconds=0.2).category is C.TOOL_INSTABILITY
    time.sleep(0.4)
    assert sb.state == {"slow": {"counter": 0}}
    assert json.loads(run(sb, "slow_bump", seconds=0.0).text) == {"counter": 1}  # a call in time does write


def test_argument_checks_are_inside_the_time_limit():
    sb = Sandbox([SlowKit()], timeout_s=0.1)
    items = ["a"] * 1_000_000
    t0 = time.perf_counter()
    out = run(sb, "typed", n=1, x=1.0, flag=True, items=items)
    elapsed = time.perf_counter() - t0
    assert out.category is C.TOOL_INSTABILITY and "Read timed out. (read timeout=0.1)" in out.text
    assert elapsed < 0.8, elapsed
    assert run(Sandbox([SlowKit()], timeout_s=None), "typed", n=1, x=1.0, flag=True, items=items).category is C.ALL_RIGHT


_HOSTILE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from([5000, -4400]).map(lambda digits: 10 ** abs(digits) * (1 if digits > 0 else -1))
    | st.sampled_from(["\ud800", "x" * 10_000, b"\x00", object(), {1, 2}]),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from([*_NAMES, "echo", "typed"]), args=st.dictionaries(st.sampled_from(
    ["city", "days", "amount", "numbers", "answer", "value", "n", "x", "flag", "items"]), _HOSTILE, max_size=4))
def test_execute_never_raises_on_hostile_values(name, args):
    sb = Sandbox([SlowKit(), *default_toolkits()], timeout_s=None)
    out = sb.execute_outcome(ToolCall(name, args))
    assert isinstance(out.text, str) and isinstance(out.category, C)
    out.text.encode("utf-8")
