"""What a tool is: a toolkit of type-annotated Python functions whose JSON schemas are derived from them.

A :class:`Toolkit` is a class whose ``@tool`` methods are plain, type-annotated Python functions with
Google-style docstrings. Each tool's JSON schema (:class:`~tl_lightning.data.schema.Tool`) is derived
from the function, so there is no hand-written duplicate schema. :func:`tool_from_function` gives
what ``transformers.utils.get_json_schema`` gives (a test checks it on every shipped tool:
``Literal`` -> ``enum``, ``X | None`` -> ``nullable``, defaults -> optional, plus the default value)
without importing transformers (seconds) into every process that builds a sandbox.

How calls are checked and answered is :mod:`tl_lightning.tools.environment`; the shipped toolkits
are :mod:`tl_lightning.tools.toolkits`.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from tl_lightning.data.schema import Tool

__all__ = [
    "ToolError",
    "Toolkit",
    "stable_hash",
    "tool",
    "tool_from_function",
]


class ToolError(Exception):
    """Raised by a tool to report a domain error (unknown city, no such file); rendered as ``{"error": msg}``."""


def tool(fn: Callable) -> Callable:
    """Mark a :class:`Toolkit` method as a tool."""
    fn.__tl_tool__ = True
    return fn


class Toolkit:
    """A named set of tools with optional per-episode state.

    Subclasses set ``name`` (and ``host``, the API host quoted in instability errors), define tools
    as ``@tool`` methods, and override :meth:`initial_state` if their tools keep state. All state
    lives in ``self.state``, a JSON-serialisable dict replaced by :meth:`reset`: the sandbox runs a
    timed call on a copy of the toolkit and keeps the copy's state only if the call finished in time.
    """

    name: str = "toolkit"
    host: str = "api.example.com"

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.reset()
        self._functions = {n: getattr(self, n) for n in _tool_names(type(self))}
        self._tools = _class_tools(type(self))

    def initial_state(self) -> dict[str, Any]:
        return {}

    def reset(self, state: dict[str, Any] | None = None) -> None:
        self.state = copy.deepcopy(self.initial_state() if state is None else state)

    @property
    def functions(self) -> dict[str, Callable]:
        return dict(self._functions)

    @property
    def tools(self) -> list[Tool]:
        return list(self._tools.values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, tools={sorted(self._functions)})"


def _tool_names(cls: type) -> list[str]:
    """The ``@tool`` methods of ``cls`` in definition order (base classes first)."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for n, member in vars(klass).items():
            if getattr(member, "__tl_tool__", False) and n not in names:
                names.append(n)
    return names


_SCHEMA_CACHE: dict[type, dict[str, Tool]] = {}


def _class_tools(cls: type) -> dict[str, Tool]:
    """Tool schemas of a toolkit class, derived once per class (the schema is a property of the code)."""
    if cls not in _SCHEMA_CACHE:
        _SCHEMA_CACHE[cls] = {n: tool_from_function(getattr(cls, n)) for n in _tool_names(cls)}
    return _SCHEMA_CACHE[cls]


def stable_hash(*parts: Any) -> int:
    """A process-independent hash (Python's ``hash`` of str is salted per process).

    ``surrogatepass`` encodes a lone surrogate instead of failing; valid text hashes as plain UTF-8.
    """
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")


# ----------------------------------------------------------------------------------------------
# Schemas from annotated functions

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
    """The tool schema of a type-annotated function with a Google-style docstring (plus each ``default``)."""
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
