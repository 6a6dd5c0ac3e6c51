"""How a call is answered: argument checks, and the executor base that never raises.

:func:`check_arguments` checks a call against the tool schemas in the order Python does and answers
with the text Python would raise, so that the taxonomy classifier (``tl_lightning.data.feedback``)
puts it in the intended category (the texts are listed in :mod:`tl_lightning.tools.sandbox`).
Argument values are data: they are checked, copied and handed to our own functions, never parsed as
code. A value that JSON cannot carry (a huge int, NaN, a lone surrogate, an object, deep nesting) is
refused with the text ``json.dumps`` or ``str`` would raise, as an HTTP tool would fail to send it.

:class:`Environment` is the base of :class:`~tl_lightning.tools.sandbox.Sandbox` and
:class:`~tl_lightning.tools.simulator.SchemaSimulator`: it handles ``finish`` and keeps the promise
that executing a call never raises, whatever the call holds, so one pathological model output is
one failed call, never a failed run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The parser refuses deeper values too: a value deeper than this never reaches a tool (or json.dumps).
from tl_lightning.data.literals import MAX_DEPTH
from tl_lightning.data.schema import FINISH_TOOL, FeedbackCategory, Tool, ToolCall, finish_tool

__all__ = ["Environment", "Outcome", "as_list", "check_arguments"]


@dataclass(frozen=True)
class Outcome:
    """A call's feedback text and the category the executor intends it to have (its ground truth)."""

    text: str
    category: FeedbackCategory


def as_list(x: Any) -> list:
    """A schema field that may be one value or a list of them (``"type": ["string", "null"]``), as a list."""
    if x is None:
        return []
    return list(x) if isinstance(x, list | tuple) else [x]


# Below this many bits an int always has fewer than Python's 4,300-digit str() limit, so only larger
# ints pay for a str() to learn whether they can be written as text (JSON) at all.
_SAFE_INT_BITS = 14_000


class _BadValue(Exception):
    """An argument value that JSON cannot carry; ``args[0]`` is the feedback text."""


class _Clock:
    """Counts visited values and raises ``TimeoutError`` once ``deadline`` (``time.monotonic``) passes."""

    __slots__ = ("deadline", "visited")

    def __init__(self, deadline: float | None) -> None:
        self.deadline, self.visited = deadline, 0

    def tick(self) -> None:
        self.visited += 1
        if self.deadline is not None and not self.visited & 1023 and time.monotonic() > self.deadline:
            raise TimeoutError


def _plain(value: Any, name: str, clock: _Clock, depth: int = 0) -> Any:
    """A copy of ``value`` (a tool must not alias the caller's data) once it is known to be JSON data.

    Refused with the text ``json.dumps``/``str`` would raise: other types, NaN and infinities, ints
    beyond Python's str() digit limit, lone surrogates (not UTF-8), nesting deeper than ``MAX_DEPTH``.
    """
    clock.tick()
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise _BadValue(f"ValueError: argument '{name}' is not valid text ({exc})") from None
        return value
    if isinstance(value, int):
        if value.bit_length() > _SAFE_INT_BITS:
            try:
                str(value)
            except ValueError as exc:
                raise _BadValue(f"ValueError: {exc}") from None
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _BadValue("ValueError: Out of range float values are not JSON compliant")
        return value
    if depth >= MAX_DEPTH and isinstance(value, list | tuple | dict):
        raise _BadValue(f"ValueError: argument '{name}' is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, list):
        return [_plain(v, name, clock, depth + 1) for v in value]
    if isinstance(value, tuple):  # a parsed Python literal may hold a tuple
        return tuple(_plain(v, name, clock, depth + 1) for v in value)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k is not None and not isinstance(k, str | int | float):
                raise _BadValue(f"TypeError: keys must be str, int, float, bool or None, not {type(k).__name__}")
            out[_plain(k, name, clock, depth + 1)] = _plain(v, name, clock, depth + 1)
        return out
    raise _BadValue(f"TypeError: Object of type {type(value).__name__} is not JSON serializable")


_PY = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "array": "list", "object": "dict", "null": "NoneType"}


def _type_error(name: str, value: Any, schema: dict[str, Any], lenient_strings: bool, clock: _Clock) -> str | None:
    """The Python exception text a tool would raise on this value, or None when it is acceptable."""
    clock.tick()
    if value is None and (schema.get("nullable") or "null" in as_list(schema.get("type"))):
        return None
    types_ = [t for t in as_list(schema.get("type")) if t != "null"]
    if not types_ or "any" in types_:
        return None
    ok = False
    for t in types_:
        if t == "string":
            ok = isinstance(value, str) or (lenient_strings and isinstance(value, int | float) and not isinstance(value, bool))
        elif t == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif t in ("number", "float"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif t == "boolean":
            ok = isinstance(value, bool)
        elif t in ("array", "tuple"):
            ok = isinstance(value, list | tuple)
        elif t in ("object", "dict"):
            ok = isinstance(value, dict)
        else:  # an unknown type word in a third-party schema: do not guess
            ok = True
        if ok:
            break
    if not ok:
        t = types_[0]
        got = type(value).__name__
        if t == "integer" and isinstance(value, str) and name.endswith("id"):  # an id used as a list index
            return "TypeError: list indices must be integers or slices, not str"
        if t in ("integer", "number", "float") and isinstance(value, str):
            return f"TypeError: '<=' not supported between instances of 'str' and '{'int' if t == 'integer' else 'float'}'"
        if t == "integer" and isinstance(value, float):
            return f"TypeError: '{got}' object cannot be interpreted as an integer"
        if t == "string":
            return f"AttributeError: '{got}' object has no attribute 'strip'"
        if t in ("array", "tuple"):
            if isinstance(value, str):  # what sum()/max() say about "1, 2, 3"
                return "TypeError: unsupported operand type(s) for +: 'int' and 'str'"
            return f"TypeError: '{got}' object is not iterable"
        if t in ("object", "dict"):
            return f"TypeError: '{got}' object is not a mapping"
        return f"TypeError: argument '{name}' must be {_PY.get(t, t)}, not {got}"
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(v) for v in schema["enum"])
        return f"ValueError: {value!r} is not a valid {name}; expected one of {allowed}"
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            err = _type_error(f"{name}[{i}]", item, schema["items"], lenient_strings, clock)
            if err:
                return err
    return None


