"""Tool schemas derived from type-annotated Python functions with Google-style docstrings.

``tool_from_function`` gives what ``transformers.utils.get_json_schema`` gives (a test checks it on
every shipped tool): ``str``/``int``/``float``/``bool``/``list[...]``/``dict`` map to JSON types,
``Literal[...]`` to an ``enum``, ``X | None`` to ``nullable``, parameters with defaults are optional;
we add the default value to the schema. It avoids importing transformers (seconds) into every
process that builds a sandbox.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from tl_lightning.data.schema import Tool

__all__ = ["tool_from_function"]

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array", Any: "any"}


def _type_schema(hint: Any) -> dict[str, Any]:
    """JSON schema of a type hint: str/int/float/bool/list[...]/dict, ``Literal[...]`` (enum), ``X | None`` (nullable)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        schema = _type_schema(rest[0]) if len(rest) == 1 else {"type": [_type_schema(a)["type"] for a in rest]}
        if len(rest) < len(args):
            schema["nullable"] = True
        return schema
    if origin is typing.Literal:
        return {"type": _JSON_TYPES[type(args[0])], "enum": list(args)}
    if origin is list:
        return {"type": "array", **({"items": _type_schema(args[0])} if args else {})}
    if origin is dict or hint is dict:
        return {"type": "object"}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    raise TypeError(f"no JSON-schema type for annotation {hint!r}")


_ARGS_RE = re.compile(r"\n\s*Args:\s*\n(.*?)(?:\n\s*\n|\n\s*Returns:|\n\s*Raises:|\Z)", re.DOTALL)
_ARG_RE = re.compile(r"^\s*(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")


def _docstring_args(doc: str) -> dict[str, str]:
    """Google-style ``Args:`` entries (continuation lines joined)."""
    m = _ARGS_RE.search("\n" + doc)
    lines = [ln for ln in (m.group(1).splitlines() if m else []) if ln.strip()]
    base = min((len(ln) - len(ln.lstrip()) for ln in lines), default=0)
    out: dict[str, str] = {}
    last = None
    for line in lines:
        entry = _ARG_RE.match(line)
        if entry and len(line) - len(line.lstrip()) == base:
            last = entry.group(1)
            out[last] = entry.group(2).strip()
        elif last is not None:  # an indented continuation line
            out[last] += " " + line.strip()
    return out


def tool_from_function(fn: Callable) -> Tool:
    """The tool schema of a type-annotated function with a Google-style docstring.

    Produces what ``transformers.utils.get_json_schema`` produces (a test checks that), without
    importing transformers (seconds) into every process that builds a sandbox; plus ``default``.
    """
    doc = inspect.getdoc(fn) or ""
    summary = doc.split("\n\n")[0].strip()
    arg_docs = _docstring_args(doc)
    hints = typing.get_type_hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name not in hints:
            raise TypeError(f"tool {fn.__name__}: argument {name!r} has no type annotation")
        if name not in arg_docs:
            raise TypeError(f"tool {fn.__name__}: the docstring's Args section does not describe {name!r}")
        prop = {**_type_schema(hints[name]), "description": arg_docs[name]}
        if param.default is inspect.Parameter.empty:
            required.append(name)
        elif param.default is not None:
            prop["default"] = param.default
        properties[name] = prop
    if not summary:
        raise TypeError(f"tool {fn.__name__}: needs a docstring")
    return Tool(name=fn.__name__, description=summary, parameters={"type": "object", "properties": properties},
                required=tuple(required))
