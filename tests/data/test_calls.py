"""parse_calls / format_call: formats, round trips, and a fuzz test that nothing raises, runs or
takes long, and that every accepted parse can be written as JSON."""

from __future__ import annotations

import builtins
import dataclasses
import json
import keyword
import os
import random
import subprocess
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tl_lightning.data.calls import MAX_TEXT_CHARS, ParseResult, format_call, format_calls, parse_calls
from tl_lightning.data.literals import MAX_DEPTH
from tl_lightning.data.schema import ToolCall


def _pairs(result: ParseResult) -> list[tuple[str, dict]]:
    assert result.ok, result.error
    return [(c.name, c.arguments) for c in result.calls]


# --------------------------------------------------------------------------- python


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('get_weather(city="Paris", days=3)', [("get_weather", {"city": "Paris", "days": 3})]),
        ("get_weather(city='Paris', days=-3)</s>", [("get_weather", {"city": "Paris", "days": -3})]),
        ("f()", [("f", {})]),
        ("math.factorial(n=5)", [("math.factorial", {"n": 5})]),
        ("[f(a=1), g(b=[1, 2.5], c={'k': None})]", [("f", {"a": 1}), ("g", {"b": [1, 2.5], "c": {"k": None}})]),
        ("f(a=1)\ng(b=true, c=null)", [("f", {"a": 1}), ("g", {"b": True, "c": None})]),
        ("f(a=(1, 2), b={1, 2})", [("f", {"a": (1, 2), "b": [1, 2]})]),
        ("f(p=1/4, q=2*3, r=-(1+2), s=7//2, t=7%4)", [("f", {"p": 0.25, "q": 6, "r": -3, "s": 3, "t": 3})]),
        ("```python\nf(a='x')\n```", [("f", {"a": "x"})]),
    ],
)
def test_python_calls(text, expected):
    result = parse_calls(text, "python")
    assert _pairs(result) == expected
    assert result.format == "python"
    assert parse_calls(text).calls == result.calls  # auto agrees


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("f(1, 2)", "positional"),
        ("f(**kw)", "unpacking"),
        ("f(a=x)", "variable 'x'"),
        ("f(a=g())", "nested calls"),
        ("f(a=os.path)", "Attribute"),
        ("f(a=[i for i in range(3)])", "ListComp"),
        ("f(a='x' + 'y')", "non-number"),
        ("f(a=9**9**9)", "'**' is not evaluated"),
        ("f(a=2**3)", "'**' is not evaluated"),
        ("f(a=1|2)", "BinOp is not a literal"),
        ("f(a=1/0)", "arithmetic error"),
        ("x = f(a=1)", "Assign"),
        ("import os", "Import"),
        ("f(a=1", "never closed"),
        ("", "empty output"),
        ("42", "expected a call"),
        ("__import__('os').system('echo hi')", "(dotted) name"),
    ],
)
def test_python_errors(text, fragment):
    result = parse_calls(text, "python")
    assert not result.ok and result.calls == []
    assert fragment in result.error


# --------------------------------------------------------------------------- json


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "f", "arguments": {"a": 1}}', [("f", {"a": 1})]),
        ('{"name": "f", "arguments": "{\\"a\\": [1, 2]}"}', [("f", {"a": [1, 2]})]),
        ('{"name": "f", "parameters": {"a": "x"}}', [("f", {"a": "x"})]),
        ('{"type": "function", "function": {"name": "f", "arguments": "{}"}}', [("f", {})]),
        ('[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"b": false}}]', [("f", {}), ("g", {"b": False})]),
        ('Sure: {"name": "f", "arguments": {"a": 1}} done', [("f", {"a": 1})]),
        (
            'I will call two.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
            '<tool_call>{"name": "g", "arguments": {}}</tool_call><|im_end|>',
            [("f", {"a": 1}), ("g", {})],
        ),
        ('<tool_call>\n{"name": "f", "arguments": {"a": 1}}', [("f", {"a": 1})]),  # unclosed last block
    ],
)
def test_json_calls(text, expected):
    result = parse_calls(text, "json")
    assert _pairs(result) == expected
    assert parse_calls(text).calls == result.calls


