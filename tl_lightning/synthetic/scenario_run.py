"""Running one scenario in the sandbox: the gold calls, the injected wrong call, the recorded steps.

A :class:`ScenarioRun` is what scenario code (:mod:`tl_lightning.synthetic.scenarios`) talks to:
it draws slot values from the split's pools, executes every call for its real feedback and, when
asked, injects one wrong call of a given kind before a gold call (a prefix-sharing sibling tool,
a hallucinated tool, a hallucinated parameter, a missing parameter, a bad value or a transient
failure), followed by the recovery.
"""

from __future__ import annotations

import copy
import functools
import json
import random
from collections.abc import Sequence
from typing import Any

from tl_lightning.data.schema import Step, Tool, ToolCall
from tl_lightning.synthetic.pools import POOLS, split_pool
from tl_lightning.tools.sandbox import Sandbox

__all__ = ["ERROR_KINDS", "NotApplicable", "ScenarioError", "ScenarioRun", "default_tools", "family", "siblings"]

ERROR_KINDS = ("wrong_tool", "hallucinated_tool", "hallucinated_parameter", "missing_parameter", "bad_value", "instability")

# Name words a model might invent instead of the real ones (hallucinated tools / parameters).
_VERB_SWAPS = {"get": "fetch", "search": "find", "convert": "transform", "calculate": "compute", "book": "reserve",
               "list": "show", "delete": "remove", "create": "add", "send": "post", "add": "create", "read": "open",
               "write": "save", "append": "add", "cancel": "delete", "complete": "finish", "update": "set", "count": "get"}
_PARAM_SWAPS = {"city": "location", "date": "day", "symbol": "ticker", "amount": "value", "from_currency": "source",
                "to_currency": "target", "origin": "from_city", "destination": "to_city", "title": "name", "path": "filename",
                "content": "text", "task_id": "id", "event_id": "id", "booking_id": "id", "flight_id": "id",
                "hotel_id": "id", "restaurant_id": "id", "numbers": "values", "query": "name", "to": "email",
                "value": "amount", "time": "hour", "start_time": "time", "check_in": "date", "bill": "amount",
                "phone": "number", "days": "num_days", "base": "from", "target": "to", "part": "value", "whole": "total"}
_EXTRA_PARAMS = (("language", "en"), ("limit", 5), ("format", "json"), ("verbose", True), ("sort_by", "price"))
_BAD_CITIES = ("Atlantis", "El Dorado", "Gotham", "Springfield", "Shangri-La")


class ScenarioError(RuntimeError):
    """A scenario's gold call failed: a bug in the scenario, never part of the data."""


class NotApplicable(Exception):
    """The requested error kind fits none of this episode's calls: redraw the episode."""


# ------------------------------------------------------------------------------- tool families
def family(name: str) -> str:
    """The prefix family of a tool name: its first word, or two words for the generic ``get_``."""
    words = name.split("_")
    return "_".join(words[:2]) if words[0] == "get" and len(words) > 2 else words[0]


def siblings(name: str, names: Sequence[str]) -> list[str]:
    """The other tools of ``name``'s prefix family (``get_weather_history`` for ``get_weather_forecast``)."""
    return [n for n in names if n != name and family(n) == family(name)]


