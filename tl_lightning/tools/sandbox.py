"""Executable toolkits, a safe sandbox and schema-simulated execution.

A :class:`Toolkit` is a class whose ``@tool`` methods are plain, type-annotated Python functions with
Google-style docstrings; each tool's JSON schema (:class:`Tool`) is derived from the function, so
there is no hand-written duplicate schema. The derivation gives what
``transformers.utils.get_json_schema`` gives (a test checks it; ``Literal`` -> ``enum``, ``X | None``
-> ``nullable``, defaults -> optional, plus the default value) without importing transformers.

:class:`Sandbox` executes :class:`ToolCall` objects against toolkits and answers with the feedback
text a real Python/HTTP tool would give. The error texts follow one rule, so that the taxonomy
classifier (``tl_lightning.data.feedback``) puts each in the intended category:

- unknown tool: ``name 'x' is not defined`` (tool_hallucination);
- unknown argument: ``f() got an unexpected keyword argument 'x'`` (parameter_hallucination);
- missing argument: ``f() missing 1 required positional argument: 'x'`` (parameter_missing);
- a value of the wrong type, format or enum (found by validation against the annotations, or a
  ``TypeError``/``ValueError``/``KeyError``/... the tool raises on it): the Python exception text,
  e.g. ``TypeError: '<=' not supported between instances of 'str' and 'int'`` (tool_call_failure);
- a well-formed value that names nothing (the tool raises :class:`ToolError`), or any other
  exception: the service's ``{"error": "City 'Atlantis' not found"}`` (others);
- network failure (seeded ``instability_rate``, :meth:`Sandbox.fail_next`) or timeout:
  ``ConnectionError: HTTPSConnectionPool(host=..., port=443): Max retries exceeded ...`` (tool_instability).

:meth:`Sandbox.execute_outcome` returns that intended category with the text (an executed,
classified reward signal for multi-turn RL; DESIGN.md §1, IRM beyond the paper).

Argument values are data: they are type-checked and handed to our own functions, never parsed as
code. Each call runs in a worker thread joined with a timeout. A pure-Python thread cannot be
killed, so a runaway tool keeps running in the background after its timeout; the toolkits are
ours and bounded, which is why this is acceptable here (do not register untrusted code).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tl_lightning.data.schema import FINISH_TOOL, FeedbackCategory, Tool, ToolCall, finish_tool
from tl_lightning.tools.sandbox_schema import tool_from_function

__all__ = [
    "Outcome",
    "Sandbox",
    "SchemaSimulator",
    "Toolkit",
    "ToolError",
    "default_toolkits",
    "stable_hash",
    "toolkit_classes",
    "tools_from_system_prompt",
    "tool",
    "validate_arguments",
]

C = FeedbackCategory

class ToolError(Exception):
    """Raised by a tool to report a domain error (unknown city, no such file); rendered as ``{"error": msg}``."""


@dataclass(frozen=True)
class Outcome:
    """A call's feedback text and the category the sandbox intends it to have (its ground truth)."""

    text: str
    category: FeedbackCategory


def tool(fn: Callable) -> Callable:
    """Mark a :class:`Toolkit` method as a tool."""
    fn.__tl_tool__ = True
    return fn


