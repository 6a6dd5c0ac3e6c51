"""Trajectory readers: openai, tl_raw and sharegpt; strict and lenient; the openai writer round trip."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tl_lightning.data as tld
from tl_lightning.data import (
    FeedbackCategory as C,
)
from tl_lightning.data import (
    FeedbackClassifier,
    ReadResult,
    Step,
    Tool,
    ToolCall,
    Trajectory,
    TrajectoryFormatError,
    read_trajectories,
    step_category,
    write_openai_jsonl,
)
from tl_lightning.data.readers import FORMATS, detect_format
from tl_lightning.data.readers.tl_raw import parse_assistant

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "readers"


# ----------------------------------------------------------------------------- openai
def test_openai_good_jsonl():
    res = read_trajectories(FIX / "openai_good.jsonl")
    assert isinstance(res, ReadResult) and res.format == "openai"
    assert [t.id for t in res] == ["recover", "parallel", "by_order", "target"]
    assert (res.report.n_records, res.report.n_read, res.report.n_skipped) == (4, 4, 0)

    rec = res[0]
    assert rec.system == "You are a weather assistant."
    assert [(m.role, m.content) for m in rec.messages] == [("user", "Forecast for Paris for 3 days?")]
    assert rec.tool_names == ["get_weather_forecast", "get_weather_history", "get_stock_price"]
    assert rec.tool("get_weather_history").required == ("city", "date")
    s0, s1 = rec.steps
    assert s0.text == "I will call the forecast tool."
    assert s0.calls == [ToolCall("get_weather_forecast", {"town": "Paris"}, raw='{"town": "Paris"}')]
    assert s0.feedback == ["get_weather_forecast() got an unexpected keyword argument 'town'"]
    assert s0.category is C.PARAMETER_HALLUCINATION
    assert s1.text == "" and s1.calls[0].arguments == {
        "city": "Paris",
        "days": 3,
    }  # arguments given as an object
    assert s1.category is C.ALL_RIGHT  # "error_rate" inside a success payload is not an error
    assert rec.final_answer == "Sunny, 21.5 degrees tomorrow."
    assert rec.meta == {"scenario": "weather"}


def test_openai_feedback_by_id_by_order_finish_and_target():
    res = read_trajectories(FIX / "openai_good.jsonl", format="openai")
    par = res[1]
    (step,) = par.steps
    assert [c.name for c in step.calls] == ["get_stock_price", "get_weather_history"]
    # the replies came in the order b, a: matched back by tool_call_id
    assert step.feedback[0].startswith("ConnectionError:") and step.feedback[1] == '{"temp": 12}'
    assert step.category is C.TOOL_INSTABILITY
    assert par.final_answer == "Rome was 12 degrees; the stock service is down."  # content parts joined

    by_order = res[2]
    assert [s.calls[0].name for s in by_order.steps] == ["google_search"]  # undefined tool: legal data
    assert by_order.steps[0].category is C.TOOL_HALLUCINATION
    assert by_order.final_answer == "I cannot search the news."  # the finish call is not a step

    target = res[3]
    assert target.steps[0].feedback == [] and target.steps[0].category is None and target.final_answer is None


def test_json_array_matches_jsonl():
    arr = read_trajectories(FIX / "openai_good.json")
    lines = read_trajectories(FIX / "openai_good.jsonl")
    assert list(arr) == list(lines[:2])


BAD_OPENAI = [
    (2, "unknown role", "'robot'"),
    (3, "malformed JSON arguments", "messages[1].tool_calls[0]"),
    (4, "feedback with no preceding call", "messages[1]"),
    (5, "call with no feedback", "messages[2] follows"),
    (6, "empty trajectory", "no assistant step"),
    (7, "invalid JSON", ""),
    (8, "tools not parseable", "tools"),
]


@pytest.mark.parametrize(("line", "kind", "detail"), BAD_OPENAI)
def test_openai_strict_errors_name_file_record_problem(tmp_path, line, kind, detail):
    lines = (FIX / "openai_bad.jsonl").read_text().splitlines()
    path = tmp_path / "one_bad.jsonl"
    path.write_text(
        "\n".join([lines[0]] + [""] * (line - 2) + [lines[line - 1]]) + "\n"
    )  # keep the line number
    with pytest.raises(TrajectoryFormatError) as info:
        read_trajectories(path, format="openai")
    err = info.value
    assert (err.path, err.record, err.record_kind) == (str(path), line, "line")
    assert err.problem.startswith(kind + ":") or err.problem == kind
    assert detail in err.problem
    assert str(err).startswith(f"{path}, line {line}: {kind}")


def test_openai_lenient_counts_by_reason(caplog):
    with caplog.at_level(logging.WARNING, logger="tl_lightning.data.readers"):
        res = read_trajectories(FIX / "openai_bad.jsonl", strict=False)
    assert [t.id for t in res] == ["target"]
    rep = res.report
    assert (rep.n_records, rep.n_read, rep.n_skipped) == (8, 1, 7)
    assert dict(rep.reasons) == {kind: 1 for _, kind, _ in BAD_OPENAI}
    assert [e.split(": ")[0] for e in rep.errors] == [
        f"{FIX / 'openai_bad.jsonl'}, line {n}" for n, _, _ in BAD_OPENAI
    ]
    assert "skipped 7" in caplog.text and "line 2: unknown role" in caplog.text  # not silent


def test_strict_raises_at_first_bad_record():
    with pytest.raises(TrajectoryFormatError, match=r"line 2: unknown role"):
        read_trajectories(FIX / "openai_bad.jsonl")


def test_json_array_record_is_zero_based_index(tmp_path):
    recs = json.loads((FIX / "openai_good.json").read_text())
    recs.append(
        {"id": "bad", "messages": [{"role": "user", "content": "q"}, {"role": "tool", "content": "{}"}]}
    )
    path = tmp_path / "arr.json"
    path.write_text(json.dumps(recs))
    with pytest.raises(TrajectoryFormatError) as info:
        read_trajectories(path)
    assert (info.value.record, info.value.record_kind) == (2, "index")
    assert str(info.value).startswith(f"{path}, index 2: feedback with no preceding call")
    assert len(read_trajectories(path, strict=False)) == 2


def test_openai_more_feedback_edge_cases(tmp_path):
    tools = [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ]
    u = {"role": "user", "content": "q"}

    def call(cid):
        return {
            "role": "assistant",
            "tool_calls": [{"id": cid, "type": "function", "function": {"name": "f", "arguments": ""}}],
        }

    cases = {
        # a reply to an id no call has
        "wrong_id": [u, call("a"), {"role": "tool", "tool_call_id": "zz", "content": "{}"}],
        # two replies to a one-call step
        "extra": [u, call("a"), {"role": "tool", "content": "{}"}, {"role": "tool", "content": "{}"}],
        # a final answer after an unexecuted call
        "unexecuted": [u, call("a"), {"role": "assistant", "content": "done"}],
        # a user turn after a step
        "dialogue": [
            u,
            call("a"),
            {"role": "tool", "content": "{}"},
            u,
            {"role": "assistant", "content": "x"},
        ],
        # arguments that are JSON but not an object
        "list_args": [
            u,
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]},
        ],
    }
    expected = {
        "wrong_id": "feedback with no preceding call",
        "extra": "feedback with no preceding call",
        "unexecuted": "call with no feedback",
        "dialogue": "unsupported conversation",
        "list_args": "malformed JSON arguments",
    }
    path = tmp_path / "edge.jsonl"
    path.write_text("\n".join(json.dumps({"id": k, "tools": tools, "messages": m}) for k, m in cases.items()))
    res = read_trajectories(path, strict=False)
    assert len(res) == 0
    assert [e.split(": ", 1)[1].split(":")[0] for e in res.report.errors] == list(expected.values())


def test_thought_message_before_step_and_reply_before_user(tmp_path):
    tools = [{"name": "f"}]
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello! What do you need?"},
        {"role": "user", "content": "run f"},
        {"role": "assistant", "content": "Let me think."},
        {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
        {"role": "tool", "content": "ok"},
        {"role": "assistant", "content": "Done."},
    ]
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"tools": tools, "messages": msgs}))
    (t,) = read_trajectories(path)
    assert t.id == "t:1"  # file stem and line when the record has no id
    assert [(m.role, m.content) for m in t.messages] == [
        ("user", "hi"),
        ("assistant", "Hello! What do you need?"),
        ("user", "run f"),
    ]
    assert t.steps[0].text == "Let me think." and t.final_answer == "Done."


# ----------------------------------------------------------------------------- tl_raw
def test_tl_raw_good():
    res = read_trajectories(FIX / "tl_raw_good.json")
    assert res.format == "tl_raw" and [t.id for t in res] == ["raw_recover", "raw_text_answer"]
    t = res[0]
    assert t.tool_names == ["get_weather_forecast", "get_weather_history", "get_stock_price"]
    assert t.system == "Answer with a tool call."
    assert [m.content for m in t.messages] == ["Forecast for Paris?"]
    assert [(s.text, s.calls[0].arguments, s.category) for s in t.steps] == [
        ("", {"city": "Paris", "aqi": True}, C.PARAMETER_MISSING),
        ("Thought: retry without aqi.", {"city": "Paris"}, C.ALL_RIGHT),
    ]
    assert t.final_answer == "20 degrees."
    assert res[1].steps[0].category is C.TOOL_INSTABILITY
    assert res[1].final_answer == "The quote service failed; please retry later." and res[1].system == ""


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (2, "unknown role"),
        (3, "malformed JSON arguments"),
        (4, "tools not parseable"),
        (5, "feedback with no preceding call"),
        (6, "empty trajectory"),
    ],
)
def test_tl_raw_strict(tmp_path, line, kind):
    lines = (FIX / "tl_raw_bad.jsonl").read_text().splitlines()
    path = tmp_path / "raw.jsonl"
    path.write_text("\n" * (line - 1) + lines[line - 1] + "\n")
    with pytest.raises(TrajectoryFormatError, match=rf"raw.jsonl, line {line}: {kind}"):
        read_trajectories(path, format="tl_raw")


def test_tl_raw_lenient():
    res = read_trajectories(FIX / "tl_raw_bad.jsonl", strict=False)
    assert [t.id for t in res] == ["raw_text_answer"]
    assert res.report.n_skipped == 5 and sum(res.report.reasons.values()) == 5


@pytest.mark.parametrize(
    ("content", "text", "call"),
    [
        ('get_x\n{"a": 1}', "", ToolCall("get_x", {"a": 1})),
        ('I will look.\nget_x\n{\n "a": [1, 2]\n}', "I will look.", ToolCall("get_x", {"a": [1, 2]})),
        ("get_x\n{}", "", ToolCall("get_x", {})),
        ("The answer is 42.", "The answer is 42.", None),
        ("Done\nnothing more", "Done\nnothing more", None),
    ],
)
def test_tl_raw_parse_assistant(content, text, call):
    got_text, got_call = parse_assistant(content, "m")
    assert got_text == text
    assert (got_call.name, got_call.arguments) == (call.name, call.arguments) if call else got_call is None


# ----------------------------------------------------------------------------- sharegpt
def test_sharegpt_good():
    res = read_trajectories(FIX / "sharegpt_good.json")
    assert res.format == "sharegpt"
    a, b = res
    assert a.id == "sharegpt_good:0" and a.system == "You are a finance bot."
    (step,) = a.steps
    assert [(c.name, c.arguments) for c in step.calls] == [
        ("get_stock_price", {"symbol": "AAPL"}),
        ("get_stock_price", {"symbol": "MSFT"}),
    ]
    assert step.feedback == ['{"price": 190.1}', '{"error": "Response error."}']
    assert step.category is C.TOOL_CALL_FAILURE
    assert a.final_answer == "AAPL is 190.1; MSFT is unavailable."
    assert [s.category for s in b.steps] == [C.PARAMETER_MISSING, C.ALL_RIGHT]  # {"errors": []} is a success


def test_sharegpt_lenient_and_strict(tmp_path):
    res = read_trajectories(FIX / "sharegpt_bad.jsonl", strict=False)
    assert len(res) == 1
    assert dict(res.report.reasons) == {
        "unknown role": 1,
        "malformed JSON arguments": 1,
        "feedback with no preceding call": 1,
        "empty trajectory": 1,
        "tools not parseable": 1,
    }
    with pytest.raises(
        TrajectoryFormatError,
        match=r"sharegpt_bad.jsonl, line 2: unknown role: conversations\[1\]: 'assistant'",
    ):
        read_trajectories(FIX / "sharegpt_bad.jsonl", format="sharegpt")


# ----------------------------------------------------------------------------- detection, API
def test_detect_format():
    assert detect_format({"messages": []}) == "openai"
    assert detect_format({"conversations": [{"from": "human", "value": "q"}]}) == "sharegpt"
    assert detect_format({"conversations": [{"role": "user", "content": "q"}]}) == "tl_raw"
    assert detect_format({"question": []}) is None
    assert set(FORMATS) == {"openai", "tl_raw", "sharegpt"}


def test_undetectable_and_bad_arguments(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"question": 1}\n')
    with pytest.raises(TrajectoryFormatError, match="x.jsonl, line 1: cannot detect the format"):
        read_trajectories(path, strict=False)  # a file-level problem: raised even when lenient
    with pytest.raises(ValueError, match="unknown trajectory format"):
        read_trajectories(path, format="csv")
    with pytest.raises(FileNotFoundError):
        read_trajectories(tmp_path / "missing.jsonl")
    arr = tmp_path / "broken.json"
    arr.write_text('[{"messages": []}')
    with pytest.raises(TrajectoryFormatError, match="broken.json: invalid JSON"):
        read_trajectories(arr, strict=False)


def test_wrong_explicit_format_is_a_record_error():
    with pytest.raises(TrajectoryFormatError, match="line 1: malformed record"):
        read_trajectories(FIX / "openai_good.jsonl", format="sharegpt")


def test_custom_classifier_fills_categories():
    clf = FeedbackClassifier.from_dict({"rules": [{"category": "others", "substrings": ["temp"]}]})
    res = read_trajectories(FIX / "sharegpt_good.json", classifier=clf)
    assert [s.category for s in res[1].steps] == [C.ALL_RIGHT, C.ALL_RIGHT]  # "temp" sits in a JSON success
    res = read_trajectories(FIX / "tl_raw_good.json", classifier=clf)
    assert res[1].steps[0].category is C.ALL_RIGHT  # the default rules are gone


# ----------------------------------------------------------------------------- writer
def test_write_openai_round_trip(tmp_path):
    tools = [
        Tool(
            "get_weather_forecast",
            "Forecast.",
            {"type": "object", "properties": {"city": {"type": "string"}}},
            ("city",),
        ),
        Tool("get_stock_price"),
    ]
    trajs = [
        Trajectory(
            id="w1",
            tools=tools,
            system="Be brief.",
            messages=[tld.Message("user", "Weather and AAPL?")],
            steps=[
                Step(
                    [ToolCall("get_weather_forecast", {"town": "Paris"})],
                    text="Checking.",
                    feedback=["get_weather_forecast() got an unexpected keyword argument 'town'"],
                    category=C.PARAMETER_HALLUCINATION,
                ),
                Step(
                    [
                        ToolCall("get_weather_forecast", {"city": "Paris"}),
                        ToolCall("get_stock_price", {"symbol": "AAPL", "n": [1, 2.5]}),
                    ],
                    feedback=['{"temp": 21}', "Invalid API call"],
                    category=C.TOOL_INSTABILITY,
                ),
            ],
            final_answer="21 degrees; AAPL unavailable.",
            meta={"scenario": "mixed"},
        ),
        Trajectory(
            id="w2",
            tools=tools,
            messages=[tld.Message("user", "AAPL?")],
            steps=[Step([ToolCall("get_stock_price", {"symbol": "AAPL"})])],
        ),
        Trajectory(id="w3", tools=[], messages=[tld.Message("user", "Hi")], final_answer="Hello."),
    ]
    path = tmp_path / "out" / "train.jsonl"
    assert write_openai_jsonl(trajs, path) == 3
    back = read_trajectories(path, format="auto", strict=True)
    assert back.format == "openai"
    for orig, got in zip(trajs, back, strict=True):
        assert got.id == orig.id and got.tools == orig.tools and got.system == orig.system
        assert (
            got.messages == orig.messages and got.final_answer == orig.final_answer and got.meta == orig.meta
        )
        assert [(s.text, [c.to_dict() for c in s.calls], s.feedback, s.category) for s in got.steps] == [
            (s.text, [c.to_dict() for c in s.calls], s.feedback, s.category) for s in orig.steps
        ]


def test_lazy_exports():
    assert "encode_trajectory" in tld.__all__ and "get_template" in dir(tld)
    with pytest.raises(AttributeError):
        tld.no_such_name  # noqa: B018
    for name in (
        "read_trajectories",
        "ReadResult",
        "classify_feedback",
        "step_category",
        "FeedbackClassifier",
        "TrajectoryFormatError",
        "ReadReport",
        "EvalCase",
        "MultiTurnTask",
    ):
        assert hasattr(tld, name)


def test_tl_raw_system_with_brackets_before_tools():
    from tl_lightning.data.readers.tl_raw import split_system

    specs, rest = split_system('Rules [1] and [a]: use tools.\n[{"name": "f"}]\nLet\'s Begin!', "s")
    assert specs == [{"name": "f"}] and rest == "Rules [1] and [a]: use tools.\n\nLet's Begin!"


_names = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True).filter(lambda n: n != "finish")
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
_calls = st.lists(
    st.builds(ToolCall, _names, st.dictionaries(st.text(max_size=6), _json, max_size=3)),
    min_size=1,
    max_size=3,
)


@st.composite
def _trajectories(draw):
    n_steps = draw(st.integers(0, 3))
    steps = []
    for i in range(n_steps):
        calls = draw(_calls)
        last_unexecuted = i == n_steps - 1 and draw(st.booleans())
        feedback = [] if last_unexecuted else [draw(st.text(max_size=30)) for _ in calls]
        steps.append(Step(calls, text=draw(st.text(max_size=10)), feedback=feedback))
    unexecuted_end = bool(steps) and not steps[-1].feedback
    final = None if unexecuted_end else draw(st.none() | st.text(max_size=20))
    if not steps and final is None:
        final = "answer"
    return Trajectory(
        id=draw(st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)),
        tools=[Tool(n) for n in draw(st.lists(_names, unique=True, max_size=3))],
        messages=[tld.Message("user", draw(st.text(max_size=15)))],
        steps=steps,
        system=draw(st.text(max_size=10)),
        final_answer=final,
    )


@settings(max_examples=40, deadline=None)
@given(trajs=st.lists(_trajectories(), min_size=1, max_size=4))
def test_write_read_round_trip_property(tmp_path_factory, trajs):
    path = tmp_path_factory.mktemp("rt") / "data.jsonl"
    write_openai_jsonl(trajs, path)
    back = read_trajectories(path, strict=True)
    assert len(back) == len(trajs)
    for orig, got in zip(trajs, back, strict=True):
        assert (got.id, got.tools, got.messages, got.final_answer) == (
            orig.id,
            orig.tools,
            orig.messages,
            orig.final_answer,
        )
        assert got.system == orig.system
        assert [(s.text, [c.to_dict() for c in s.calls], s.feedback) for s in got.steps] == [
            (s.text, [c.to_dict() for c in s.calls], s.feedback) for s in orig.steps
        ]
        assert [s.category for s in got.steps] == [step_category(s.feedback) for s in orig.steps]