def _quote_list(names: Sequence[str]) -> str:
    quoted = [repr(n) for n in names]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + (", and " if len(quoted) > 2 else " and ") + quoted[-1]


def check_arguments(
    call: ToolCall, tools: dict[str, Tool], lenient_strings: bool = False, deadline: float | None = None
) -> dict[str, Any] | Outcome:
    """A copy of the call's arguments when it may run, else the feedback Python would give.

    Order: unknown tool, unexpected keyword, missing required arguments, then per argument its
    JSON-ness (see :func:`_plain`), type and enum. ``lenient_strings`` accepts numbers for string
    parameters (HTTP APIs stringify query values). Past ``deadline`` (a ``time.monotonic()``
    instant) the walk over the values stops with ``TimeoutError``, so a huge value cannot outlast
    the caller's time limit.
    """
    spec = tools.get(call.name)
    if spec is None:
        return Outcome(f"name '{call.name}' is not defined", FeedbackCategory.TOOL_HALLUCINATION)
    props = spec.properties
    for arg in call.arguments:
        if arg not in props:
            return Outcome(f"{call.name}() got an unexpected keyword argument '{arg}'", FeedbackCategory.PARAMETER_HALLUCINATION)
    missing = [r for r in spec.required if r not in call.arguments]
    if missing:
        plural = "argument" if len(missing) == 1 else "arguments"
        return Outcome(
            f"{call.name}() missing {len(missing)} required positional {plural}: {_quote_list(missing)}", FeedbackCategory.PARAMETER_MISSING
        )
    clock = _Clock(deadline)
    args: dict[str, Any] = {}
    for arg, value in call.arguments.items():
        try:
            args[arg] = _plain(value, arg, clock)
        except _BadValue as bad:
            return Outcome(bad.args[0], FeedbackCategory.TOOL_CALL_FAILURE)
        err = _type_error(arg, value, props[arg] if isinstance(props[arg], dict) else {}, lenient_strings, clock)
        if err:
            return Outcome(err, FeedbackCategory.TOOL_CALL_FAILURE)
    return args



class Environment:
    """Executes one episode's calls; ``finish`` with a valid answer ends it (``done``, ``final_answer``).

    Subclasses implement :meth:`_run` for every other call, and :meth:`reset`.
    """

    done: bool = False
    final_answer: str | None = None

    def reset(self, state: dict[str, Any] | None = None) -> None:
        """Start a new episode (from ``state`` where the executor keeps one)."""
        raise NotImplementedError

    def execute(self, call: ToolCall) -> str:
        """Run one call and return its feedback text; never raises."""
        return self.execute_outcome(call).text

    def execute_outcome(self, call: ToolCall) -> Outcome:
        """Like :meth:`execute`, plus the category the executor intends the feedback to have; never raises."""
        if not isinstance(call, ToolCall) or not isinstance(call.name, str) or not isinstance(call.arguments, dict):
            got = type(call).__name__ if not isinstance(call, ToolCall) else "a ToolCall with a non-string name or non-dict arguments"
            return Outcome(f"TypeError: a tool call must be a ToolCall with a name and a dict of arguments, got {got}",
                           FeedbackCategory.TOOL_CALL_FAILURE)
        try:
            return self._finish(call) if call.name == FINISH_TOOL else self._run(call)
        except Exception as exc:
            # The executor itself failed (e.g. on a malformed third-party schema): one failed call of
            # the service, never an aborted run. Only the exception's type is quoted: its message
            # could hold words the classifier reads as another category.
            error = f"Internal server error ({type(exc).__name__})"
            return Outcome(json.dumps({"error": error}), FeedbackCategory.OTHERS)

    def _run(self, call: ToolCall) -> Outcome:
        raise NotImplementedError

    def _finish(self, call: ToolCall) -> Outcome:
        checked = check_arguments(call, {FINISH_TOOL: finish_tool()}, lenient_strings=True)
        if isinstance(checked, Outcome):
            return checked
        self.done = True
        self.final_answer = str(checked["answer"])
        return Outcome(json.dumps({"status": "finished"}), FeedbackCategory.ALL_RIGHT)
