"""The parser's bounded cost and JSON-only values: the pathological model outputs of issue 15.

Each input either made the old parser run for seconds to minutes (backtracking fence and block
regexes, one source split per call, Action lines with long blank runs) or made it accept a value
that a report, a scorer or the sandbox could not use (``999999**64`` products, a 4,000-digit hex
literal, ``1e308*10``, tuple keys). Time is CPU time with a generous bound: the real numbers are
in ``benchmarks/bench_parse.py``.
"""

from __future__ import annotations

import ast
import json
import random
import re
import time

import pytest

from tl_lightning.data.call_parsers import clean
from tl_lightning.data.calls import MAX_TEXT_CHARS, ParseResult, parse_calls
from tl_lightning.data.literals import MAX_INT_DIGITS

# A hang guard, not a speed target (benchmarks/bench_parse.py measures speed): the slowest input takes tens of
# ms on an idle machine and 0.55 s was seen under CI load; the old parser took 5 s to minutes on the hang families.
BOUND_S = 2.0


def _parse(text: str, fmt: str = "auto") -> tuple[ParseResult, float]:
    start = time.process_time()
    result = parse_calls(text, fmt)
    return result, time.process_time() - start


def _json_ready(result: ParseResult) -> bool:
    try:
        json.dumps([c.to_dict() for c in result.calls], ensure_ascii=False, allow_nan=False).encode("utf-8")
        str([c.arguments for c in result.calls])
    except (ValueError, TypeError):
        return False
    return True


# --------------------------------------------------------------------------- cost


