"""The surface formats :func:`tl_lightning.data.calls.parse_calls` reads, one parser each.

``python``, ``json`` and ``react`` are the formats of the paper and the test sets; ``hermes``, ``llama3`` and
``mistral`` are the native outputs of the model families users fine-tune (Qwen2.5/Qwen3/Hermes
``<tool_call>`` blocks, Llama 3.x JSON objects and ``<|python_tag|>``, Mistral ``[TOOL_CALLS]``). In the
native formats a reply with no call markup is the model's final answer, read as
``finish(answer=<the text>)``: that is how these families end a conversation, and it lets the
paper's metrics (VA, the ``finish`` gold of RoTBench) apply unchanged.

Each parser maps one model output to ``(calls, thought)`` and raises ``ValueError`` (or
``SyntaxError``/``RecursionError``, which ``parse_calls`` turns into a parse error) on failure.
Every scan here is linear in the text: fences and ``<tool_call>`` blocks are found with ``str``
methods, ``Action:`` lines with patterns anchored at a line start that scan only blanks, and the
source text of many python calls is sliced out in one pass.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Iterable
from typing import Any

from tl_lightning.data.literals import check_value, literal_value
from tl_lightning.data.schema import FINISH_TOOL, ToolCall

__all__ = ["PARSERS", "auto_order", "clean"]

# End-of-turn markers a decoder may leave in the text; they are never part of a call.
_END_MARKERS = ("</s>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>", "<|end|>", "<eos>")
_FENCE_TAG = re.compile(r"[A-Za-z0-9_-]*")
_OPEN, _CLOSE = "<tool_call>", "</tool_call>"
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_PYTHON_TAG = "<|python_tag|>"
_TOOL_CALLS = "[TOOL_CALLS]"
_CALL_SEPARATOR = re.compile(r"[\s;]*")  # between Llama 3.2's "{...}; {...}" calls
# Every pattern below is anchored at a line start and scans only blanks, so it costs O(line) at most.
_ACTION = re.compile(r"^[ \t]*Action[ \t]*:", re.MULTILINE)
_ACTION_INPUT = re.compile(r"^[ \t]*Action[ \t]+Input[ \t]*:[ \t]*", re.MULTILINE)
_OBSERVATION = re.compile(r"^[ \t]*Observation[ \t]*:", re.MULTILINE)
_THOUGHT = re.compile(r"Thought[ \t]*:[ \t]*")
_JSON_OR_LIST = re.compile(r"\{|\[\s*\{")
_NEWLINES = re.compile(rb"\r\n|\r|\n")
_DECODER = json.JSONDecoder()


class _ParseError(ValueError):
    """A structural problem with the output (the values themselves raise ``LiteralError``)."""


# --------------------------------------------------------------------------- shared scans


def clean(text: str) -> str:
    """Strip blanks, trailing end-of-turn markers and one enclosing ```` ```lang ... ``` ```` fence."""
    text = text.strip()
    for marker in _END_MARKERS:
        if text.endswith(marker):
            text = text[: -len(marker)].rstrip()
    if len(text) >= 6 and text.startswith("```") and text.endswith("```"):
        # The language tag is the longest run of tag characters after the opening backticks, so
        # "```f(a=1)```" keeps reading as tag "f" and body "(a=1)", as it always has; being made of
        # letters, digits, "_" and "-", the tag can never reach the closing backticks.
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
    source = clean(text)
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
    call_id = obj.get("id") if isinstance(obj.get("id"), str) else None  # Mistral writes the call's id beside its name
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
    return ToolCall(name=name.strip(), arguments=args, raw=raw, id=call_id)


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
    body = clean(text)
    if _OPEN in body:
        thought = body[: body.index(_OPEN)].strip() or None
        calls: list[ToolCall] = []
        for block in _tool_call_blocks(body):
            block = clean(block)
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


# --------------------------------------------------------------------------- native formats


def _answer(text: str) -> list[ToolCall]:
    """A reply without call markup: the final answer, as the paper's ``finish`` call."""
    text = text.strip()
    if not text:
        raise _ParseError("empty output")
    return [ToolCall(FINISH_TOOL, {"answer": text}, raw=text)]


