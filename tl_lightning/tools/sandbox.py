"""Executes tool calls offline against toolkits, with the feedback text a real Python/HTTP tool would give.

:class:`Sandbox` runs :class:`~tl_lightning.data.schema.ToolCall` objects against
:class:`~tl_lightning.tools.toolkit.Toolkit` instances (the shipped ones by default). The error texts
follow one rule, so that the taxonomy classifier (``tl_lightning.data.feedback``) puts each in the
intended category:

- unknown tool: ``name 'x' is not defined`` (tool_hallucination);
- unknown argument: ``f() got an unexpected keyword argument 'x'`` (parameter_hallucination);
- missing argument: ``f() missing 1 required positional argument: 'x'`` (parameter_missing);
- a value of the wrong type, format or enum (found by validation against the annotations, or a
  ``TypeError``/``ValueError``/``KeyError``/... the tool raises on it), a value JSON cannot carry
  (a huge int, NaN) or a non-finite result: the Python exception text, e.g.
  ``TypeError: '<=' not supported between instances of 'str' and 'int'`` (tool_call_failure);
- a well-formed value that names nothing (the tool raises :class:`~tl_lightning.tools.toolkit.ToolError`),
  or any other exception: the service's ``{"error": "City 'Atlantis' not found"}`` (others);
- network failure (seeded ``instability_rate``, :meth:`Sandbox.fail_next`) or timeout:
  ``ConnectionError: HTTPSConnectionPool(host=..., port=443): Max retries exceeded ...`` (tool_instability).

:meth:`Sandbox.execute_outcome` returns that intended category with the text (an executed,
classified reward signal for multi-turn RL; docs/method.md#sandbox-rewards). It never raises.

The time limit covers the argument checks and the tool. The tool runs in a worker thread on a copy
of its toolkit whose state is kept only if it finishes in time: a pure-Python thread cannot be
killed, so a runaway tool keeps running after its timeout, but its writes land in a copy nobody
reads, never in the state of the episode (or of the next one, after :meth:`Sandbox.reset`). It
still holds a CPU; the toolkits are ours and bounded, which is why this is acceptable (do not
register untrusted code).
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
from collections.abc import Iterable
from typing import Any

from tl_lightning.data.schema import FINISH_TOOL, FeedbackCategory, Tool, ToolCall, finish_tool
from tl_lightning.tools.environment import Environment, Outcome, check_arguments
from tl_lightning.tools.toolkit import ToolError, Toolkit
from tl_lightning.tools.toolkits import TOOLKITS

__all__ = ["Sandbox", "default_toolkits", "toolkit_classes"]


#: Exceptions that mean "the call's values were wrong" (tool_call_failure); others are "others".
_VALUE_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, ZeroDivisionError, OverflowError)


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # e.g. an exception holding an int too long for str()
        return type(exc).__name__


def _exception_outcome(exc: BaseException) -> Outcome:
    """The feedback an exception raised while answering a call becomes.

    :class:`~tl_lightning.tools.toolkit.ToolError` is the service's ``{"error": msg}`` (others); an
    exception on the values given is the Python text, e.g. ``KeyError: 'x'`` (tool_call_failure);
    anything else is the service reporting its own failure, ``{"error": "Type: msg"}`` (others).
    """
    if isinstance(exc, ToolError):
        return Outcome(json.dumps({"error": _message(exc)}, ensure_ascii=False), FeedbackCategory.OTHERS)
    if isinstance(exc, _VALUE_ERRORS):
        return Outcome(f"{type(exc).__name__}: {_message(exc)}", FeedbackCategory.TOOL_CALL_FAILURE)
    return Outcome(json.dumps({"error": f"{type(exc).__name__}: {_message(exc)}"}, ensure_ascii=False), FeedbackCategory.OTHERS)


def _instability_text(host: str, name: str) -> str:
    return (
        f"ConnectionError: HTTPSConnectionPool(host='{host}', port=443): Max retries exceeded with url: /v1/{name} "
        "(Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object>: "
        "Failed to establish a new connection: [Errno 111] Connection refused'))"
    )


def _timeout_text(host: str, timeout_s: float) -> str:
    return f"ConnectionError: HTTPSConnectionPool(host='{host}', port=443): Read timed out. (read timeout={timeout_s})"


def _call_tool(kit: Toolkit, name: str, args: dict[str, Any]) -> Outcome:
    """Run one tool of ``kit`` and turn its result (or exception) into feedback."""
    try:
        result = getattr(kit, name)(**args)
    except (Exception, SystemExit) as exc:  # every failure becomes feedback, even a sys.exit()
        return _exception_outcome(exc)
    if isinstance(result, str):
        return Outcome(result, FeedbackCategory.ALL_RIGHT)
    try:  # NaN and infinities are refused: they are not JSON, and a reader would choke on the feedback
        return Outcome(json.dumps(result, ensure_ascii=False, allow_nan=False), FeedbackCategory.ALL_RIGHT)
    except (TypeError, ValueError) as exc:  # e.g. bytes or inf in the result: the real json error text
        return Outcome(f"{type(exc).__name__}: {_message(exc)}", FeedbackCategory.TOOL_CALL_FAILURE)
    except RecursionError as exc:  # a result nested too deep is the service's own failure
        return _exception_outcome(exc)


class Sandbox(Environment):
    """Executes calls against toolkits; deterministic for a given seed, state and call sequence.

    - ``toolkits``: :class:`~tl_lightning.tools.toolkit.Toolkit` instances, classes or shipped
      names; None means :func:`default_toolkits`.
    - ``instability_rate``: the seeded fraction of calls that fail with a transient network error.
    - ``timeout_s``: per-call time limit (argument checks and the tool); None runs the tool inline
      (no thread, no limit: for our own bounded tools, e.g. when generating data).
    - ``expose``: the tool names the model was shown; any other name is a hallucinated tool.
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
        self.final_answer = None

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

    def _run(self, call: ToolCall) -> Outcome:
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        try:
            args = check_arguments(call, self._specs, deadline=deadline)
        except TimeoutError:
            return Outcome(_timeout_text(self._owner[call.name].host, self.timeout_s), FeedbackCategory.TOOL_INSTABILITY)
        if isinstance(args, Outcome):
            return args
        kit = self._owner[call.name]
        # Draw for every valid call, so one call's instability does not shift the others' draws.
        unstable = self._rng.random() < self.instability_rate
        if self._forced_failures > 0:
            self._forced_failures -= 1
            unstable = True
        if unstable:
            return Outcome(_instability_text(kit.host, call.name), FeedbackCategory.TOOL_INSTABILITY)
        if deadline is None:
            return _call_tool(kit, call.name, args)
        worker_kit = copy.copy(kit)
        worker_kit.state = copy.deepcopy(kit.state)
        box: dict[str, Outcome] = {}
        worker = threading.Thread(
            target=lambda: box.setdefault("outcome", _call_tool(worker_kit, call.name, args)), name=f"tool-{call.name}", daemon=True
        )
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if "outcome" not in box:
            return Outcome(_timeout_text(kit.host, self.timeout_s), FeedbackCategory.TOOL_INSTABILITY)
        kit.state = worker_kit.state
        return box["outcome"]


def default_toolkits() -> list[Toolkit]:
    """Fresh instances of every shipped toolkit."""
    return [cls() for cls in TOOLKITS]


def toolkit_classes() -> dict[str, type[Toolkit]]:
    """Toolkit name -> class, for every shipped toolkit."""
    return {cls.name: cls for cls in TOOLKITS}


def _make_toolkit(kit: Toolkit | type[Toolkit] | str) -> Toolkit:
    if isinstance(kit, str):
        classes = toolkit_classes()
        if kit not in classes:
            raise ValueError(f"unknown toolkit {kit!r}; have {sorted(classes)}")
        return classes[kit]()
    return kit() if isinstance(kit, type) else kit
