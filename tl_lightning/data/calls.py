"""Parse model output into tool calls, and render calls back to text. Never ``eval``/``exec``.

Three surface formats are understood (``format=``):

- ``"python"``: ``name(a=1, b="x")``, dotted names (``math.factorial(n=5)``), a list/tuple of calls
  ``[f(a=1), g(b=2)]``, or several call statements on separate lines. Parsed with :func:`ast.parse`;
  argument values go through :func:`tl_lightning.data.literals.literal_value`, which accepts only
  literals (and number arithmetic such as ``1/6``, which BFCL gold uses), so nothing in the text is
  ever executed.
- ``"json"``: ``{"name": ..., "arguments": {...}}`` (``arguments`` may also be a JSON string, and
  ``parameters`` is accepted as its alias; OpenAI's ``{"type": "function", "function": {...}}`` too),
  a list of those, or one or more Qwen-style ``<tool_call>...</tool_call>`` blocks.
- ``"react"``: ``Thought: ...`` / ``Action: NAME`` / ``Action Input: {json}`` pairs (RoTBench,
  ToolEyes, ToolAlpaca), stopping at the first ``Observation:``. The Action Input must be a JSON
  object (a Python dict literal is accepted as a fallback); anything else is an error.
- The native formats of the model families (:mod:`tl_lightning.data.call_parsers`; a reply without
  call markup is the final answer, ``finish(answer=...)``):
  ``"hermes"`` (Qwen2.5, Qwen3, Hermes: ``<tool_call>`` JSON blocks after optional ``<think>`` reasoning),
  ``"llama3"`` (``{"name": ..., "parameters": {...}}``, ``<|python_tag|>``, ``;``-separated calls) and
  ``"mistral"`` (``[TOOL_CALLS] [{"name": ..., "arguments": ..., "id": ...}]``, ids kept on the calls).
- ``"auto"``: ``[TOOL_CALLS]`` -> mistral; a leading ``<|python_tag|>`` -> llama3; ``<tool_call>`` blocks
  -> json; an ``Action:`` line -> react; text starting with ``{`` or ``[{`` -> json then python;
  otherwise python then json.

:func:`parse_calls` never raises, and its cost is bounded by the length of its input: text over
the budget (``max_chars``, default :data:`MAX_TEXT_CHARS`) is refused before any work, fences,
``<tool_call>`` blocks and ``Action:`` lines are found by scans without backtracking, and many calls
are sliced out of the text in one pass (the parsers live in :mod:`tl_lightning.data.call_parsers`,
the value rules in :mod:`tl_lightning.data.literals`). Every failure (syntax, non-literal values, brackets nested
deeper than :data:`~tl_lightning.data.literals.MAX_DEPTH`, values that JSON cannot hold such as
``inf``, tuple keys or integers over :data:`~tl_lightning.data.literals.MAX_INT_DIGITS` digits,
recursion or memory errors) comes back as ``ParseResult.error`` with no calls, so one model output
is scored as a format error and never aborts a run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tl_lightning.data.call_parsers import PARSERS, auto_order
from tl_lightning.data.literals import MAX_DEPTH, python_literal
from tl_lightning.data.schema import FINISH_TOOL, ToolCall

__all__ = [
    "values_equal",
    "CALL_FORMATS",
    "MAX_TEXT_CHARS",
    "NATIVE_FORMATS",
    "ParseResult",
    "format_call",
    "format_calls",
    "parse_calls",
    "readback_problem",
]

#: Input budget in characters: longer texts are refused before any work. A call is a few hundred
#: characters and the configured generations stop at 256 tokens (a few KB). ``ast.parse`` costs about
#: 1-2 us per character of dense code (thousands of tiny calls), so this is the size at which the
#: worst input still parses in well under 50 ms; 64 KB would not (benchmarks/bench_parse.py).
MAX_TEXT_CHARS = 16_384

#: Formats :func:`format_call` renders; ``tool_call`` is JSON inside ``<tool_call>`` tags.
CALL_FORMATS = ("python", "json", "react", "tool_call", "hermes", "llama3", "mistral")

#: The native formats, whose final answer is plain text rather than a ``finish`` call.
NATIVE_FORMATS = ("hermes", "llama3", "mistral")

# A backslash and the character it escapes, or one quote or bracket: what the depth guard looks at.
_BRACKET_TOKEN = re.compile(r"\\.|[\"'()\[\]{}]", re.DOTALL)


@dataclass
class ParseResult:
    """What :func:`parse_calls` found in one model output.

    - ``calls``: the parsed calls, in output order (empty when ``error`` is set). Their argument
      values are JSON values (tuples allowed), so ``json.dumps(..., allow_nan=False)`` never fails.
    - ``error``: why nothing usable was found (None on success). A ReAct ``Action Input`` that is
      valid JSON but not an object (a string, a list, a number) is an error too, which is how the
      RoTBench ``official`` scoring mode learns that the input was "non-dict".
    - ``thought``: the ReAct ``Thought:`` text (or text before a ``<tool_call>`` block), if any.
    - ``text``: the text that was parsed (kept so scorers can apply a benchmark's own extraction).
    - ``format``: the format that produced ``calls`` (on failure, the first one tried, whose error
      ``error`` reports).
    """

    calls: list[ToolCall] = field(default_factory=list)
    error: str | None = None
    thought: str | None = None
    text: str = ""
    format: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and len(self.calls) > 0


# --------------------------------------------------------------------------- guards


def _too_deep(text: str) -> bool:
    """Whether brackets outside quoted strings nest deeper than MAX_DEPTH (a backslash escapes the
    next character inside quotes only). Jumps from bracket to bracket instead of visiting every char."""
    if sum(text.count(c) for c in "([{") <= MAX_DEPTH:
        return False
    depth = 0
    quote: str | None = None
    for match in _BRACKET_TOKEN.finditer(text):
        ch = match.group()
        if quote is not None:
            if ch == quote:
                quote = None
            continue
        ch = ch[-1]  # outside quotes a backslash escapes nothing
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return False


# --------------------------------------------------------------------------- entry point


def parse_calls(text: str, format: str = "auto", max_chars: int = MAX_TEXT_CHARS) -> ParseResult:  # noqa: A002 - the agreed interface name
    """Parse ``text`` (one model output) as ``format`` ("auto" or a key of ``PARSERS``: "python", "json",
    "react", "hermes", "llama3", "mistral").

    Never raises: failures come back as ``ParseResult(error=...)`` with no calls. Text longer than
    ``max_chars`` characters is an error without being read, which bounds the cost of every parse.
    """
    if not isinstance(text, str):
        return ParseResult(error=f"expected a string, got {type(text).__name__}")
    if format not in ("auto", *PARSERS):
        return ParseResult(text=text[:max_chars], error=f"unknown call format {format!r}")
    if len(text) > max_chars:
        return ParseResult(text=text[:max_chars], error=f"output longer than {max_chars} characters")
    if _too_deep(text):
        return ParseResult(text=text, error=f"brackets nested deeper than {MAX_DEPTH}")
    order = auto_order(text) if format == "auto" else (format,)
    first_error: str | None = None
    for fmt in order:
        try:
            calls, thought = PARSERS[fmt](text)
        except (SyntaxError, ValueError, TypeError) as err:  # ValueError: JSON, literals, the parsers' own
            message = f"{fmt}: {str(err)[:300]}".strip()
        except (RecursionError, MemoryError) as err:
            message = f"{fmt}: input too complex ({type(err).__name__})"
        else:
            return ParseResult(calls=calls, thought=thought, text=text, format=fmt)
        first_error = first_error or message
    return ParseResult(error=first_error, text=text, format=order[0])


# --------------------------------------------------------------------------- rendering


def format_call(call: ToolCall, format: str = "python", thought: str | None = None) -> str:  # noqa: A002
    """Render one call as text that :func:`parse_calls` reads back to an equal call.

    ``python``: ``name(a=1, b="x")``; ``json``: ``{"name": ..., "arguments": {...}}``;
    ``tool_call``: the JSON inside ``<tool_call>`` tags; ``react``: ``Action: name`` /
    ``Action Input: {json}``, preceded by ``Thought: ...`` when ``thought`` is given.
    The native formats write what the family's model writes: ``hermes`` a ``<tool_call>`` block,
    ``llama3`` ``{"name": ..., "parameters": {...}}``, ``mistral`` ``[TOOL_CALLS] [{...}]``; a
    ``finish`` call is its answer as plain text.
    """
    if format in NATIVE_FORMATS and call.name == FINISH_TOOL:
        return str(call.arguments.get("answer", ""))
    if format == "python":
        args = ", ".join(f"{k}={python_literal(v)}" for k, v in call.arguments.items())
        return f"{call.name}({args})"
    if format == "json":
        return json.dumps(call.to_dict(), ensure_ascii=False)
    if format in ("tool_call", "hermes"):
        return f"<tool_call>\n{json.dumps(call.to_dict(), ensure_ascii=False)}\n</tool_call>"
    if format == "llama3":
        return json.dumps({"name": call.name, "parameters": call.arguments}, ensure_ascii=False)
    if format == "mistral":
        return "[TOOL_CALLS] " + json.dumps([call.to_dict()], ensure_ascii=False)
    if format == "react":
        text = f"Action: {call.name}\nAction Input: {json.dumps(call.arguments, ensure_ascii=False)}"
        return f"Thought: {thought}\n{text}" if thought is not None else text
    raise ValueError(f"unknown call format {format!r}; expected one of {CALL_FORMATS}")


def format_calls(calls: Sequence[ToolCall] | Iterable[ToolCall], format: str = "python", thought: str | None = None) -> str:  # noqa: A002
    """Render one step's calls: a single call as :func:`format_call`; several as ``[f(..), g(..)]``
    (python), a JSON list (json), one ``<tool_call>`` block each (tool_call, hermes), objects joined by
    ``; `` (llama3), one ``[TOOL_CALLS]`` list (mistral), or consecutive Action pairs (react)."""
    calls = list(calls)
    if len(calls) == 1:
        return format_call(calls[0], format, thought)
    if not calls:
        raise ValueError("no calls to render")
    if format == "python":
        return "[" + ", ".join(format_call(c, "python") for c in calls) + "]"
    if format == "json":
        return json.dumps([c.to_dict() for c in calls], ensure_ascii=False)
    if format in ("tool_call", "hermes"):
        return "\n".join(format_call(c, "tool_call") for c in calls)
    if format == "llama3":
        return "; ".join(format_call(c, "llama3") for c in calls)
    if format == "mistral":
        return "[TOOL_CALLS] " + json.dumps([c.to_dict() for c in calls], ensure_ascii=False)
    if format == "react":
        body = "\n".join(format_call(c, "react") for c in calls)
        return f"Thought: {thought}\n{body}" if thought is not None else body
    raise ValueError(f"unknown call format {format!r}; expected one of {CALL_FORMATS}")


def readback_problem(call: ToolCall, format: str) -> str | None:  # noqa: A002
    """Why ``call`` written by :func:`format_call` in ``format`` does not parse back to a call with the same name
    and argument names; None when it does. Python, for one, cannot write ``get-weather`` or an argument ``class``."""
    text = format_call(ToolCall(call.name, dict.fromkeys(call.arguments, 0)), format)
    parsed = parse_calls(text, "json" if format == "tool_call" else format)
    if not parsed.ok:
        return f"{format} writes it as {text[:80]!r}, which does not parse ({parsed.error})"
    got = [(c.name, list(c.arguments)) for c in parsed.calls]
    if got != [(call.name, list(call.arguments))]:
        return f"{format} writes it as {text[:80]!r}, which reads back as {got[0][0]!r}"
    return None


def values_equal(a: Any, b: Any) -> bool:
    """JSON-semantics equality: bool only equals bool, numbers compare numerically, list == tuple
    element-wise, dicts by keys and values, everything else with ``==``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    return a == b
