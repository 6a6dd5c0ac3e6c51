"""Parse model output into tool calls, and render calls back to text. Never ``eval``/``exec``.

Three surface formats are understood (``format=``):

- ``"python"``: ``name(a=1, b="x")``, dotted names (``math.factorial(n=5)``), a list/tuple of calls
  ``[f(a=1), g(b=2)]``, or several call statements on separate lines. Parsed with :func:`ast.parse`
  and a walk that accepts only literal nodes (constants, lists, tuples, dicts, sets, unary +/-,
  the JSON words ``true``/``false``/``null``, and arithmetic between number literals such as
  ``1/6``, which BFCL gold uses, with bounded exponents); anything else (a variable, a nested call, an
  attribute access, an operator) is an error, so nothing in the text is ever executed.
- ``"json"``: ``{"name": ..., "arguments": {...}}`` (``arguments`` may also be a JSON string, and
  ``parameters`` is accepted as its alias; OpenAI's ``{"type": "function", "function": {...}}`` too),
  a list of those, or one or more Qwen-style ``<tool_call>...</tool_call>`` blocks.
- ``"react"``: ``Thought: ...`` / ``Action: NAME`` / ``Action Input: {json}`` pairs (RoTBench,
  ToolEyes, ToolAlpaca), stopping at the first ``Observation:``. The Action Input must be a JSON
  object (a Python dict literal is accepted as a fallback); anything else is an error.
- ``"auto"``: ``<tool_call>`` blocks -> json; an ``Action:`` line -> react; text starting with
  ``{`` or ``[{`` -> json then python; otherwise python then json.

:func:`parse_calls` never raises: every failure (syntax, non-literal values, over-long text,
nesting deeper than :data:`MAX_DEPTH`, integers beyond Python's int-string limit, recursion or
memory errors) comes back as ``ParseResult.error`` with no calls.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tl_lightning.data.schema import ToolCall

__all__ = [
    "values_equal",
    "CALL_FORMATS",
    "MAX_DEPTH",
    "MAX_TEXT_CHARS",
    "ParseResult",
    "format_call",
    "format_calls",
    "parse_calls",
]

#: Longer texts are rejected outright (a generation this long is not a call; parsing it costs time).
MAX_TEXT_CHARS = 100_000
#: Deepest bracket nesting accepted (JSON and ast both recurse per level).
MAX_DEPTH = 64

CallFormat = Literal["python", "json", "react"]
#: Formats :func:`format_call` renders; ``tool_call`` is JSON inside ``<tool_call>`` tags.
CALL_FORMATS = ("python", "json", "react", "tool_call")

# End-of-turn markers a decoder may leave in the text; they are never part of a call.
_END_MARKERS = ("</s>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>", "<eos>")
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_ACTION = re.compile(r"^[ \t]*Action[ \t]*:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_ACTION_INPUT = re.compile(r"^[ \t]*Action[ \t]+Input[ \t]*:[ \t]*", re.MULTILINE)
_OBSERVATION = re.compile(r"^[ \t]*Observation[ \t]*:", re.MULTILINE)
_THOUGHT = re.compile(r"Thought[ \t]*:[ \t]*(.*?)(?=^[ \t]*Action[ \t]*:|\Z)", re.DOTALL | re.MULTILINE)
_JSON_WORDS = {"true": True, "false": False, "null": None}


@dataclass
class ParseResult:
    """What :func:`parse_calls` found in one model output.

    - ``calls``: the parsed calls, in output order (empty when ``error`` is set).
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


def _max_depth(text: str) -> int:
    """Max bracket depth (stopping once past MAX_DEPTH), ignoring brackets inside quoted strings."""
    depth = best = 0
    quote: str | None = None
    escaped = False
    for ch in text:
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                return depth  # enough to reject; no need to scan a 100k-char bracket bomb
            best = max(best, depth)
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return best


def _clean(text: str) -> str:
    text = text.strip()
    for marker in _END_MARKERS:
        if text.endswith(marker):
            text = text[: -len(marker)].rstrip()
    fenced = _FENCE.match(text)
    return fenced.group(1).strip() if fenced else text


# --------------------------------------------------------------------------- python


def _literal(node: ast.AST, depth: int = 0) -> Any:
    """Value of a literal-only expression node; raises _ParseError for anything else."""
    if depth > MAX_DEPTH:
        raise _ParseError("value nested too deeply")
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (str, int, float, bool)) or node.value is None:
            return node.value
        raise _ParseError(f"unsupported constant {type(node.value).__name__}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal(node.operand, depth + 1)
        if isinstance(inner, bool) or not isinstance(inner, (int, float)):
            raise _ParseError("unary sign on a non-number")
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _arithmetic(node, depth)
    if isinstance(node, ast.List):
        return [_literal(e, depth + 1) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, depth + 1) for e in node.elts)
    if isinstance(node, ast.Set):
        return [_literal(e, depth + 1) for e in node.elts]  # sets are not JSON; keep source order
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                raise _ParseError("'**' unpacking in a dict is not a literal")
            key = _literal(k, depth + 1)
            if isinstance(key, (list, dict)):
                raise _ParseError("unhashable dict key")
            out[key] = _literal(v, depth + 1)
        return out
    if isinstance(node, ast.Name) and node.id in _JSON_WORDS:
        return _JSON_WORDS[node.id]
    if isinstance(node, ast.Name):
        raise _ParseError(f"variable {node.id!r} is not a literal value")
    if isinstance(node, ast.Call):
        raise _ParseError("nested calls are not literal values")
    raise _ParseError(f"{type(node).__name__} is not a literal value")


