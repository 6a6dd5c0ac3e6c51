"""Python literals without ``eval``: read one from an ``ast`` node, check a decoded value, write one.

The one literal walker and the one renderer of the package. :func:`literal_value` reads the argument
values of model calls (:mod:`tl_lightning.data.calls`) and of BFCL gold strings
(:mod:`tl_lightning.benchmarks.bfcl`); :func:`check_value` holds values decoded from JSON to the same
rules; :func:`python_literal` writes values back as source (``format_call`` and the ``python_doc``
prompt template).

Every value the walker or :func:`check_value` accepts can be used downstream without surprises:
``json.dumps(value, allow_nan=False)`` succeeds and its UTF-8 encoding too, ``str()`` of any integer
works, and nothing costs more than its source text. Hence the rules:

- constants: strings (valid Unicode, no lone surrogates), integers of at most
  :data:`MAX_INT_DIGITS` digits, finite floats, ``True``/``False``/``None`` and the JSON words
  ``true``/``false``/``null``;
- lists, tuples (kept as tuples: BFCL's ``tuple`` parameters check for them), sets (read as lists in
  source order, since JSON has no sets), and dicts whose keys are strings, numbers, booleans or
  ``None`` (what ``json.dumps`` accepts as keys), nested at most :data:`MAX_DEPTH` deep;
- unary ``+``/``-`` on numbers, and ``+ - * / // %`` between numbers, which BFCL gold writes
  (``p=1/6``, ``amount=500*500``). Every intermediate result is held to the same caps, so a chain of
  products cannot build a huge integer. ``**`` is never evaluated: a bounded exponent still lets a
  few characters ask for megabytes of digits.

Anything else (a name, a call, an attribute, a comprehension, bytes, complex numbers) is a
:class:`LiteralError` whose message says what was refused (the value itself where it is new to
this check: the digits of an integer, an infinite float, a tuple key). A literal is never larger than its source,
because nothing repeats or concatenates, so a caller's cap on the text caps the value's size too.
"""

from __future__ import annotations

import ast
import json
import math
import operator
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "LiteralError", "check_value", "literal_value", "python_literal"]

#: Deepest nesting of containers (and of arithmetic) accepted; both JSON and ``ast`` recurse per level.
MAX_DEPTH = 64
#: Most decimal digits an integer may have: 640 is the lowest limit ``sys.set_int_max_str_digits``
#: accepts, so ``str()`` and ``json.dumps`` of an accepted integer work under any setting. A hex
#: literal bypasses Python's own limit (``0x`` + 4,000 digits parses), this cap does not.
MAX_INT_DIGITS = 640
_INT_BOUND = 10**MAX_INT_DIGITS

_JSON_WORDS = {"true": True, "false": False, "null": None}
_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_OPERATORS = (*_ARITHMETIC, ast.Pow)  # Pow only to refuse it with a message that says why


class LiteralError(ValueError):
    """A value that is not an accepted literal; a ``ValueError``, so callers that catch those keep working."""


