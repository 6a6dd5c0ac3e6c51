"""BFCL's AST checker for one predicted call against one gold call (Python language).

Re-implements the rules of ``simple_function_checker`` in BFCL's
``bfcl_eval/eval_checker/ast_eval/ast_checker.py`` (ShishirPatil/gorilla) so that verdicts agree
with it; the gold call's arguments map each parameter to its list of accepted values, ``""`` in
a list meaning "may be omitted". In the checker's order:

1. the predicted name must equal the gold (= described) function's name;
2. every ``required`` parameter of the schema must be given;
3. every given parameter must be in the schema and in the gold call;
4. its value must have the schema type (``string, integer, float, boolean, array, tuple, dict,
   any`` -> ``str, int, float, bool, list, list, dict, str``; an int counts as a float; a tuple
   counts as a list for ``tuple``; for ``array``/``tuple`` every item must have the ``items``
   type). A value whose type differs from the schema but equals the type of the accepted values
   is a "variable" and is only checked by membership (the checker's ``is_variable``);
5. values: strings, list items and dict values that are strings are compared after
   :func:`standardize_string` (drop spaces and ``,./-_*^``, lowercase, ``'`` -> ``"``); dicts key
   by key (a gold key with ``""`` may be omitted); lists of dicts dict by dict in order; lists as
   a whole; anything else by ``value in accepted`` (Python ``==``);
6. every gold parameter not given must accept ``""``.

Extensions (not in the checker, which would raise): schema types ``number`` and ``object`` are
read as ``float`` and ``dict``; a missing or unknown type, or a gold function absent from the
tools, is reported as an error instead of crashing.
"""

from __future__ import annotations

import re
from typing import Any

from tl_lightning.data.schema import Tool, ToolCall

__all__ = ["as_possible_values", "bfcl_call_error", "bfcl_structure_error", "exact_answer", "standardize_string"]

_PY_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "float": float,
    "number": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "object": dict,
    "any": str,
}
_NESTED = ("array", "tuple")
_STRIP = re.compile(r"[ ,./\-_*^]")


def standardize_string(text: str) -> str:
    """BFCL's string normalisation: drop spaces and ``,./-_*^``, lowercase, single -> double quotes."""
    return _STRIP.sub("", text).lower().replace("'", '"')


def _answer_type(accepted: list[Any]) -> type | None:
    return next((type(a) for a in accepted if a != ""), None)


def _type_error(value: Any, accepted: list[Any], expected: type, nested: type | None) -> tuple[str | None, bool]:
    """(error or None, is_variable) following the checker's ``type_checker``."""
    answer_type = _answer_type(accepted)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return None, is_variable
        for item in accepted:
            # A non-list accepted item (e.g. "") passes without looking at the elements, as in the checker.
            if type(item) is not list or all(_type_error(v, item, nested, None)[0] is None for v in value):
                return None, is_variable
        # nested failure falls through to the variable check below, as in the checker
    if answer_type is not None and type(value) is answer_type:
        return None, True
    return f"expected type {expected.__name__}, got {type(value).__name__} ({value!r})", is_variable


def _std(v: Any) -> Any:
    return standardize_string(v) if type(v) is str else v


def _string_ok(value: str, accepted: list[Any]) -> bool:
    return standardize_string(value) in [standardize_string(a) for a in accepted if type(a) is str]


def _list_ok(value: list[Any], accepted: list[Any]) -> bool:
    out = [_std(v) for v in value]
    # len("") == 0, so an optional marker "" turns into [] and accepts an empty list, as in the checker.
    return out in [[_std(x) for x in a] for a in accepted]


def _as_list(values: Any) -> list[Any]:
    # A malformed answer (a bare value where a list of accepted values belongs) is read as [value].
    return values if isinstance(values, list) else [values]


def _dict_ok(value: dict[Any, Any], accepted: list[Any]) -> bool:
    for answer in accepted:
        if not isinstance(answer, dict):
            continue  # "" (optional marker)
        good = True
        for key, v in value.items():
            if key not in answer or _std(v) not in [_std(x) for x in _as_list(answer[key])]:
                good = False
                break
        if good and all(key in value or "" in _as_list(vals) for key, vals in answer.items()):
            return True
    return False


def _list_dict_ok(value: list[Any], accepted: list[Any]) -> bool:
    for answer in accepted:
        if (
            isinstance(answer, list)
            and len(value) == len(answer)
            and all(isinstance(v, dict) and _dict_ok(v, [a]) for v, a in zip(value, answer, strict=True))
        ):
            return True
    return False