class Toolkit:
    """A named set of tools with optional per-episode state.

    Subclasses set ``name`` (and ``host``, the API host quoted in instability errors), define tools
    as ``@tool`` methods, and override :meth:`initial_state` if their tools keep state (kept in
    ``self.state``, a JSON-serialisable dict replaced by :meth:`reset`).
    """

    name: str = "toolkit"
    host: str = "api.example.com"

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.reset()
        names = _tool_names(type(self))
        self._functions = {n: getattr(self, n) for n in names}
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
    """A process-independent hash (Python's ``hash`` of str is salted per process)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


# ----------------------------------------------------------------------------------------------
# Argument validation (shared by the sandbox and the schema simulator)

_PY = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "array": "list", "object": "dict", "null": "NoneType"}


def _pytype(value: Any) -> str:
    return type(value).__name__


def _type_error(name: str, value: Any, schema: dict[str, Any], lenient_strings: bool) -> str | None:
    """The Python exception text a tool would raise on this value, or None when it is acceptable."""
    if value is None and (schema.get("nullable") or "null" in _as_list(schema.get("type"))):
        return None
    types = [t for t in _as_list(schema.get("type")) if t != "null"]
    if not types or "any" in types:
        return None
    ok = False
    for t in types:
        if t == "string":
            ok = isinstance(value, str) or (lenient_strings and isinstance(value, int | float) and not isinstance(value, bool))
        elif t == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif t in ("number", "float"):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif t == "boolean":
            ok = isinstance(value, bool)
        elif t in ("array", "tuple"):
            ok = isinstance(value, list | tuple)  # a parsed Python literal may hold a tuple
        elif t in ("object", "dict"):
            ok = isinstance(value, dict)
        else:  # an unknown type word in a third-party schema: do not guess
            ok = True
        if ok:
            break
    if not ok:
        t = types[0]
        got = _pytype(value)
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
            err = _type_error(f"{name}[{i}]", item, schema["items"], lenient_strings)
            if err:
                return err
    return None


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, list | tuple) else [x]


def _quote_list(names: Sequence[str]) -> str:
    quoted = [repr(n) for n in names]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + (", and " if len(quoted) > 2 else " and ") + quoted[-1]


def validate_arguments(call: ToolCall, tools: dict[str, Tool], lenient_strings: bool = False) -> Outcome | None:
    """Check ``call`` against the schemas in the order Python does; None when it may run.

    Order: unknown tool, unexpected keyword, missing required arguments, then types and enums.
    ``lenient_strings`` accepts numbers for string parameters (HTTP APIs stringify query values).
    """
    spec = tools.get(call.name)
    if spec is None:
        return Outcome(f"name '{call.name}' is not defined", C.TOOL_HALLUCINATION)
    props = spec.properties
    for arg in call.arguments:
        if arg not in props:
            return Outcome(f"{call.name}() got an unexpected keyword argument '{arg}'", C.PARAMETER_HALLUCINATION)
    missing = [r for r in spec.required if r not in call.arguments]
    if missing:
        plural = "argument" if len(missing) == 1 else "arguments"
        return Outcome(
            f"{call.name}() missing {len(missing)} required positional {plural}: {_quote_list(missing)}", C.PARAMETER_MISSING
        )
    for arg, value in call.arguments.items():
        err = _type_error(arg, value, props[arg] if isinstance(props[arg], dict) else {}, lenient_strings)
        if err:
            return Outcome(err, C.TOOL_CALL_FAILURE)
    return None


#: Exceptions that mean "the call's values were wrong" (tool_call_failure); others are "others".
_VALUE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError)


def _instability_text(host: str, name: str) -> str:
    return (
        f"ConnectionError: HTTPSConnectionPool(host='{host}', port=443): Max retries exceeded with url: /v1/{name} "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object>: "
        "Failed to establish a new connection: [Errno 111] Connection refused'))"
    )


def _timeout_text(host: str, timeout_s: float) -> str:
    return f"ConnectionError: HTTPSConnectionPool(host='{host}', port=443): Read timed out. (read timeout={timeout_s})"


def _dump(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False)
    except (TypeError, ValueError) as exc:  # e.g. a tool returning bytes: the real json error text
        return f"TypeError: {exc}"


class _FinishMixin:
    """``finish`` handling shared by the sandbox and the simulator."""

    done: bool
    final_answer: str | None

    def _finish(self, call: ToolCall) -> Outcome:
        bad = validate_arguments(call, {FINISH_TOOL: finish_tool()}, lenient_strings=True)
        if bad is not None:
            return bad
        self.done = True
        self.final_answer = str(call.arguments["answer"])
        return Outcome(json.dumps({"status": "finished"}), C.ALL_RIGHT)


class Sandbox(_FinishMixin):
    """Executes calls against toolkits; deterministic for a given seed, state and call sequence.

    - ``toolkits``: :class:`Toolkit` instances (or classes); None means :func:`default_toolkits`.
    - ``instability_rate``: the seeded fraction of calls that fail with a transient network error.
    - ``timeout_s``: per-call time limit; None runs the tool inline (no thread).
    """

    def __init__(
        self,
        toolkits: Iterable[Toolkit | type[Toolkit] | str] | None = None,
        seed: int = 0,
        instability_rate: float = 0.0,
        timeout_s: float | None = 1.0,
        expose: Iterable[str] | None = None,
    ) -> None:
        kits = default_toolkits() if toolkits is None else [_make_toolkit(k) for k in toolkits]
        self.toolkits: dict[str, Toolkit] = {}
        self._owner: dict[str, Toolkit] = {}
        for kit in kits:
            if kit.name in self.toolkits:
                raise ValueError(f"two toolkits are named {kit.name!r}")
            self.toolkits[kit.name] = kit
            for tname in kit.functions:
                if tname in self._owner or tname == FINISH_TOOL:
                    raise ValueError(f"tool {tname!r} of toolkit {kit.name!r} is defined twice")
                self._owner[tname] = kit
        self._specs = {t.name: t for kit in kits for t in kit.tools}
        if expose is not None:
            # Only the tools the model was shown exist: anything else is a hallucinated name.
            expose = set(expose) - {FINISH_TOOL}
            unknown = expose - set(self._specs)
            if unknown:
                raise ValueError(f"expose names tools that no toolkit defines: {sorted(unknown)}")
            self._specs = {n: t for n, t in self._specs.items() if n in expose}
        if not 0.0 <= instability_rate <= 1.0:
            raise ValueError(f"instability_rate must be in [0, 1], got {instability_rate}")
        self.seed, self.instability_rate, self.timeout_s = seed, instability_rate, timeout_s
        self.reset()

    @property
    def tools(self) -> list[Tool]:
        """The toolkits' tools (``finish`` is :func:`~tl_lightning.data.schema.finish_tool`, handled by every sandbox)."""
        return list(self._specs.values())

    def tool(self, name: str) -> Tool | None:
        return finish_tool() if name == FINISH_TOOL else self._specs.get(name)

    @property
    def state(self) -> dict[str, dict[str, Any]]:
        """Toolkit name -> a deep copy of its state (what :meth:`reset` accepts)."""
        return {n: copy.deepcopy(k.state) for n, k in self.toolkits.items() if k.state}

    def reset(self, state: dict[str, dict[str, Any]] | None = None) -> None:
        """Start a new episode: toolkits get ``state[name]`` (or their initial state); the RNG restarts."""
        state = state or {}
        unknown = set(state) - set(self.toolkits)
        if unknown:
            raise ValueError(f"reset state names unknown toolkits {sorted(unknown)}; have {sorted(self.toolkits)}")
        for name, kit in self.toolkits.items():
            kit.reset(state.get(name))
        self._rng = random.Random(f"tl-sandbox-{self.seed}")
        self._forced_failures = 0
        self.done = False
        self.final_answer: str | None = None

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every toolkit's state (deep copy), for :meth:`restore`."""
        return {n: copy.deepcopy(k.state) for n, k in self.toolkits.items()}

    def restore(self, snapshot: dict[str, dict[str, Any]]) -> None:
        """Put the toolkits back in a :meth:`snapshot`'s state; the RNG and ``done`` are untouched."""
        for name, kit in self.toolkits.items():
            kit.state = copy.deepcopy(snapshot[name])

    def fail_next(self, n: int = 1) -> None:
        """Make the next ``n`` tool executions fail transiently (used to inject tool instability)."""
        self._forced_failures += n

    def execute(self, call: ToolCall) -> str:
        """Run one call and return its feedback text; never raises."""
        return self.execute_outcome(call).text

    def execute_outcome(self, call: ToolCall) -> Outcome:
        """Like :meth:`execute`, plus the category the sandbox intends the feedback to have."""
        if call.name == FINISH_TOOL:
            return self._finish(call)
        bad = validate_arguments(call, self._specs)
        if bad is not None:
            return bad
        kit = self._owner[call.name]
        # Draw for every valid call, so one call's instability does not shift the others' draws.
        unstable = self._rng.random() < self.instability_rate
        if self._forced_failures > 0:
            self._forced_failures -= 1
            unstable = True
        if unstable:
            return Outcome(_instability_text(kit.host, call.name), C.TOOL_INSTABILITY)
        fn = kit.functions[call.name]
        args = copy.deepcopy(call.arguments)  # a tool must not alias the caller's data
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = fn(**args)
            except (Exception, SystemExit) as exc:  # every failure becomes feedback, even a sys.exit()
                box["error"] = exc

        if self.timeout_s is None:
            run()
        else:
            worker = threading.Thread(target=run, name=f"tool-{call.name}", daemon=True)
            worker.start()
            worker.join(self.timeout_s)
            if worker.is_alive():
                return Outcome(_timeout_text(kit.host, self.timeout_s), C.TOOL_INSTABILITY)
        if "error" in box:
            exc = box["error"]
            if isinstance(exc, ToolError):
                return Outcome(json.dumps({"error": str(exc)}, ensure_ascii=False), C.OTHERS)
            if isinstance(exc, _VALUE_ERRORS):  # the tool choked on the values it was given
                return Outcome(f"{type(exc).__name__}: {exc}", C.TOOL_CALL_FAILURE)
            # Anything else is the tool's own failure, reported as a service would report it.
            return Outcome(json.dumps({"error": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False), C.OTHERS)
        text = _dump(box.get("result"))
        return Outcome(text, C.TOOL_CALL_FAILURE if text.startswith("TypeError: ") else C.ALL_RIGHT)


def default_toolkits() -> list[Toolkit]:
    """Fresh instances of every shipped toolkit."""
    from tl_lightning.tools.toolkits import TOOLKITS

    return [cls() for cls in TOOLKITS]


def toolkit_classes() -> dict[str, type[Toolkit]]:
    """Toolkit name -> class, for every shipped toolkit."""
    from tl_lightning.tools.toolkits import TOOLKITS

    return {cls.name: cls for cls in TOOLKITS}


def _make_toolkit(kit: Toolkit | type[Toolkit] | str) -> Toolkit:
    if isinstance(kit, str):
        classes = toolkit_classes()
        if kit not in classes:
            raise ValueError(f"unknown toolkit {kit!r}; have {sorted(classes)}")
        return classes[kit]()
    return kit() if isinstance(kit, type) else kit


# ----------------------------------------------------------------------------------------------
# Schema-simulated execution

_WORDS = (
    "alpha bravo cedar delta ember falcon garnet harbor indigo juniper kestrel lumen maple nova "
    "orchid prairie quartz river sierra timber umber violet willow xenon yarrow zephyr"
).split()


def _parse_tools(tools: Iterable[Tool | dict[str, Any]]) -> dict[str, Tool]:
    out: dict[str, Tool] = {}
    for t in tools:
        spec = t if isinstance(t, Tool) else Tool.from_openai(t)
        out[spec.name] = spec
    return out


def tools_from_system_prompt(text: str) -> list[Tool]:
    """The tool list embedded in a RoTBench/ToolEyes system prompt (a JSON list from the first ``[``)."""
    start = text.find("[")
    if start < 0:
        raise ValueError("system prompt holds no JSON tool list (no '[')")
    specs, _ = json.JSONDecoder().raw_decode(text[start:])
    return [Tool.from_openai(s) for s in specs]


#: The ask-the-user tool of RoTBench/ToolEyes tool lists.
ASK_USER_TOOL = "ask_to_user"


class SchemaSimulator(_FinishMixin):
    """Executes calls to tools known only by their JSON schemas (e.g. ToolEyes, whose tools call live APIs).

    Name, argument names, required arguments and (where the schema gives them) types and enums
    are checked like :class:`Sandbox` does; numbers are accepted for ``string`` parameters, as an
    HTTP API would stringify them. A valid call gets a deterministic JSON result shaped by the
    schema and the arguments (seeded hash of seed, name and arguments): ``{"tool", "status":
    "success", "results": [{"id", <each argument>, "summary"}, ...]}``. ``ask_to_user`` gets a fixed
    reply telling the model to go on. ``finish`` ends the episode.
    """

    def __init__(self, tools: Iterable[Tool | dict[str, Any]], seed: int = 0) -> None:
        self._specs = _parse_tools(tools)
        self._specs.pop(FINISH_TOOL, None)
        self.seed = seed
        self.reset()

    @property
    def tools(self) -> list[Tool]:
        return list(self._specs.values())

    def reset(self, state: dict[str, Any] | None = None) -> None:
        self.done = False
        self.final_answer = None

    def execute(self, call: ToolCall) -> str:
        return self.execute_outcome(call).text

    def execute_outcome(self, call: ToolCall) -> Outcome:
        if call.name == FINISH_TOOL:
            return self._finish(call)
        bad = validate_arguments(call, self._specs, lenient_strings=True)
        if bad is not None:
            return bad
        if call.name == ASK_USER_TOOL:  # RoTBench/ToolEyes' ask-the-user tool: there is no user offline
            return Outcome(json.dumps({"response": "Please continue with the information you have."}), C.ALL_RIGHT)
        return Outcome(json.dumps(self._result(call), ensure_ascii=False), C.ALL_RIGHT)

    def _result(self, call: ToolCall) -> dict[str, Any]:
        h = stable_hash(self.seed, call.name, call.arguments)
        rng = random.Random(h)
        spec = self._specs[call.name]
        n = 1 + rng.randrange(3)
        items = []
        for i in range(n):
            item: dict[str, Any] = {"id": rng.randrange(1, 1000)}
            for arg, value in sorted(call.arguments.items()):
                item[arg] = _shaped_value(value, spec.properties.get(arg, {}), rng)
            item["summary"] = " ".join(rng.choice(_WORDS) for _ in range(3 + i % 2))
            items.append(item)
        return {"tool": call.name, "status": "success", "results": items}


def _shaped_value(value: Any, schema: dict[str, Any], rng: random.Random) -> Any:
    """An echo of the argument, or a value of the schema's type when the argument is a query."""
    t = (_as_list(schema.get("type")) or ["string"])[0] if isinstance(schema, dict) else "string"
    if t == "integer":
        return value if isinstance(value, int) else rng.randrange(100)
    if t == "number":
        return value if isinstance(value, int | float) else round(rng.uniform(0, 100), 1)
    return value