def test_tool_call_thought_is_the_text_before_the_block():
    result = parse_calls('Let me look.\n<tool_call>{"name": "f", "arguments": {}}</tool_call>')
    assert result.thought == "Let me look."


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"name": "f", "arguments": [1]}', "must be an object"),
        ('{"arguments": {}}', "non-empty string 'name'"),
        ('{"name": "f", "arguments": "{bad"}', "not JSON"),
        ('{"name": "f", "arguments": {"a": NaN}}', "NaN"),
        ('{"name": "f", "arguments": {"a": 1}', "Expecting"),
        ("<tool_call></tool_call>", "empty <tool_call>"),
        ("[]", "empty list"),
        ('"just a string"', "must be an object"),
    ],
)
def test_json_errors(text, fragment):
    result = parse_calls(text, "json")
    assert not result.ok
    assert fragment in result.error


# --------------------------------------------------------------------------- react


def test_react_call_with_thought_stops_at_observation():
    text = 'Thought: I need the price.\nAction: get_price\nAction Input: {"symbol": "AAPL"}\nObservation: {"p": 1}\nAction: f\nAction Input: {}'
    result = parse_calls(text, "react")
    assert _pairs(result) == [("get_price", {"symbol": "AAPL"})]
    assert result.thought == "I need the price."
    assert parse_calls(text).format == "react"


def test_react_tolerates_spacing_python_dicts_and_several_actions():
    text = "Action:f \nAction Input: {'a': True}\nAction: g\nAction Input: {\"b\": 2} trailing"
    assert _pairs(parse_calls(text, "react")) == [("f", {"a": True}), ("g", {"b": 2})]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('Thought: t\nAction: f\nAction Input: "a string"', "not a JSON object (got str)"),
        ("Action: f\nAction Input: [1, 2]", "not a JSON object (got list)"),
        ("Action: f\nAction Input: 5", "not a JSON object (got int)"),
        ("Action: f\nAction Input: {oops", "not valid JSON"),
        ("Action: f\n", "no 'Action Input:'"),
        ("Thought: nothing to do", "no 'Action:' line"),
        ("Action: \nAction Input: {}", "empty Action name"),
    ],
)
def test_react_errors(text, fragment):
    result = parse_calls(text, "react")
    assert not result.ok and result.calls == []
    assert fragment in result.error


def test_empty_react_input_is_a_call_with_no_arguments():
    # The RoTBench official scorer rejects {} inputs; that quirk lives in scoring, not in parsing.
    assert _pairs(parse_calls("Action: finish\nAction Input: {}", "react")) == [("finish", {})]


# --------------------------------------------------------------------------- guards


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x" * (MAX_TEXT_CHARS + 1), "longer than"),
        ("f(a=" + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + ")", "nested deeper"),
        ('{"name": "f", "arguments": {"a": ' + "9" * 5000 + "}}", "json: "),
        ("f(a=" + "9" * 5000 + ")", "4300"),
    ],
)
def test_pathological_inputs_are_errors(text, fragment):
    result = parse_calls(text)
    assert not result.ok
    assert fragment in result.error


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = 'f(a="' + "[" * 200 + '")'
    assert _pairs(parse_calls(text)) == [("f", {"a": "[" * 200})]


def test_bad_format_and_non_string_never_raise():
    assert "unknown call format" in parse_calls("f()", "yaml").error
    assert "expected a string" in parse_calls(None).error  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rendering


CALLS = [
    ToolCall("get_weather", {"city": "Paris", "days": 3}),
    ToolCall("f", {}),
    ToolCall("g", {"s": 'quote " and \\ and \n newline, é', "x": -1.5, "b": False, "n": None, "l": [1, [2, {"k": "v"}]]}),
    ToolCall("math.factorial", {"n": 5}),
]


@pytest.mark.parametrize("fmt", ["python", "json", "react", "tool_call"])
@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.name)
def test_format_call_round_trips(call, fmt):
    text = format_call(call, fmt)
    parse_format = {"tool_call": "json"}.get(fmt, fmt)
    result = parse_calls(text, parse_format)
    assert _pairs(result) == [(call.name, call.arguments)]
    assert parse_calls(text).calls == result.calls


