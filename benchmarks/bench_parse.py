"""Worst-case parse time at the input budget, per format, against a normal output of the same size.

    python benchmarks/bench_parse.py                  # budget = MAX_TEXT_CHARS, best of 5 runs each
    python benchmarks/bench_parse.py --size 65536 --repeat 3   # why the budget is not 64 KB

Each pathological family (the inputs that made the old parser hang or accept values JSON cannot
hold: backtick fences with runs of blanks, newline runs, ``<tool_call>`` blocks, thousands of calls,
``999999**64`` products, a 4,000-digit hex literal, ``1e308*10``, tuple keys, bracket bombs, ...) is
grown to the budget and parsed in every format. Per format the script prints the slowest family,
the time of a normal, valid output of the same size in that format (many ordinary calls), and
their ratio; the target is a worst case under 50 ms. ``tool_call`` is parsed as ``json`` (the
format that reads ``<tool_call>`` blocks). Every timing is the CPU time of the parse
(``time.process_time``), best of ``--repeat`` runs, so other load on the machine inflates it as little
as possible. One output over the budget (99 KB) is timed too: it is refused before any work.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from tl_lightning.data.calls import MAX_TEXT_CHARS, format_call, parse_calls
from tl_lightning.data.schema import ToolCall

FORMATS = ("python", "json", "react", "tool_call", "auto")


def _fill(size: int, head: str, unit: str, tail: str = "") -> str:
    """``head + unit * k + tail`` with k as large as fits in ``size`` characters."""
    k = max(1, (size - len(head) - len(tail)) // len(unit))
    return head + unit * k + tail


def pathological(size: int) -> dict[str, str]:
    """Family name -> one input of at most ``size`` characters (the issue-15 families and kin)."""
    n = size - 16
    return {
        "fence + spaces": _fill(size, "```", " ", "x"),
        "fence + newlines": _fill(size, "```", "\n", "x"),
        "fence + newlines, closed": _fill(size, "```", "\n", "f(a=1)```"),
        "newline run after call": _fill(size, "f(a=1", "\n"),
        "newline run before call": _fill(size, "", "\n", "f(a=1)"),
        "<tool_call> + spaces": _fill(size, "<tool_call>```", " ", "x"),
        "<tool_call> repeated": _fill(size, "", "<tool_call>"),
        "<tool_call> blocks, valid": _fill(size, "", '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>\n'),
        "many calls, lines": _fill(size, "", "f(a=1)\n"),
        "many calls, one list": _fill(size, "[", "f(a=1), ", "]"),
        "999999**64 products": _fill(size, "f(a=", "999999**64*", "1)"),
        "999999**64 balanced": "f(a=" + "(" * 6 + "*".join(["999999**64"] * 2) + ")" * 6 + ")",
        "big-int products": _fill(size, "f(a=", "9" * 600 + "*", "1)"),
        "hex literal": _fill(size, "f(a=0x", "f", ")"),
        "1e308*10 chain": _fill(size, "f(a=", "1e308*", "10)"),
        "tuple keys": _fill(size, "f(a={", "(1, 2): 3, ", "})"),
        "tuple keys, react": _fill(size, "Action: f\nAction Input: {", "(1, 2): 3, ", "}"),
        "JSON NaN array": _fill(size, '{"name": "f", "arguments": {"a": [', "NaN, ", "1]}}"),
        "JSON 4000-digit ints": _fill(size, '{"name": "f", "arguments": {"a": [', "9" * 4000 + ", ", "1]}}"),
        "Action + spaces": _fill(size, "Action: a", " ", "b\nAction Input: {}"),
        "Action Input + spaces": _fill(size, "Action: f\nAction", " ", "x"),
        "Thought repeated": _fill(size, "", "Thought: "),
        "many actions": _fill(size, "", 'Action: f\nAction Input: {"a": 1}\n'),
        "open brackets": "(" * n,
        "bracket pairs": _fill(size, "f(a=", "()", ")"),
        "quotes": "'" * n,
        "backslashes in string": _fill(size, 'f(a="', "\\", '")'),
        "unary minus run": _fill(size, "f(a=", "-", "1)"),
        "addition chain": _fill(size, "f(a=", "1+", "1)"),
        "JSON deep in a string": '{"name": "f", "arguments": "' + "[" * (n // 2) + '"}',
    }


def normal(size: int, fmt: str) -> str:
    """A valid output of about ``size`` characters in ``fmt``: ordinary calls, one after another."""
    call = ToolCall("get_weather", {"city": "Paris", "days": 3, "units": "metric", "note": "an ordinary request " * 4})
    render = {"python": "python", "auto": "python", "json": "json", "tool_call": "tool_call", "react": "react"}[fmt]
    if fmt == "json":  # a JSON list of calls
        return _fill(size, "[", format_call(call, "json") + ", ", format_call(call, "json") + "]")
    return _fill(size, "", format_call(call, render) + "\n")


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=MAX_TEXT_CHARS, help="input size in characters (default: the budget); a larger size raises the budget to it")
    ap.add_argument("--repeat", type=int, default=5, help="runs per input; the best is reported")
    args = ap.parse_args()

    budget = max(args.size, MAX_TEXT_CHARS)
    families = pathological(args.size)
    print(f"input size {args.size:,} chars (budget {budget:,}); CPU time, best of {args.repeat} runs; target: worst case < 50 ms\n")
    print(f"{'format':10s} {'normal (ms)':>12s} {'worst (ms)':>11s} {'ratio':>7s}  worst family")
    overall = 0.0
    for fmt in FORMATS:
        parse_as = "json" if fmt == "tool_call" else fmt
        text = normal(args.size, fmt)
        assert parse_calls(text, parse_as, budget).ok, f"the normal {fmt} output does not parse"
        base = best_time(lambda t=text, f=parse_as: parse_calls(t, f, budget), args.repeat)
        worst, worst_name = 0.0, ""
        for name, bad in families.items():
            t = best_time(lambda b=bad, f=parse_as: parse_calls(b, f, budget), args.repeat)
            if t > worst:
                worst, worst_name = t, name
        overall = max(overall, worst)
        print(f"{fmt:10s} {base * 1e3:12.2f} {worst * 1e3:11.2f} {worst / base:7.2f}  {worst_name}")
    over = "x" * 99_000
    refused = best_time(lambda: parse_calls(over), args.repeat)
    print(f"\n99 KB output (over the budget): {refused * 1e3:.3f} ms, error: {parse_calls(over).error}")
    print(f"worst case over all formats: {overall * 1e3:.2f} ms -> {'OK' if overall < 0.05 else 'OVER'} the 50 ms target")


if __name__ == "__main__":
    main()