def _split_think(text: str) -> tuple[str | None, str]:
    """``(reasoning, rest)``: Qwen3's ``<think>...</think>`` block taken off the front of an output.

    The opening tag may be missing (a template that opens the block in the generation prompt), the
    closing one may not: an unclosed block is a truncated output, never a call.
    """
    close = text.find(_THINK_CLOSE)
    if close < 0:
        if _THINK_OPEN in text:
            raise _ParseError("unclosed <think> block")
        return None, text
    head = text[:close]
    opened = head.find(_THINK_OPEN)
    if opened >= 0 and head[:opened].strip():
        raise _ParseError("text before the <think> block")
    reasoning = head[opened + len(_THINK_OPEN) :] if opened >= 0 else head
    return reasoning.strip() or None, text[close + len(_THINK_CLOSE) :]


def _join(*parts: str | None) -> str | None:
    return "\n".join(p for p in parts if p) or None


def _parse_hermes(text: str) -> tuple[list[ToolCall], str | None]:
    """Qwen2.5, Qwen3 and Hermes: ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks, after
    optional ``<think>`` reasoning and text; no block at all is the final answer."""
    reasoning, body = _split_think(clean(text))
    if _OPEN in body:
        calls, thought = _parse_json(body)
        return calls, _join(reasoning, thought)
    return _answer(clean(body)), reasoning


def _json_sequence(body: str) -> list[ToolCall]:
    """One JSON object or list, or several objects separated by ``;`` (Llama 3.2 writes parallel calls so)."""
    calls: list[ToolCall] = []
    pos = 0
    while pos < len(body):
        if body[pos] not in "{[":
            raise _ParseError(f"text after the JSON call: {body[pos : pos + 40]!r}")
        obj, end = _DECODER.raw_decode(body, pos)
        calls.extend(_json_calls(obj, body[pos:end]))
        pos = _CALL_SEPARATOR.match(body, end).end()
    return calls


def _parse_llama3(text: str) -> tuple[list[ToolCall], str | None]:
    """Llama 3.1/3.2/3.3: ``{"name": ..., "parameters": {...}}`` (optionally after ``<|python_tag|>``), or a
    built-in tool as ``<|python_tag|>brave_search.call(query="...")``; anything else is the final answer."""
    body = clean(text)
    tagged = body.startswith(_PYTHON_TAG)
    if tagged:
        body = body[len(_PYTHON_TAG) :].strip()
    if body.startswith(("{", "[")):
        return _json_sequence(body), None
    if tagged:
        calls, _ = _parse_python(body)
        return [ToolCall(c.name.removesuffix(".call"), c.arguments, raw=c.raw) for c in calls], None
    return _answer(body), None


def _parse_mistral(text: str) -> tuple[list[ToolCall], str | None]:
    """Mistral v3 / Tekken: ``[TOOL_CALLS] [{"name": ..., "arguments": {...}, "id": "a1b2c3d4e"}]``; the ids are
    kept (the tool results must echo them). ``[{`` with the marker decoded away reads the same; anything else
    is the final answer."""
    body = clean(text)
    at = body.find(_TOOL_CALLS)
    if at < 0 and not body.startswith("[{"):
        return _answer(body), None
    thought, rest = (body[:at].strip() or None, body[at + len(_TOOL_CALLS) :].strip()) if at >= 0 else (None, body)
    if not rest:
        raise _ParseError("nothing after [TOOL_CALLS]")
    obj, end = _DECODER.raw_decode(rest)
    if rest[end:].strip():
        raise _ParseError("text after the [TOOL_CALLS] list")
    return _json_calls(obj, rest), thought


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


#: format name -> parser(text) -> (calls, thought)
PARSERS = {
    "python": _parse_python,
    "json": _parse_json,
    "react": _parse_react,
    "hermes": _parse_hermes,
    "llama3": _parse_llama3,
    "mistral": _parse_mistral,
}


def auto_order(text: str) -> tuple[str, ...]:
    """The formats ``parse_calls(text, "auto")`` tries, in order (see :mod:`tl_lightning.data.calls`)."""
    stripped = clean(text)
    if _TOOL_CALLS in stripped:
        return ("mistral",)
    if stripped.startswith(_PYTHON_TAG):
        return ("llama3",)
    if _OPEN in stripped:
        return ("json",)
    if _ACTION.search(text):
        return ("react",)
    if _JSON_OR_LIST.match(stripped):
        return ("json", "python")
    return ("python", "json")