def bfcl_structure_error(tool: Tool | None, call: ToolCall, gold: ToolCall) -> str | None:
    """The checker's name and parameter-set rules only (steps 1-3 and 6); None when they pass."""
    if tool is None:
        return f"gold function {gold.name!r} is not among the tools"
    if call.name != tool.name:
        return f"function name {tool.name!r} not found in the prediction (got {call.name!r})"
    for param in tool.required:
        if param not in call.arguments:
            return f"missing required parameter {param!r}"
    for param in call.arguments:
        if param not in tool.properties or param not in gold.arguments:
            return f"unexpected parameter {param!r}"
    for param, accepted in gold.arguments.items():
        if param not in call.arguments and "" not in accepted:
            return f"parameter {param!r} not provided and not optional"
    return None


def bfcl_call_error(tool: Tool | None, call: ToolCall, gold: ToolCall) -> str | None:
    """Why the checker rejects ``call`` for ``gold`` (accepted values per parameter), or None."""
    structure = bfcl_structure_error(tool, call, gold)
    if structure is not None and not structure.startswith("parameter "):
        return structure
    assert tool is not None
    for param, value in call.arguments.items():
        spec = tool.properties[param]
        type_name = spec.get("type") if isinstance(spec, dict) else None
        if type_name not in _PY_TYPES:
            return f"parameter {param!r}: unsupported schema type {type_name!r}"
        expected = _PY_TYPES[type_name]
        nested = None
        if type_name in _NESTED:
            item_type = (spec.get("items") or {}).get("type")
            nested = _PY_TYPES.get(item_type) if item_type else None
        if type_name == "tuple" and type(value) is tuple:
            value = list(value)
        if type_name in ("float", "number") and type(value) is int:
            value = float(value)
        accepted = gold.arguments[param]
        error, is_variable = _type_error(value, accepted, expected, nested)
        if error is not None:
            return f"parameter {param!r}: {error}"
        if not is_variable:
            if expected is dict:
                ok = _dict_ok(value, accepted)
            elif expected is list and nested is dict:
                ok = _list_dict_ok(value, accepted)
            elif expected is str:
                ok = _string_ok(value, accepted)
            elif expected is list:
                ok = _list_ok(value, accepted)
            else:
                ok = value in accepted
            if not ok:
                return f"invalid value for parameter {param!r}: {value!r} (accepted: {accepted!r})"
            continue
        if value not in accepted:
            return f"invalid value for parameter {param!r}: {value!r} (accepted: {accepted!r})"
    return structure  # only a missing non-optional parameter can remain




def _json_like(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_json_like(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_like(v) for k, v in value.items()}
    return value


def as_possible_values(call: ToolCall, style: str, tool: Tool | None) -> ToolCall:
    """Gold as accepted-value lists. Exact gold v becomes [v], with tuples as lists (BFCL's answer
    files are JSON, so its checker never sees a tuple on the gold side; exec gold strings have
    them), and, for dict-typed parameters, each dict value v as [v] (the answer files' shape)."""
    if style == "possible_values":
        return call
    props = tool.properties if tool is not None else {}
    args = {}
    for key, value in call.arguments.items():
        spec = props.get(key) if isinstance(props.get(key), dict) else {}
        value = _json_like(value)
        is_dict = _PY_TYPES.get(spec.get("type", "")) is dict
        items_dict = spec.get("type") in _NESTED and _PY_TYPES.get((spec.get("items") or {}).get("type", "")) is dict
        if is_dict and isinstance(value, dict):
            value = {k: [v] for k, v in value.items()}
        elif items_dict and isinstance(value, list):
            value = [{k: [v] for k, v in d.items()} if isinstance(d, dict) else d for d in value]
        args[key] = [value]
    return ToolCall(call.name, args, call.raw)


def exact_answer(answer: list[ToolCall], calls: list[ToolCall]) -> list[ToolCall]:
    """A possible-values answer as one exact answer: the first accepted value of each parameter,
    optional parameters ("" accepted) only where the prediction gives them."""
    out = []
    for g in answer:
        given = next((set(c.arguments) for c in calls if c.name == g.name), set())
        args = {
            k: next((v for v in vals if v != ""), "")
            for k, vals in g.arguments.items()
            if "" not in vals or k in given
        }
        out.append(ToolCall(g.name, args, g.raw))
    return out