def _show(value: Any, limit: int = 60) -> str:
    """A short repr for error messages (the value's caps make ``repr`` safe here)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: int | float) -> int | float:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LiteralError(f"{value!r} is not a finite number")
    elif not -_INT_BOUND < value < _INT_BOUND:
        digits = int(value.bit_length() * math.log10(2)) + 1  # str(value) may itself raise
        raise LiteralError(f"an integer of about {digits} digits is over the {MAX_INT_DIGITS}-digit cap")
    return value


def _string(value: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LiteralError(f"string {_show(value)} is not valid Unicode (lone surrogate)") from None
    return value


def _key(key: Any) -> Any:
    if key is None or isinstance(key, (str, int, float)):
        return key
    if isinstance(key, (list, dict)):
        raise LiteralError("unhashable dict key")
    raise LiteralError(f"dict key {_show(key)} is a {type(key).__name__}; keys must be strings or numbers")


def literal_value(node: ast.AST, depth: int = 0) -> Any:
    """The value of a literal-only expression node; raises :class:`LiteralError` for anything else."""
    if depth > MAX_DEPTH:
        raise LiteralError("value nested too deeply")
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return _number(value)
        if isinstance(value, str):
            return _string(value)
        raise LiteralError(f"unsupported constant {type(value).__name__}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = literal_value(node.operand, depth + 1)
        if isinstance(inner, bool) or not isinstance(inner, (int, float)):
            raise LiteralError("unary sign on a non-number")
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, _OPERATORS):
        return _arithmetic(node, depth)
    if isinstance(node, ast.List):
        return [literal_value(e, depth + 1) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(literal_value(e, depth + 1) for e in node.elts)
    if isinstance(node, ast.Set):
        return [literal_value(e, depth + 1) for e in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if k is None:
                raise LiteralError("'**' unpacking in a dict is not a literal")
            out[_key(literal_value(k, depth + 1))] = literal_value(v, depth + 1)
        return out
    if isinstance(node, ast.Name):
        if node.id in _JSON_WORDS:
            return _JSON_WORDS[node.id]
        raise LiteralError(f"variable {node.id!r} is not a literal value")
    if isinstance(node, ast.Call):
        raise LiteralError("nested calls are not literal values")
    raise LiteralError(f"{type(node).__name__} is not a literal value")


def _arithmetic(node: ast.BinOp, depth: int) -> int | float:
    if isinstance(node.op, ast.Pow):
        raise LiteralError("'**' is not evaluated; write the number itself")
    left, right = literal_value(node.left, depth + 1), literal_value(node.right, depth + 1)
    for x in (left, right):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise LiteralError("arithmetic on a non-number")
    try:
        value = _ARITHMETIC[type(node.op)](left, right)
    except (ZeroDivisionError, OverflowError) as err:
        raise LiteralError(f"arithmetic error: {err}") from None
    return _number(value)


def check_value(value: Any, depth: int = 0) -> None:
    """Hold a value decoded from JSON to the walker's rules; raises :class:`LiteralError`.

    ``json.loads`` accepts ``NaN``, ``Infinity``, ``1e999`` (inf), 4,000-digit integers and
    ``"\\ud800"``; none of them survives ``json.dumps(..., allow_nan=False)`` or a UTF-8 file.
    """
    if depth > MAX_DEPTH:
        raise LiteralError("value nested too deeply")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise LiteralError("NaN/Infinity is not a valid argument value")
    if isinstance(value, (int, float)):
        _number(value)
    elif isinstance(value, str):
        _string(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            check_value(v, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            check_value(_key(k), depth + 1)
            check_value(v, depth + 1)
    else:
        raise LiteralError(f"{type(value).__name__} {_show(value)} is not a JSON value")


def python_literal(value: Any, *, as_json: bool = False) -> str:
    """Python literal source for ``value`` that :func:`literal_value` (and ``ast.literal_eval``) reads back.

    Strings use JSON escaping with double quotes (every JSON escape is a valid Python escape).
    Tuples stay tuples (``(1,)``) and dict keys keep their type, so a parsed call renders back to an
    equal call. ``as_json=True`` writes the value as its JSON form would read back instead: tuples
    as lists and dict keys as strings, which is how a prompt shows arguments.
    """
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise LiteralError(f"cannot render non-finite float {value!r} as a Python literal")
        return repr(value)
    if isinstance(value, list) or (as_json and isinstance(value, tuple)):
        return "[" + ", ".join(python_literal(v, as_json=as_json) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(python_literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        items = ((str(k) if as_json else k, v) for k, v in value.items())
        return "{" + ", ".join(f"{python_literal(k)}: {python_literal(v, as_json=as_json)}" for k, v in items) + "}"
    raise LiteralError(f"cannot render argument value of type {type(value).__name__}: {_show(value)}")