_ARITHMETIC = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
}


def _arithmetic(node: ast.BinOp, depth: int) -> int | float:
    """Constant folding of number literals (BFCL gold writes ``p=1/6``); no names, no calls."""
    left, right = _literal(node.left, depth + 1), _literal(node.right, depth + 1)
    for x in (left, right):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise _ParseError("arithmetic on a non-number")
    if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
        raise _ParseError("exponentiation too large")  # 9**9**9 would hang the parser
    try:
        value = _ARITHMETIC[type(node.op)](left, right)
    except (ZeroDivisionError, OverflowError) as err:
        raise _ParseError(f"arithmetic error: {err}") from None
    if isinstance(value, complex):
        raise _ParseError("arithmetic produced a complex number")
    return value


def _func_name(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise _ParseError("call target is not a (dotted) name")
    parts.append(node.id)
    return ".".join(reversed(parts))


def _call_from_node(node: ast.Call, source: str) -> ToolCall:
    name = _func_name(node.func)
    if node.args:
        raise _ParseError(f"call to {name!r} has positional arguments; keyword arguments are required")
    arguments: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise _ParseError(f"call to {name!r} uses '**' unpacking")
        arguments[kw.arg] = _literal(kw.value)
    raw = ast.get_source_segment(source, node)
    return ToolCall(name=name, arguments=arguments, raw=raw)


def _calls_from_expr(node: ast.AST, source: str) -> list[ToolCall]:
    if isinstance(node, ast.Call):
        return [_call_from_node(node, source)]
    if isinstance(node, (ast.List, ast.Tuple)):
        if not node.elts:
            raise _ParseError("empty list of calls")
        if not all(isinstance(e, ast.Call) for e in node.elts):
            raise _ParseError("a list of calls may hold only calls")
        return [_call_from_node(e, source) for e in node.elts]  # type: ignore[arg-type]
    raise _ParseError(f"expected a call, got {type(node).__name__}")


def _parse_python(text: str) -> tuple[list[ToolCall], str | None]:
    source = _clean(text)
    if not source:
        raise _ParseError("empty output")
    # exec mode admits several call statements ("f(a=1)\ng(b=2)"); parsing never runs anything.
    with warnings.catch_warnings():  # e.g. "invalid decimal literal" SyntaxWarnings on garbage
        warnings.simplefilter("ignore")
        tree = ast.parse(source, mode="exec")
    calls: list[ToolCall] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            raise _ParseError(f"expected call expressions, got a {type(stmt).__name__} statement")
        calls.extend(_calls_from_expr(stmt.value, source))
    if not calls:
        raise _ParseError("no call found")
    return calls, None


# --------------------------------------------------------------------------- json


def _check_json_value(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise _ParseError("value nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise _ParseError("NaN/Infinity is not a valid argument value")
    if isinstance(value, dict):
        for v in value.values():
            _check_json_value(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json_value(v, depth + 1)


def _call_from_json(obj: Any, raw: str) -> ToolCall:
    if not isinstance(obj, dict):
        raise _ParseError(f"a JSON call must be an object, got {type(obj).__name__}")
    if "function" in obj and isinstance(obj["function"], dict) and "name" not in obj:
        obj = obj["function"]  # OpenAI {"type": "function", "function": {...}}
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _ParseError("a JSON call needs a non-empty string 'name'")
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
    _check_json_value(args)
    return ToolCall(name=name.strip(), arguments=args, raw=raw)


def _json_calls(obj: Any, raw: str) -> list[ToolCall]:
    if isinstance(obj, list):
        if not obj:
            raise _ParseError("empty list of calls")
        return [_call_from_json(o, raw) for o in obj]
    return [_call_from_json(obj, raw)]


def _decode_json_prefix(text: str) -> tuple[Any, int]:
    """Decode the JSON value at the start of ``text`` (trailing text allowed); returns (value, end)."""
    return json.JSONDecoder().raw_decode(text)


def _parse_json(text: str) -> tuple[list[ToolCall], str | None]:
    body = _clean(text)
    if "<tool_call>" in body:
        thought = body[: body.index("<tool_call>")].strip() or None
        calls: list[ToolCall] = []
        for block in _TOOL_CALL_BLOCK.findall(body):
            block = _clean(block)
            if not block:
                raise _ParseError("empty <tool_call> block")
            obj, end = _decode_json_prefix(block)
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
        obj, _ = _decode_json_prefix(body[start:])
        return _json_calls(obj, body[start:]), (body[:start].strip() or None)
    return _json_calls(obj, body), None


# --------------------------------------------------------------------------- react


def _action_input(text: str) -> Any:
    text = text.strip()
    if not text:
        raise _ParseError("empty Action Input")
    try:
        value, _ = _decode_json_prefix(text)
    except ValueError as err:
        # Models often write Python dicts (single quotes, True/None); accept a literal-only dict.
        end = text.find("\n")
        candidate = text if end < 0 else text[:end]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(candidate.strip(), mode="eval")
            value = _literal(tree.body)
        except (SyntaxError, ValueError):
            raise _ParseError(f"Action Input is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise _ParseError(f"Action Input is not a JSON object (got {type(value).__name__})")
    if not all(isinstance(k, str) for k in value):
        raise _ParseError("Action Input keys must be strings")
    _check_json_value(value)
    return value


def _parse_react(text: str) -> tuple[list[ToolCall], str | None]:
    body = text
    obs = _OBSERVATION.search(body)
    if obs:
        body = body[: obs.start()]
    actions = list(_ACTION.finditer(body))
    if not actions:
        raise _ParseError("no 'Action:' line")
    thought_match = _THOUGHT.search(body)
    thought = thought_match.group(1).strip() if thought_match else None
    calls: list[ToolCall] = []
    for i, action in enumerate(actions):
        name = action.group(1).strip().strip("`").strip()
        if not name:
            raise _ParseError("empty Action name")
        segment_end = actions[i + 1].start() if i + 1 < len(actions) else len(body)
        segment = body[action.end() : segment_end]
        inp = _ACTION_INPUT.search(segment)
        if inp is None:
            raise _ParseError(f"Action {name!r} has no 'Action Input:'")
        args = _action_input(segment[inp.end() :])
        calls.append(ToolCall(name=name, arguments=args, raw=body[action.start() : segment_end].strip()))
    return calls, thought


# --------------------------------------------------------------------------- entry point

_PARSERS = {"python": _parse_python, "json": _parse_json, "react": _parse_react}


def _auto_order(text: str) -> tuple[str, ...]:
    stripped = _clean(text)
    if "<tool_call>" in stripped:
        return ("json",)
    if _ACTION.search(text):
        return ("react",)
    if stripped.startswith("{") or re.match(r"^\[\s*\{", stripped):
        return ("json", "python")
    return ("python", "json")


def parse_calls(text: str, format: str = "auto") -> ParseResult:  # noqa: A002 - the agreed interface name
    """Parse ``text`` (one model output) as ``format`` ("auto", "python", "json" or "react").

    Never raises: failures come back as ``ParseResult(error=...)`` with no calls.
    """
    if not isinstance(text, str):
        return ParseResult(error=f"expected a string, got {type(text).__name__}")
    if format not in ("auto", *_PARSERS):
        return ParseResult(text=text[:MAX_TEXT_CHARS], error=f"unknown call format {format!r}")
    if len(text) > MAX_TEXT_CHARS:
        return ParseResult(text=text[:MAX_TEXT_CHARS], error=f"output longer than {MAX_TEXT_CHARS} characters")
    if _max_depth(text) > MAX_DEPTH:
        return ParseResult(text=text, error=f"brackets nested deeper than {MAX_DEPTH}")
    order = _auto_order(text) if format == "auto" else (format,)
    first_error: str | None = None
    for fmt in order:
        try:
            calls, thought = _PARSERS[fmt](text)
        except (_ParseError, SyntaxError, ValueError, TypeError) as err:  # ValueError covers JSON + int limit
            message = f"{fmt}: {str(err)[:300]}".strip()
        except (RecursionError, MemoryError) as err:
            message = f"{fmt}: input too complex ({type(err).__name__})"
        else:
            return ParseResult(calls=calls, thought=thought, text=text, format=fmt)
        first_error = first_error or message
    return ParseResult(error=first_error, text=text, format=order[0])


# --------------------------------------------------------------------------- rendering


def _py_literal(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string literal is a valid Python literal
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"cannot render non-finite float {value!r} as a literal")
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_py_literal(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_py_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py_literal(k)}: {_py_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {type(value).__name__} as a Python literal")


def format_call(call: ToolCall, format: str = "python", thought: str | None = None) -> str:  # noqa: A002
    """Render one call as text that :func:`parse_calls` reads back to an equal call.

    ``python``: ``name(a=1, b="x")``; ``json``: ``{"name": ..., "arguments": {...}}``;
    ``tool_call``: the JSON inside ``<tool_call>`` tags; ``react``: ``Action: name`` /
    ``Action Input: {json}``, preceded by ``Thought: ...`` when ``thought`` is given.
    """
    if format == "python":
        args = ", ".join(f"{k}={_py_literal(v)}" for k, v in call.arguments.items())
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