def test_format_call_exact_text():
    call = ToolCall("f", {"a": 1, "b": "x", "c": True, "d": (1,)})
    assert format_call(call, "python") == 'f(a=1, b="x", c=True, d=(1,))'
    assert format_call(call, "json") == '{"name": "f", "arguments": {"a": 1, "b": "x", "c": true, "d": [1]}}'
    assert format_call(call, "react", thought="go") == 'Thought: go\nAction: f\nAction Input: {"a": 1, "b": "x", "c": true, "d": [1]}'
    with pytest.raises(ValueError, match="unknown call format"):
        format_call(call, "xml")


@pytest.mark.parametrize("fmt", ["python", "json", "react", "tool_call"])
def test_format_calls_round_trips_several(fmt):
    text = format_calls(CALLS[:3], fmt, thought="t" if fmt == "react" else None)
    result = parse_calls(text, {"tool_call": "json"}.get(fmt, fmt))
    assert _pairs(result) == [(c.name, c.arguments) for c in CALLS[:3]]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_identifiers = st.text(alphabet="abcxyzABC_019", min_size=1, max_size=12).filter(
    lambda s: s.isidentifier() and not keyword.iskeyword(s)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_identifiers, args=st.dictionaries(_identifiers, _json_values, max_size=5), fmt=st.sampled_from(["python", "json", "react", "tool_call"]))
def test_round_trip_property(name, args, fmt):
    call = ToolCall(name, args)
    result = parse_calls(format_call(call, fmt), {"tool_call": "json"}.get(fmt, fmt))
    assert result.ok, result.error
    assert [(c.name, c.arguments) for c in result.calls] == [(name, args)]


# --------------------------------------------------------------------------- fuzz: never raises, never runs


ADVERSARIAL = [
    "__import__('os').system('touch {marker}')",
    "f(a=__import__('os').system('touch {marker}'))",
    "exec(\"open('{marker}', 'w')\")",
    "eval(\"open('{marker}', 'w')\")",
    "open('{marker}', 'w').write('x')",
    "f(a=open('{marker}', 'w'))",
    "f(a=lambda: open('{marker}', 'w'))",
    "[open('{marker}', 'w') for _ in [1]]",
    "f(a=(yield open('{marker}')))",
    "Action: f\nAction Input: __import__('os').system('touch {marker}')",
    '{"name": "f", "arguments": "__import__(\'os\').system(\'touch {marker}\')"}',
    "<tool_call>__import__('os').system('touch {marker}')</tool_call>",
    "f(a=().__class__.__bases__[0].__subclasses__())",
    "f(a=9**9**9**9)",
    "f(a=10**100000)",
    "f(a=" + "-" * 5000 + "1)",
    "f(a=" + "+".join(["1"] * 3000) + ")",
    "(" * 100_000,
    "[" * 50 + "]" * 50,
    '{"a":' * 1000 + "1" + "}" * 1000,
    "\x00\x01\x02 f(a=1)",
    "f(a='\ud800')",
    "f(\u0430=1)",  # Cyrillic identifier
    "f(a=1" + "\n" * 10000,
    "Action: " + "x" * 99_000 + "\nAction Input: {}",
    "Thought: " * 5000,
    "<tool_call>" * 5000,
    "```" * 100,
    "f(a=1e309)",
    "f(a=0x" + "f" * 5000 + ")",
    '{"name": "f", "arguments": {"a": 1e999}}',
    "f(a=1j)",
    "f(a=b'bytes')",
    "f(a=...)",
    "f(a=f'{open(\"{marker}\")}')",
]


