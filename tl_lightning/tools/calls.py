"""Parse model output into tool calls, and render calls back to text. Never ``eval``/``exec``.

Three surface formats are understood (``format=``):

- ``"python"``: ``name(a=1, b="x")``, dotted names (``math.factorial(n=5)``), a list/tuple of calls
  ``[f(a=1), g(b=2)]``, or several call statements on separate lines. Parsed with :func:`ast.parse`;
  argument values go through :func:`tl_lightning.tools.literals.literal_value`, which accepts only
  literals (and number arithmetic such as ``1/6``, which BFCL gold uses), so nothing in the text is
  ever executed.
- ``"json"``: ``{"name": ..., "arguments": {...}}`` (``arguments`` may also be a JSON string, and
  ``parameters`` is accepted as its alias; OpenAI's ``{"type": "function", "function": {...}}`` too),
  a list of those, or one or more Qwen-style ``<tool_call>...</tool_call>`` blocks.
- ``"react"``: ``Thought: ...`` / ``Action: NAME`` / ``Action Input: {json}`` pairs (RoTBench,
  ToolEyes, ToolAlpaca), stopping at the first ``Observation:``. The Action Input must be a JSON
  object (a Python dict literal is accepted as a fallback); anything else is an error.
- ``"auto"``: ``<tool_call>`` blocks -> json; an ``Action:`` line -> react; text starting with
  ``{`` or ``[{`` -> json then python; otherwise python then json.

:func:`parse_calls` never raises, and its cost is bounded by the length of its input: text over
the budget (``max_chars``, default :data:`MAX_TEXT_CHARS`) is refused before any work, fences,
``<tool_call>`` blocks and ``Action:`` lines are found by scans without backtracking, and many calls
are sliced out of the text in one pass. Every failure (syntax, non-literal values, brackets nested
deeper than :data:`~tl_lightning.tools.literals.MAX_DEPTH`, values that JSON cannot hold such as
``inf``, tuple keys or integers over :data:`~tl_lightning.tools.literals.MAX_INT_DIGITS` digits,
recursion or memory errors) comes back as ``ParseResult.error`` with no calls, so one model output
is scored as a format error and never aborts a run.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tl_lightning.data.schema import ToolCall
from tl_lightning.tools.literals import MAX_DEPTH, check_value, literal_value, python_literal

__all__ = [
    "values_equal",
    "CALL_FORMATS",
    "MAX_TEXT_CHARS",
    "ParseResult",
    "format_call",
    "format_calls",
    "parse_calls",
]

#: Input budget in characters: longer texts are refused before any work. A call is a few hundred
#: characters and the configured generations stop at 256 tokens (a few KB). ``ast.parse`` costs about
#: 1-2 us per character of dense code (thousands of tiny calls), so this is the size at which the
#: worst input still parses in well under 50 ms; 64 KB would not (benchmarks/bench_parse.py).
MAX_TEXT_CHARS = 16_384

#: Formats :func:`format_call` renders; ``tool_call`` is JSON inside ``<tool_call>`` tags.
CALL_FORMATS = ("python", "json", "react", "tool_call")

# End-of-turn markers a decoder may leave in the text; they are never part of a call.
_END_MARKERS = ("</s>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "<eos>")
_FENCE_TAG = re.compile(r"[A-Za-z0-9_-]*")
_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
# Every pattern below is anchored at a line start and scans only blanks, so it costs O(line) at most.
_ACTION = re.compile(r"^[ \t]*Action[ \t]*:", re.MULTILINE)
_ACTION_INPUT = re.compile(r"^[ \t]*Action[ \t]+Input[ \t]*:[ \t]*", re.MULTILINE)
_OBSERVATION = re.compile(r"^[ \t]*Observation[ \t]*:", re.MULTILINE)
_THOUGHT = re.compile(r"Thought[ \t]*:[ \t]*")
_JSON_OR_LIST = re.compile(r"\{|\[\s*\{")
_BRACKET_TOKEN = re.compile(r"\\.|[\"'()\[\]{}]", re.DOTALL)
_NEWLINES = re.compile(rb"\r\n|\r|\n")
_DECODER = json.JSONDecoder()


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


class _ParseError(ValueError):
    pass


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


def _clean(text: str) -> str:
    """Strip blanks, trailing end-of-turn markers and one enclosing ```` ```lang ... ``` ```` fence."""
    text = text.strip()
    for marker in _END_MARKERS:
        if text.endswith(marker):
            text = text[: -len(marker)].rstrip()
    if len(text) >= 6 and text.startswith("```") and text.endswith("```"):
        # The language tag is the run of tag characters after the opening backticks (greedy, as
        # ``f(a=1)`` in "```f(a=1)```" once was read by a regex); it never reaches the closing fence.
        tag_end = _FENCE_TAG.match(text, 3).end()
        return text[tag_end:-3].strip()
    return text


# --------------------------------------------------------------------------- python


def _func_name(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise _ParseError("call target is not a (dotted) name")
    parts.append(node.id)
    return ".".join(reversed(parts))


class _Segments:
    """Source text of ast nodes. ``ast.get_source_segment`` re-splits the whole source for every node,
    which made 8,000 calls take a minute; this splits once. Offsets are UTF-8 byte columns, as in ast."""

    def __init__(self, source: str) -> None:
        self.data = source.encode("utf-8")
        self.line_starts = [0] + [m.end() for m in _NEWLINES.finditer(self.data)]

    def __call__(self, node: ast.expr) -> str:
        start = self.line_starts[node.lineno - 1] + node.col_offset
        end = self.line_starts[node.end_lineno - 1] + node.end_col_offset  # type: ignore[operator]
        return self.data[start:end].decode("utf-8")


def _call_from_node(node: ast.Call, segment: _Segments) -> ToolCall:
    name = _func_name(node.func)
    if node.args:
        raise _ParseError(f"call to {name!r} has positional arguments; keyword arguments are required")
    arguments: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise _ParseError(f"call to {name!r} uses '**' unpacking")
        arguments[kw.arg] = literal_value(kw.value)
    return ToolCall(name=name, arguments=arguments, raw=segment(node))


def _calls_from_expr(node: ast.AST, segment: _Segments) -> list[ToolCall]:
    if isinstance(node, ast.Call):
        return [_call_from_node(node, segment)]
    if isinstance(node, (ast.List, ast.Tuple)):
        if not node.elts:
            raise _ParseError("empty list of calls")
        if not all(isinstance(e, ast.Call) for e in node.elts):
            raise _ParseError("a list of calls may hold only calls")
        return [_call_from_node(e, segment) for e in node.elts]  # type: ignore[arg-type]
    raise _ParseError(f"expected a call, got {type(node).__name__}")


def _parse_python(text: str) -> tuple[list[ToolCall], str | None]:
    source = _clean(text)
    if not source:
        raise _ParseError("empty output")
    # exec mode admits several call statements ("f(a=1)\ng(b=2)"); parsing never runs anything.
    with warnings.catch_warnings():  # e.g. "invalid decimal literal" SyntaxWarnings on garbage
        warnings.simplefilter("ignore")
        tree = ast.parse(source, mode="exec")
    segment = _Segments(source)
    calls: list[ToolCall] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            raise _ParseError(f"expected call expressions, got a {type(stmt).__name__} statement")
        calls.extend(_calls_from_expr(stmt.value, segment))
    if not calls:
        raise _ParseError("no call found")
    return calls, None


# --------------------------------------------------------------------------- json


def _call_from_json(obj: Any, raw: str) -> ToolCall:
    if not isinstance(obj, dict):
        raise _ParseError(f"a JSON call must be an object, got {type(obj).__name__}")
    if "function" in obj and isinstance(obj["function"], dict) and "name" not in obj:
        obj = obj["function"]  # OpenAI {"type": "function", "function": {...}}
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _ParseError("a JSON call needs a non-empty string 'name'")
    check_value(name)
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as err:
            raise _ParseError(f"call to {name!r}: 'arguments' string is not JSON ({err})") from None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise _ParseError(f"call to {name!r}: 'arguments' must be an object, got {type(args).__name__}")
    check_value(args)
    return ToolCall(name=name.strip(), arguments=args, raw=raw)


def _json_calls(obj: Any, raw: str) -> list[ToolCall]:
    if isinstance(obj, list):
        if not obj:
            raise _ParseError("empty list of calls")
        return [_call_from_json(o, raw) for o in obj]
    return [_call_from_json(obj, raw)]


def _tool_call_blocks(body: str) -> Iterable[str]:
    """The text inside each ``<tool_call>`` block; an unclosed block runs to the end."""
    pos = body.find(_OPEN)
    while pos >= 0:
        start = pos + len(_OPEN)
        end = body.find(_CLOSE, start)
        if end < 0:
            yield body[start:]
            return
        yield body[start:end]
        pos = body.find(_OPEN, end + len(_CLOSE))


def _parse_json(text: str) -> tuple[list[ToolCall], str | None]:
    body = _clean(text)
    if _OPEN in body:
        thought = body[: body.index(_OPEN)].strip() or None
        calls: list[ToolCall] = []
        for block in _tool_call_blocks(body):
            block = _clean(block)
            if not block:
                raise _ParseError("empty <tool_call> block")
            obj, end = _DECODER.raw_decode(block)
            if block[end:].strip():
                raise _ParseError("text after the JSON inside a <tool_call> block")
            calls.extend(_json_calls(obj, block))
        return calls, thought
    if not body:
        raise _ParseError("empty output")
    try:
        obj = json.loads(body)
    except ValueError:
        # A call followed or preceded by prose: decode from the first object/list opener.
        starts = [i for i in (body.find("{"), body.find("[")) if i >= 0]
        if not starts:
            raise
        start = min(starts)
        obj, _ = _DECODER.raw_decode(body[start:])
        return _json_calls(obj, body[start:]), (body[:start].strip() or None)
    return _json_calls(obj, body), None


# --------------------------------------------------------------------------- react


def _action_input(text: str) -> Any:
    text = text.strip()
    if not text:
        raise _ParseError("empty Action Input")
    try:
        value, _ = _DECODER.raw_decode(text)
    except ValueError as err:
        # Models often write Python dicts (single quotes, True/None); accept a literal-only dict.
        end = text.find("\n")
        candidate = text if end < 0 else text[:end]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(candidate.strip(), mode="eval")
            value = literal_value(tree.body)
        except (SyntaxError, ValueError):
            raise _ParseError(f"Action Input is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise _ParseError(f"Action Input is not a JSON object (got {type(value).__name__})")
    if not all(isinstance(k, str) for k in value):
        raise _ParseError("Action Input keys must be strings")
    check_value(value)
    return value


def _parse_react(text: str) -> tuple[list[ToolCall], str | None]:
    body = text
    obs = _OBSERVATION.search(body)
    if obs:
        body = body[: obs.start()]
    actions = []  # (line start, line end, name) of each "Action: NAME" line
    for match in _ACTION.finditer(body):
        eol = body.find("\n", match.end())
        eol = len(body) if eol < 0 else eol
        actions.append((match.start(), eol, body[match.end() : eol]))
    if not actions:
        raise _ParseError("no 'Action:' line")
    # The thought runs from the first "Thought:" to the next Action line (or the end).
    thought = None
    head = _THOUGHT.search(body)
    if head:
        end = next((start for start, _, _ in actions if start >= head.end()), len(body))
        thought = body[head.end() : end].strip()
    calls: list[ToolCall] = []
    for i, (start, eol, name) in enumerate(actions):
        name = name.strip().strip("`").strip()
        if not name:
            raise _ParseError("empty Action name")
        segment_end = actions[i + 1][0] if i + 1 < len(actions) else len(body)
        segment = body[eol:segment_end]
        inp = _ACTION_INPUT.search(segment)
        if inp is None:
            raise _ParseError(f"Action {name!r} has no 'Action Input:'")
        args = _action_input(segment[inp.end() :])
        calls.append(ToolCall(name=name, arguments=args, raw=body[start:segment_end].strip()))
    return calls, thought


# --------------------------------------------------------------------------- entry point

_PARSERS = {"python": _parse_python, "json": _parse_json, "react": _parse_react}


def _auto_order(text: str) -> tuple[str, ...]:
    stripped = _clean(text)
    if _OPEN in stripped:
        return ("json",)
    if _ACTION.search(text):
        return ("react",)
    if _JSON_OR_LIST.match(stripped):
        return ("json", "python")
    return ("python", "json")


def parse_calls(text: str, format: str = "auto", max_chars: int = MAX_TEXT_CHARS) -> ParseResult:  # noqa: A002 - the agreed interface name
    """Parse ``text`` (one model output) as ``format`` ("auto", "python", "json" or "react").

    Never raises: failures come back as ``ParseResult(error=...)`` with no calls. Text longer than
    ``max_chars`` characters is an error without being read, which bounds the cost of every parse.
    """
    if not isinstance(text, str):
        return ParseResult(error=f"expected a string, got {type(text).__name__}")
    if format not in ("auto", *_PARSERS):
        return ParseResult(text=text[:max_chars], error=f"unknown call format {format!r}")
    if len(text) > max_chars:
        return ParseResult(text=text[:max_chars], error=f"output longer than {max_chars} characters")
    if _too_deep(text):
        return ParseResult(text=text, error=f"brackets nested deeper than {MAX_DEPTH}")
    order = _auto_order(text) if format == "auto" else (format,)
    first_error: str | None = None
    for fmt in order:
        try:
            calls, thought = _PARSERS[fmt](text)
        except (_ParseError, SyntaxError, ValueError, TypeError) as err:  # ValueError covers JSON + literals
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
    """
    if format == "python":
        args = ", ".join(f"{k}={python_literal(v)}" for k, v in call.arguments.items())
        return f"{call.name}({args})"
    if format == "json":
        return json.dumps(call.to_dict(), ensure_ascii=False)
    if format == "tool_call":
        return f"<tool_call>\n{json.dumps(call.to_dict(), ensure_ascii=False)}\n</tool_call>"
    if format == "react":
        text = f"Action: {call.name}\nAction Input: {json.dumps(call.arguments, ensure_ascii=False)}"
        return f"Thought: {thought}\n{text}" if thought is not None else text
    raise ValueError(f"unknown call format {format!r}; expected one of {CALL_FORMATS}")


def format_calls(calls: Sequence[ToolCall] | Iterable[ToolCall], format: str = "python", thought: str | None = None) -> str:  # noqa: A002
    """Render one step's calls: a single call as :func:`format_call`; several as ``[f(..), g(..)]``
    (python), a JSON list (json), one ``<tool_call>`` block each, or consecutive Action pairs (react)."""
    calls = list(calls)
    if len(calls) == 1:
        return format_call(calls[0], format, thought)
    if not calls:
        raise ValueError("no calls to render")
    if format == "python":
        return "[" + ", ".join(format_call(c, "python") for c in calls) + "]"
    if format == "json":
        return json.dumps([c.to_dict() for c in calls], ensure_ascii=False)
    if format == "tool_call":
        return "\n".join(format_call(c, "tool_call") for c in calls)
    if format == "react":
        body = "\n".join(format_call(c, "react") for c in calls)
        return f"Thought: {thought}\n{body}" if thought is not None else body
    raise ValueError(f"unknown call format {format!r}; expected one of {CALL_FORMATS}")


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