# ------------------------------------------------------------------------------- scenario run
class ScenarioRun:
    """One scenario run: executes gold calls (and the injected error), records steps and the task.

    Scenario code calls :meth:`ask`, :meth:`call`, :meth:`finish` and the ``expect_*`` methods; the
    generator turns the finished run into a trajectory or a test record.
    """

    def __init__(self, sandbox: Sandbox, rng: random.Random, split: str, listed: Sequence[str],
                 inject: str | None = None, inject_at: int = 0, n_calls: int = 1, allow_fallback: bool = True) -> None:
        self.sandbox, self.rng, self.split, self.listed = sandbox, rng, split, list(listed)
        self.inject, self.inject_at, self.n_calls, self.allow_fallback = inject, inject_at, n_calls, allow_fallback
        self.query = ""
        self.steps: list[Step] = []
        self.gold: list[ToolCall] = []
        self.answer: str | None = None
        self.success: list[dict[str, Any]] = []
        self.initial_state: dict[str, Any] = {}
        self.injected: dict[str, Any] | None = None

    # slot values --------------------------------------------------------------------------
    def pool(self, name: str) -> list[Any]:
        return split_pool(POOLS[name], "test" if self.split.startswith("test") else "train")

    def pick(self, name: str) -> Any:
        return self.rng.choice(self.pool(name))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # conversation -------------------------------------------------------------------------
    def ask(self, templates: Sequence[str], suffix: str = "") -> None:
        self.query = self.rng.choice(list(templates)) + suffix

    def setup(self, toolkit: str, state: dict[str, Any]) -> None:
        """Give a toolkit a starting state (before any call); test tasks record it as ``initial_state``."""
        if self.gold:
            raise ScenarioError("setup() after the first call")
        self.sandbox.toolkits[toolkit].reset(state)
        self.initial_state[toolkit] = copy.deepcopy(state)

    def peek(self, name: str, **arguments: Any) -> dict[str, Any]:
        """Run a call without recording it or changing the state (to pick slot values that work)."""
        snap = self.sandbox.snapshot()
        out = self.sandbox.execute_outcome(ToolCall(name, arguments))
        self.sandbox.restore(snap)
        return json.loads(out.text) if not out.category.is_error else {}

    def call(self, name: str, **arguments: Any) -> dict[str, Any]:
        """Make the next gold call (after the injected wrong one, if this is its turn); returns its result."""
        call = ToolCall(name, arguments)
        if self.inject is not None and self.injected is None and len(self.gold) >= self.inject_at:
            # The requested kind may not apply to this call (no sibling, no required argument):
            # try it on the later calls, and only at the last one fall back to another kind.
            self._inject(call, fallback=len(self.gold) >= self.n_calls - 1)
        self.gold.append(call)
        out = self.sandbox.execute_outcome(call)
        if out.category.is_error:
            raise ScenarioError(f"gold call {name}({arguments}) failed: {out.text}")
        self.steps.append(Step([call], feedback=[out.text], category=out.category))
        return json.loads(out.text)

    def finish(self, answer: str) -> None:
        self.answer = answer

    def expect_answer(self, *values: str) -> None:
        """Success needs every value in the final answer (case-insensitive)."""
        self.success.append({"type": "answer_contains", "values": [str(v) for v in values]})

    def expect_state(self, toolkit: str, key: str, where: dict[str, Any]) -> None:
        """Success needs an item of ``state[toolkit][key]`` that matches ``where``."""
        self.success.append({"type": "state_match", "toolkit": toolkit, "key": key, "where": where})

    def expect_absent(self, toolkit: str, key: str, where: dict[str, Any]) -> None:
        """Success needs no item of ``state[toolkit][key]`` to match ``where``."""
        self.success.append({"type": "state_absent", "toolkit": toolkit, "key": key, "where": where})

    # error injection ----------------------------------------------------------------------
    def _inject(self, gold: ToolCall, fallback: bool) -> None:
        """Execute one wrong call for ``gold`` of the requested kind (or, with ``fallback``, of another kind)."""
        others = [k for k in ERROR_KINDS if k != self.inject]
        self.rng.shuffle(others)
        if fallback and not self.allow_fallback:
            others = []
        for kind in [self.inject, *(others if fallback else [])]:
            for wrong in self._wrong_calls(kind, gold):
                snap = self.sandbox.snapshot()
                if kind == "instability":
                    self.sandbox.fail_next()
                out = self.sandbox.execute_outcome(wrong)
                self.sandbox.restore(snap)  # a failed call leaves no trace in the state
                if out.category.is_error:
                    self.steps.append(Step([wrong], feedback=[out.text], category=out.category))
                    self.injected = {"kind": kind, "requested": self.inject, "category": out.category.value, "step": len(self.steps) - 1}
                    return
        if fallback:
            raise NotApplicable(self.inject)

    def _wrong_calls(self, kind: str, gold: ToolCall) -> list[ToolCall]:
        rng, args, spec = self.rng, gold.arguments, self.sandbox.tool(gold.name)
        all_names = {t.name for t in default_tools()}
        if kind == "wrong_tool":
            sibs = [s for s in siblings(gold.name, self.listed)]
            rng.shuffle(sibs)
            return [ToolCall(s, dict(args)) for s in sibs]
        if kind == "hallucinated_tool":
            words = gold.name.split("_")
            fakes = [
                "_".join([_VERB_SWAPS.get(words[0], "get"), *words[1:]]),  # find_hotels
                gold.name[:-1] if gold.name.endswith("s") else gold.name + "s",  # search_hotel
                "_".join([words[0], words[-1]]) if len(words) > 2 else "",  # get_forecast
            ]
            fakes = [f for f in dict.fromkeys(fakes) if f and f not in all_names]
            return [ToolCall(rng.choice(fakes), dict(args))] if fakes else []
        if kind == "hallucinated_parameter":
            renames = [a for a in args if a in _PARAM_SWAPS and _PARAM_SWAPS[a] not in spec.properties]
            if renames and rng.random() < 0.6:
                a = rng.choice(renames)
                return [ToolCall(gold.name, {(_PARAM_SWAPS[a] if k == a else k): v for k, v in args.items()})]
            extra, value = rng.choice([p for p in _EXTRA_PARAMS if p[0] not in spec.properties])
            return [ToolCall(gold.name, {**args, extra: value})]
        if kind == "missing_parameter":
            required = [a for a in spec.required if a in args]
            if not required:
                return []
            drop = rng.choice(required)
            return [ToolCall(gold.name, {k: v for k, v in args.items() if k != drop})]
        if kind == "bad_value":
            return [ToolCall(gold.name, {**args, a: v}) for a, v in self._bad_values(gold, spec)]
        return [gold]  # instability: the right call, failing in the network

    def _bad_values(self, gold: ToolCall, spec: Tool) -> list[tuple[str, Any]]:
        """Wrong values a model plausibly writes. A wrong type or format makes the tool raise a Python
        error (tool_call_failure); a well-formed value that names nothing gets the tool's
        ``{"error": ...}`` (others). Either family comes first half of the time."""
        form: list[tuple[str, Any]] = []
        domain: list[tuple[str, Any]] = []
        for a, v in gold.arguments.items():
            t = spec.properties[a].get("type")
            if t in ("integer", "number") and not isinstance(v, bool):
                form.append((a, f"{v} {a}" if self.rng.random() < 0.5 else str(v)))
            elif "enum" in spec.properties[a]:
                form.append((a, str(v).upper()))
            elif a in ("date", "check_in", "due_date", "start_date", "end_date"):
                d = v.split("-")
                form.append((a, f"{d[2]}/{d[1]}/{d[0]}"))
            elif a in ("time", "start_time"):
                form.append((a, f"{int(v[:2]) % 12 or 12}{'pm' if int(v[:2]) >= 12 else 'am'}"))
            elif a == "numbers":
                form.append((a, ", ".join(str(x) for x in v)))
            elif a == "to":
                form.append((a, v.split("@")[0].capitalize()))
            elif a in ("query", "title"):
                form.append((a, ""))
            elif a in ("city", "origin", "destination"):
                domain.append((a, self.rng.choice(_BAD_CITIES)))
            elif a.endswith("_id"):
                domain.append((a, v.replace("-", "").lower() + "0" if isinstance(v, str) else v + 100))
            elif a in ("from_currency", "to_currency", "base", "target"):
                domain.append((a, {"USD": "US$", "EUR": "EURO", "GBP": "POUND"}.get(v, v + "X")))
            elif a == "symbol":
                domain.append((a, v[::-1]))
            elif a in ("from_unit", "to_unit"):
                domain.append((a, {"km": "kilometers", "mi": "miles", "kg": "kilos", "lb": "pounds"}.get(v, v + "s")))
            elif a in ("from_zone", "to_zone"):
                domain.append((a, v + "T"))
            elif a == "phone":
                domain.append((a, v.replace("-", "")))
            elif a == "path":
                domain.append((a, "/" + v.rsplit("/", 1)[-1]))
        self.rng.shuffle(form)
        self.rng.shuffle(domain)
        return domain + form if self.rng.random() < 0.5 else form + domain


@functools.lru_cache(maxsize=1)
def default_tools() -> list[Tool]:
    """Every shipped tool (cached: the schemas are a property of the code)."""
    return Sandbox(timeout_s=None).tools