def _mutations(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    # Short seeds only: splicing the 100k-char bombs into every mutation would only test speed.
    seeds = [format_call(c, f) for c in CALLS for f in ("python", "json", "react", "tool_call")]
    seeds += [t for t in ADVERSARIAL if len(t) < 2000]
    alphabet = list("()[]{}'\",:=\\\n ._-+*/%<>|&!@#$^~`0123456789eEaZ") + ["\u00e9", "\u200b", "\U0001f600", "\x00", "True", "None", "Action:", "<tool_call>"]
    out = []
    for _ in range(n):
        text = rng.choice(seeds)
        for _ in range(rng.randint(1, 6)):
            op = rng.random()
            i = rng.randint(0, len(text))
            if op < 0.3:
                text = text[:i] + rng.choice(alphabet) + text[i:]
            elif op < 0.55:
                text = text[:i] + text[i + rng.randint(1, 5) :]
            elif op < 0.7:
                text = text[:i]  # truncation
            elif op < 0.85:
                text = text[:i] + rng.choice(seeds) + text[i:]  # splice
            else:
                k = rng.randint(1, 200)
                text = text[:i] + rng.choice("([{") * k + text[i:]
        out.append(text)
    return out


@pytest.fixture
def no_side_effects(monkeypatch, tmp_path):
    """Sentinels: any attempt to run code, spawn a process or import during parsing is recorded."""
    touched: list[str] = []
    real_import = builtins.__import__

    def guard(name):
        def sentinel(*args, **kwargs):
            touched.append(name)
            raise AssertionError(f"{name} called while parsing")

        return sentinel

    monkeypatch.setattr(os, "system", guard("os.system"))
    monkeypatch.setattr(subprocess, "Popen", guard("subprocess.Popen"))
    monkeypatch.setattr(builtins, "eval", guard("eval"))
    monkeypatch.setattr(builtins, "exec", guard("exec"))

    def import_guard(name, *args, **kwargs):
        if name in ("os", "subprocess", "shutil", "sys") and not touched:
            touched.append(f"import {name}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", import_guard)
    return tmp_path / "marker", touched


#: Per-parse bound of the fuzz test (issue 15: none over 50 ms), in CPU time so that other load on a
#: shared machine does not count; a parse over it is re-timed twice and judged by its best time.
PARSE_BOUND_S = 0.05


def _timed_parse(text: str, fmt: str) -> tuple[ParseResult, float]:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        result = parse_calls(text, fmt)
        best = min(best, time.process_time() - start)
        if best <= PARSE_BOUND_S:
            break
    return result, best


def assert_json_ready(result: ParseResult) -> None:
    """What a report or predictions file does with a parse: JSON without NaN, written as UTF-8."""
    json.dumps(dataclasses.asdict(result), allow_nan=False)
    json.dumps([c.to_dict() for c in result.calls], ensure_ascii=False, allow_nan=False).encode("utf-8")
    for call in result.calls:
        str(call.arguments)  # a sandbox or simulator str()s values: no int beyond the digit limit


def test_fuzz_10000_strings_never_raise_never_execute_never_take_long(no_side_effects):
    marker, touched = no_side_effects
    texts = [t.replace("{marker}", str(marker)) for t in ADVERSARIAL] + _mutations(0, 10_000 - len(ADVERSARIAL))
    assert len(texts) == 10_000
    n_ok = 0
    slow: list[tuple[float, str, str]] = []
    for text in texts:
        for fmt in ("auto", "python", "json", "react"):
            result, seconds = _timed_parse(text, fmt)
            assert isinstance(result, ParseResult)
            assert (result.error is None) == bool(result.calls), (text[:200], result)
            assert_json_ready(result)
            n_ok += result.ok
            if seconds > PARSE_BOUND_S:
                slow.append((seconds, fmt, text[:80]))
    assert not marker.exists()
    assert touched == []
    assert slow == []
    assert 0 < n_ok < 40_000  # the mutations keep some valid calls and break most


_pieces = st.characters(codec="utf-8") | st.sampled_from(
    list("()[]{}'\",:=\n") + ["Action:", "Action Input:", "<tool_call>", "</tool_call>", "f(a=", '{"name": "f", "arguments": ', "Thought:"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.lists(_pieces, max_size=80).map("".join))
def test_hypothesis_text_never_raises(text):
    for fmt in ("auto", "python", "json", "react"):
        result = parse_calls(text, fmt)
        assert (result.error is None) == bool(result.calls)
        assert_json_ready(result)
