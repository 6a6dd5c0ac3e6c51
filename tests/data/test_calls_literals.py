"""The one literal walker and renderer: what they accept, what they refuse, and the exact text they
write for calls (``format_call``) and for prompts (the ``python_doc`` template, ``as_json=True``)."""

from __future__ import annotations

import ast
import json
import math
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tl_lightning.benchmarks.base import benchmarks_root
from tl_lightning.benchmarks.bfcl import parse_ground_truth_call
from tl_lightning.data.literals import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    LiteralError,
    check_value,
    literal_value,
    python_literal,
)


def _value(source: str):
    return literal_value(ast.parse(source, mode="eval").body)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'x'", "x"),
        ("-3", -3),
        ("+2.5", 2.5),
        ("[1, (2, 3), {4, 5}]", [1, (2, 3), [4, 5]]),
        ("{'a': None, 1: True, 2.5: false, None: null}", {"a": None, 1: True, 2.5: False, None: None}),
        ("1/6", 1 / 6),
        ("500*500", 250_000),
        ("-(7 // 2) + 7 % 4 - 1", -1),
        ("0x" + "f" * 20, int("f" * 20, 16)),
        ("1e308", 1e308),
    ],
)
def test_literal_value_accepts(source, expected):
    value = _value(source)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("x", "variable 'x'"),
        ("f()", "nested calls"),
        ("a.b", "Attribute"),
        ("2**3", "'**' is not evaluated"),
        ("1 << 2", "BinOp is not a literal"),
        ("'a' + 'b'", "arithmetic on a non-number"),
        ("-'a'", "unary sign on a non-number"),
        ("1/0", "arithmetic error"),
        ("b'x'", "unsupported constant bytes"),
        ("1j", "unsupported constant complex"),
        ("{**a}", "'**' unpacking"),
        ("{[1]: 2}", "unhashable dict key"),
        ("{(1, 2): 3}", "dict key (1, 2) is a tuple"),
        ("1e308 * 10", "inf is not a finite number"),
        ("1e999", "inf is not a finite number"),
        ("9" * (MAX_INT_DIGITS + 1), f"over the {MAX_INT_DIGITS}-digit cap"),
        ("10**2", "'**'"),
        ("'\\ud800'", "lone surrogate"),
        ("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2), "nested too deeply"),
        ("+".join(["1"] * (MAX_DEPTH + 2)), "nested too deeply"),
    ],
)
def test_literal_value_refuses_naming_the_value(source, fragment):
    with pytest.raises(LiteralError) as err:
        _value(source)
    assert fragment in str(err.value)
    assert isinstance(err.value, ValueError)  # callers that catch ValueError keep working


def test_integer_cap_is_exact():
    biggest = 10**MAX_INT_DIGITS - 1
    assert _value(str(biggest)) == biggest and _value(f"-{biggest}") == -biggest
    with pytest.raises(LiteralError, match="digit cap"):
        _value(f"{biggest} + 1")
    with pytest.raises(LiteralError, match="digit cap"):
        _value(f"-{biggest} - 1")


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (float("nan"), "NaN/Infinity"),
        ({"a": [float("inf")]}, "NaN/Infinity"),
        (10**MAX_INT_DIGITS, "digit cap"),
        ({"k": "\udfff"}, "lone surrogate"),
        ({(1, 2): 3}, "is a tuple"),
        ({1, 2}, "set"),
        (b"x", "bytes"),
        (_nested(MAX_DEPTH + 2), "nested too deeply"),
    ],
)
def test_check_value_refuses(value, fragment):
    with pytest.raises(LiteralError) as err:
        check_value(value)
    assert fragment in str(err.value)


def test_check_value_accepts_json_values():
    check_value({"a": [1, 2.5, None, True, "é", {"b": (1, 2)}], "n": -(10**MAX_INT_DIGITS - 1)})


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("value", "for_calls", "for_prompts"),
    [
        ("a \"q\" \\ \n\t é", '"a \\"q\\" \\\\ \\n\\t é"', '"a \\"q\\" \\\\ \\n\\t é"'),
        (3, "3", "3"),
        (-2.5, "-2.5", "-2.5"),
        (True, "True", "True"),
        (None, "None", "None"),
        ([1, "x", [False]], '[1, "x", [False]]', '[1, "x", [False]]'),
        ((1,), "(1,)", "[1]"),
        ((), "()", "[]"),
        ({1: (2, 3), "k": {"n": None}}, '{1: (2, 3), "k": {"n": None}}', '{"1": [2, 3], "k": {"n": None}}'),
        ({None: 1, True: 2}, "{None: 1, True: 2}", '{"None": 1, "True": 2}'),
        ([(1, 2), {"a": (3,)}], '[(1, 2), {"a": (3,)}]', '[[1, 2], {"a": [3]}]'),
    ],
)
def test_python_literal_exact_text(value, for_calls, for_prompts):
    assert python_literal(value) == for_calls
    assert python_literal(value, as_json=True) == for_prompts
    assert ast.literal_eval(for_calls) == value


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"a": [float("-inf")]}, object(), {1, 2}, b"x"])
def test_python_literal_refuses(value):
    with pytest.raises(LiteralError, match="cannot render"):
        python_literal(value)
    with pytest.raises(LiteralError, match="cannot render"):
        python_literal(value, as_json=True)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)


@settings(max_examples=300, deadline=None)
@given(value=_json_values)
def test_render_then_walk_round_trips(value):
    def same(a, b):
        if type(a) is not type(b):
            return False
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(a, dict):
            return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
        return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))

    assert same(_value(python_literal(value)), value)
    as_json = json.loads(json.dumps(value))  # tuples become lists: what as_json writes
    assert same(_value(python_literal(value, as_json=True)), as_json)


# --------------------------------------------------------------------------- BFCL gold


_BFCL_EXEC = benchmarks_root() / "bfcl_v3_exec"  # the public set, where the benchmark readers look for it


def _bfcl_reference(node: ast.expr):
    """The gold reader's former walker (``ast.literal_eval`` plus top-level arithmetic): the oracle."""
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
    if isinstance(node, ast.BinOp) and type(node.op) in ops:
        return ops[type(node.op)](_bfcl_reference(node.left), _bfcl_reference(node.right))
    return ast.literal_eval(node)


@pytest.mark.skipif(not _BFCL_EXEC.is_dir(), reason="BFCL v3 exec files not available")
def test_every_bfcl_exec_gold_string_reads_as_before():
    n = 0
    for answers in sorted(_BFCL_EXEC.glob("*_answer.json")):
        for line in answers.read_text(encoding="utf-8").splitlines():
            for text in json.loads(line)["ground_truth"]:
                call = ast.parse(text.strip(), mode="eval").body
                if call.args:
                    continue  # positional: bound by schema order, covered in test_benchmark_readers
                got = parse_ground_truth_call(text).arguments
                expected = {kw.arg: _bfcl_reference(kw.value) for kw in call.keywords}
                assert repr(got) == repr(expected), text  # repr: tuples stay tuples, ints stay ints
                n += 1
    assert n > 400