HANGS = {
    # name: (text, format); each took > 1 s of CPU in the old parser (most: 5-25 s)
    "fence + 2,000 spaces": ("```" + " " * 2000 + "x", "python"),
    "fence + 1,500 newlines": ("```" + "\n" * 1500 + "x", "python"),
    "<tool_call> + 3,000 spaces": ("<tool_call>```" + " " * 3000 + "x", "json"),
    "<tool_call> + 1,500 newlines": ("<tool_call>```" + "\n" * 1500 + "x", "json"),
    "Action line + 16,000 spaces": ("Action: a" + " " * 16_000 + "b\nAction Input: {}", "react"),
    "fence + spaces at the budget": ("```" + " " * (MAX_TEXT_CHARS - 4) + "x", "auto"),
    "fence + newlines at the budget": ("```" + "\n" * (MAX_TEXT_CHARS - 4) + "x", "auto"),
    "<tool_call> repeated at the budget": ("<tool_call>" * (MAX_TEXT_CHARS // 11), "auto"),
}


@pytest.mark.parametrize("name", list(HANGS))
def test_inputs_that_hung_the_old_parser_are_bounded(name):
    text, fmt = HANGS[name]
    result, seconds = _parse(text, fmt)
    assert seconds < BOUND_S, f"{name}: {seconds:.2f} s"
    assert (result.error is None) == bool(result.calls)


def test_many_calls_parse_in_one_pass():
    text = "f(a=1)\n" * (MAX_TEXT_CHARS // 7)  # 2,340 calls; the old parser took ~5 s here, a minute at 8,000
    result, seconds = _parse(text, "python")
    assert seconds < BOUND_S
    assert result.ok and len(result.calls) == MAX_TEXT_CHARS // 7
    assert {c.raw for c in result.calls} == {"f(a=1)"}


def test_many_calls_in_one_list_keep_their_own_text():
    text = "[" + ", ".join(f"f(a={i}, s='é{i}')" for i in range(800)) + "]"
    result, seconds = _parse(text, "python")
    assert seconds < BOUND_S and result.ok
    assert [c.raw for c in result.calls] == [f"f(a={i}, s='é{i}')" for i in range(800)]


def test_text_over_the_budget_is_refused_unread():
    ninety_nine_kb = '{"name": "f", "arguments": {"a": "' + "x" * 99_000 + '"}}'  # valid JSON: the old parser accepted it
    result, seconds = _parse(ninety_nine_kb)
    assert not result.ok and f"longer than {MAX_TEXT_CHARS} characters" in result.error
    assert seconds < 0.01
    assert parse_calls("f(a=1)", max_chars=5).error == "output longer than 5 characters"
    assert parse_calls(ninety_nine_kb, max_chars=100_000).ok  # the budget is an argument


# --------------------------------------------------------------------------- values JSON cannot hold


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("f(a=999999**64)", "'**' is not evaluated"),
        ("f(a=" + "*".join(["999999**64"] * 64) + ")", "'**' is not evaluated"),
        ("f(a=((999999**64*999999**64)*(999999**64*999999**64)))", "'**' is not evaluated"),
        ("f(a=" + "*".join(["9" * 600] * 8) + ")", f"{MAX_INT_DIGITS}-digit cap"),  # products without **
        ("f(a=0x" + "f" * 4000 + ")", f"{MAX_INT_DIGITS}-digit cap"),
        ("f(a=-0x" + "f" * 4000 + ")", f"{MAX_INT_DIGITS}-digit cap"),
        ("f(a=" + "9" * 700 + ")", f"{MAX_INT_DIGITS}-digit cap"),
        ("f(a=1e308*10)", "inf is not a finite number"),
        ("f(a=-1e308-1e308)", "-inf is not a finite number"),
        ("f(a=1e309)", "inf is not a finite number"),
        ("f(a={(1, 2): 3})", "dict key (1, 2) is a tuple"),
        ("f(a=[{'k': {(1,): 0}}])", "dict key (1,) is a tuple"),
        ("f(a='\\ud800')", "lone surrogate"),  # the escape: a raw surrogate is already a syntax error
        ("Action: f\nAction Input: {'a': 1e308*10}", "not valid JSON"),
        ('{"name": "f", "arguments": {"a": ' + "9" * 1000 + "}}", f"{MAX_INT_DIGITS}-digit cap"),
        ('{"name": "f", "arguments": {"a": "\\ud800"}}', "lone surrogate"),
        ('{"name": "\\udfff", "arguments": {}}', "lone surrogate"),
        ('{"name": "f", "arguments": {"a": [1e999]}}', "NaN/Infinity"),
        ('Action: f\nAction Input: {"a": ' + "1" * 700 + "}", f"{MAX_INT_DIGITS}-digit cap"),
    ],
    ids=lambda v: v if len(v) < 40 else f"{v[:28]}...({len(v)} chars)",
)
def test_values_json_cannot_hold_are_parse_errors_naming_them(text, fragment):
    result = parse_calls(text)
    assert not result.ok and result.calls == []
    assert fragment in result.error
    assert _json_ready(result)


def test_the_largest_accepted_values_are_json_ready():
    big = int("9" * MAX_INT_DIGITS)
    result = parse_calls(f"f(a={big}, b=-{big}, c=1e308, d={{1: (2, 3)}}, e={'x' * 1000!r})")
    assert result.ok and result.calls[0].arguments["a"] == big
    assert _json_ready(result)
    assert parse_calls(f"f(a={big}+1)").error.endswith(f"over the {MAX_INT_DIGITS}-digit cap")


# --------------------------------------------------------------------------- every family at the budget, every format


def _fill(head: str, unit: str, tail: str = "") -> str:
    return head + unit * ((MAX_TEXT_CHARS - len(head) - len(tail)) // len(unit)) + tail


FAMILIES = {
    "many calls, lines": _fill("", "f(a=1)\n"),
    "many calls, one list": _fill("[", "f(a=1), ", "]"),
    "<tool_call> blocks": _fill("", '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>\n'),
    "many actions": _fill("", 'Action: f\nAction Input: {"a": 1}\n'),
    "Thought repeated": _fill("", "Thought: "),
    "newline run": _fill("f(a=1", "\n"),
    "** products": _fill("f(a=", "999999**64*", "1)"),
    "big-int products": _fill("f(a=", "9" * 600 + "*", "1)"),
    "1e308 products": _fill("f(a=", "1e308*", "10)"),
    "hex digits": _fill("f(a=0x", "f", ")"),
    "tuple keys": _fill("f(a={", "(1, 2): 3, ", "})"),
    "open brackets": "(" * MAX_TEXT_CHARS,
    "call chain": _fill("f(a=", "()", ")"),
    "unary run": _fill("f(a=", "-", "1)"),
    "addition chain": _fill("f(a=", "1+", "1)"),
    "quotes": "'" * MAX_TEXT_CHARS,
    "JSON deep in a string": _fill('{"name": "f", "arguments": "', "[", '"}'),
}


@pytest.mark.parametrize("fmt", ["auto", "python", "json", "react"])
def test_every_family_at_the_budget_is_bounded_and_json_ready(fmt):
    for name, text in FAMILIES.items():
        assert len(text) <= MAX_TEXT_CHARS
        result, seconds = _parse(text, fmt)
        assert seconds < BOUND_S, f"{name} as {fmt}: {seconds:.2f} s"
        assert (result.error is None) == bool(result.calls), name
        assert _json_ready(result), name


# --------------------------------------------------------------------------- same behaviour as before on ordinary text

# The old extraction regexes: the new scans must find exactly what they found, without their cost.
_OLD_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_OLD_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


def _old_clean(text: str) -> str:
    text = text.strip()
    for marker in ("</s>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "<eos>"):
        if text.endswith(marker):
            text = text[: -len(marker)].rstrip()
    fenced = _OLD_FENCE.match(text)
    return fenced.group(1).strip() if fenced else text


def _short_texts(seed: int, n: int, alphabet: list[str]) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(n)]


def test_fence_stripping_matches_the_old_regex():
    alphabet = ["`", "```", " ", "\n", "\t", "a", "py", "-", "_", "9", "(", "x", "</s>", "é", "\u2028"]
    for text in _short_texts(0, 20_000, alphabet):
        assert clean(text) == _old_clean(text), repr(text)


def test_tool_call_blocks_match_the_old_regex():
    alphabet = ["<tool_call>", "</tool_call>", "{}", " ", "\n", "x", "```", '{"name": "f"}']
    for text in _short_texts(1, 5_000, alphabet):
        body = _old_clean(text)
        new, old = parse_calls(text, "json"), None
        if "<tool_call>" in body:
            blocks = [_old_clean(b) for b in _OLD_BLOCK.findall(body)]
            old = [b for b in blocks if b]
            if len(old) == len(blocks) and new.ok:  # every block parsed: one call per block here
                assert [c.raw for c in new.calls] == old, repr(text)


def test_react_lines_and_thought_match_the_old_regexes():
    old_action = re.compile(r"^[ \t]*Action[ \t]*:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
    old_thought = re.compile(r"Thought[ \t]*:[ \t]*(.*?)(?=^[ \t]*Action[ \t]*:|\Z)", re.DOTALL | re.MULTILINE)
    alphabet = ["Action:", "Action :", "Action Input: {}", "Thought:", " ", "\t", "\n", "\r", "f", "`g`", "x y", "Observation:"]
    for text in _short_texts(2, 20_000, alphabet):
        result = parse_calls(text, "react")
        body = re.split(r"(?m)^[ \t]*Observation[ \t]*:", text)[0]
        if result.ok:
            assert [c.name for c in result.calls] == [m.group(1).strip().strip("`").strip() for m in old_action.finditer(body)]
            match = old_thought.search(body)
            assert result.thought == (match.group(1).strip() if match else None), repr(text)


def test_call_text_matches_ast_get_source_segment():
    pieces = ["f(a=1)", "g.h(b='é€😀')", "[k(x=1), k(y=2)]", "\n", "\r\n", "\r", " ", "\t", "\f", "# c\n", ";"]
    rng = random.Random(3)
    checked = 0
    for _ in range(3_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        result = parse_calls(text, "python")
        if not result.ok:
            continue
        source = clean(text)
        nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call)]
        nodes.sort(key=lambda n: (n.lineno, n.col_offset))
        assert [c.raw for c in result.calls] == [ast.get_source_segment(source, n) for n in nodes], repr(text)
        checked += 1
    assert checked > 500
