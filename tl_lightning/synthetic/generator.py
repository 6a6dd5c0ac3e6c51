"""Synthetic tool-use trajectories with real, executed error feedback (the quick-start dataset).

    python -m tl_lightning.synthetic.generator --out data/qs --n-train 1217 --n-test 300 --seed 0 --error-rate 0.17

Every call of every trajectory runs in the :class:`~tl_lightning.tools.sandbox.Sandbox`, so each
feedback text is what the tool really answered. A requested fraction of trajectories (exactly
``round(rate * n)``) gets one injected wrong call, executed for its real error feedback and followed
by the recovery (the correct call). Injected kinds cycle through: a prefix-sharing sibling tool,
a hallucinated tool, a hallucinated parameter, a missing parameter, a bad value and a transient
failure. Each trajectory lists 4-8 tools that always include the prefix-sharing siblings of the
gold tools. Test splits draw slot values that training never uses. A seed gives byte-identical files.

Files: ``train.jsonl`` and ``val.jsonl`` (the ``openai`` trajectory format), ``test_single.jsonl``
(first-step cases with gold calls), ``test_multi.jsonl`` (sandbox tasks with a success condition),
``manifest.json``. :func:`quickstart_path` generates the quick-start set once into the cache.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tl_lightning.synthetic.scenarios import office  # noqa: F401  (registers part 2 of the scenarios)
from tl_lightning.data.schema import Message, Step, ToolCall, Trajectory
from tl_lightning.synthetic.scenarios.personal import POOLS, SCENARIOS, Scenario, split_pool
from tl_lightning.tools.sandbox import Sandbox, Tool, default_toolkits

__all__ = [
    "ERROR_KINDS",
    "QUICKSTART",
    "VERSION",
    "Episode",
    "check_success",
    "family",
    "generate",
    "main",
    "quickstart_path",
    "siblings",
]

#: Bumped whenever generated content changes, so cached quick-start sets are regenerated.
VERSION = "4"
#: The quick-start sizes (1,217 is the paper's training-set size) and generator settings.
QUICKSTART = {"n_train": 1217, "n_val": 100, "n_test_single": 300, "n_test_multi": 100, "seed": 0, "error_rate": 0.17}
SPLITS = ("train", "val", "test_single", "test_multi")
ERROR_KINDS = ("wrong_tool", "hallucinated_tool", "hallucinated_parameter", "missing_parameter", "bad_value", "instability")
MIN_TOOLS, TYPICAL_MAX_TOOLS, MAX_TOOLS = 4, 6, 8

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


class _NotApplicable(Exception):
    """The requested error kind fits none of this episode's calls: redraw the episode."""


# ------------------------------------------------------------------------------- tool families
def family(name: str) -> str:
    """The prefix family of a tool name: its first word, or two words for the generic ``get_``."""
    words = name.split("_")
    return "_".join(words[:2]) if words[0] == "get" and len(words) > 2 else words[0]


def siblings(name: str, names: Sequence[str]) -> list[str]:
    """The other tools of ``name``'s prefix family (``get_weather_history`` for ``get_weather_forecast``)."""
    return [n for n in names if n != name and family(n) == family(name)]


# ------------------------------------------------------------------------------------ episode
class Episode:
    """One scenario run: executes gold calls (and the injected error), records steps and the task.

    Scenario code calls :meth:`ask`, :meth:`call`, :meth:`finish` and the ``expect_*`` methods.
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
            raise _NotApplicable(self.inject)

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


_DEFAULT_TOOLS: list[Tool] | None = None


def default_tools() -> list[Tool]:
    """Every shipped tool (cached: the schemas are a property of the code)."""
    global _DEFAULT_TOOLS
    if _DEFAULT_TOOLS is None:
        _DEFAULT_TOOLS = Sandbox(timeout_s=None).tools
    return _DEFAULT_TOOLS


# ---------------------------------------------------------------------------------- generation
def list_tools(gold_names: Sequence[str], rng: random.Random) -> list[str]:
    """The tools shown with a trajectory: gold tools, all their prefix siblings, then distractors (4-8 in all)."""
    names = [t.name for t in default_tools()]
    required = list(dict.fromkeys([g for name in gold_names for g in (name, *siblings(name, names))]))
    # 4-6 tools keep prompts short (DESIGN.md §5); a gold family can push a list up to 8.
    n = rng.randint(max(MIN_TOOLS, len(required)), max(TYPICAL_MAX_TOOLS, len(required)))
    others = [t for t in names if t not in required]
    listed = required + rng.sample(others, n - len(required))
    rng.shuffle(listed)
    return listed


def run_episode(scenario: Scenario, split: str, rng: random.Random, sandbox: Sandbox, inject: str | None = None,
                allow_fallback: bool = True) -> Episode:
    """Run one scenario from a fresh sandbox state; raises :class:`ScenarioError` on a scenario bug."""
    sandbox.reset()
    listed = list_tools(scenario.tools, rng)
    at = rng.randrange(len(scenario.tools))
    ep = Episode(sandbox, rng, split, listed, inject=inject, inject_at=at, n_calls=len(scenario.tools),
                 allow_fallback=allow_fallback)
    scenario.run(ep)
    done = tuple(c.name for c in ep.gold)
    if done != scenario.tools or ep.answer is None or not ep.success:
        raise ScenarioError(f"scenario {scenario.name}: made {done}, declared {scenario.tools}; answer/success set: "
                            f"{ep.answer is not None}/{bool(ep.success)}")
    return ep


def _episode(split: str, seed: int, i: int, sandbox: Sandbox, inject: str | None = None) -> tuple[Scenario, Episode]:
    """The ``i``-th episode of a split.

    A draw whose slot values do not fit the scenario (e.g. nothing to book) is redrawn, and so, for
    its first attempts, is one where the requested error kind fits no call (keeps the kinds balanced).
    """
    for attempt in range(20):
        rng = random.Random(f"tl-synthetic:{seed}:{split}:{i}:{attempt}")
        scenario = SCENARIOS[rng.randrange(len(SCENARIOS))]
        try:
            return scenario, run_episode(scenario, split, rng, sandbox, inject, allow_fallback=attempt >= 10)
        except (StopIteration, ValueError, IndexError, KeyError, _NotApplicable):  # e.g. an empty search result
            continue
    raise ScenarioError(f"{split} episode {i}: no fitting draw in 20 attempts")


def _tools(names: Sequence[str]) -> list[Tool]:
    by_name = {t.name: t for t in default_tools()}
    return [by_name[n] for n in names]


def _trajectories(split: str, n: int, seed: int, error_rate: float, sandbox: Sandbox) -> list[Trajectory]:
    rng = random.Random(f"tl-synthetic:{seed}:{split}:errors")
    n_err = round(error_rate * n)
    chosen = sorted(rng.sample(range(n), n_err))
    kinds = [ERROR_KINDS[k % len(ERROR_KINDS)] for k in range(n_err)]
    rng.shuffle(kinds)
    inject = dict(zip(chosen, kinds, strict=True))
    out = []
    for i in range(n):
        scenario, ep = _episode(split, seed, i, sandbox, inject.get(i))
        out.append(Trajectory(
            id=f"qs-{split}-{i:05d}", tools=_tools(ep.listed), messages=[Message("user", ep.query)], steps=ep.steps,
            final_answer=ep.answer, meta={"scenario": scenario.name, "error": ep.injected},
        ))
    return out


def _gold_variants(call: ToolCall) -> list[list[dict[str, Any]]]:
    """Acceptable answers: the call as asked, and the same call with defaulted optional arguments spelt out or left out."""
    spec = next(t for t in default_tools() if t.name == call.name)
    defaults = {a: p["default"] for a, p in spec.properties.items() if "default" in p}
    minimal = {a: v for a, v in call.arguments.items() if not (a in defaults and defaults[a] == v)}
    maximal = {**defaults, **call.arguments}
    variants = []
    for args in (call.arguments, minimal, maximal):
        answer = [{"name": call.name, "arguments": args}]
        if answer not in variants:
            variants.append(answer)
    return variants


def _test_single(n: int, seed: int, sandbox: Sandbox) -> list[dict[str, Any]]:
    records = []
    for i in range(n):
        scenario, ep = _episode("test_single", seed, i, sandbox)
        records.append({"id": f"qs-test_single-{i:05d}", "tools": [t.to_openai() for t in _tools(ep.listed)],
                        "messages": [{"role": "user", "content": ep.query}], "gold": _gold_variants(ep.gold[0]),
                        "scenario": scenario.name})
    return records


def _test_multi(n: int, seed: int, sandbox: Sandbox) -> list[dict[str, Any]]:
    owner = {t.name: kit.name for kit in sandbox.toolkits.values() for t in kit.tools}
    records = []
    for i in range(n):
        scenario, ep = _episode("test_multi", seed, i, sandbox)
        toolkits = sorted({owner[t] for t in ep.listed} | set(ep.initial_state))
        records.append({"id": f"qs-test_multi-{i:05d}", "tools": [t.to_openai() for t in _tools(ep.listed)],
                        "messages": [{"role": "user", "content": ep.query}], "scenario": scenario.name,
                        "toolkits": toolkits, "initial_state": ep.initial_state,
                        "success": {"finished": True, "all": ep.success}, "max_turns": 9,
                        "reference": {"calls": [c.to_dict() for c in ep.gold], "answer": ep.answer}})
    return records


def _write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def generate(out: str | Path, n_train: int = 1217, n_val: int = 100, n_test_single: int = 300, n_test_multi: int = 100,
             seed: int = 0, error_rate: float = 0.17) -> dict[str, Any]:
    """Write the four splits and ``manifest.json`` into ``out``; returns the manifest."""
    from tl_lightning.data.readers.openai import write_openai_jsonl

    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(default_toolkits(), seed=seed, timeout_s=None)  # our own bounded tools: no thread needed
    train = _trajectories("train", n_train, seed, error_rate, sandbox)
    val = _trajectories("val", n_val, seed, error_rate, sandbox)
    write_openai_jsonl(train, out / "train.jsonl")
    write_openai_jsonl(val, out / "val.jsonl")
    _write_jsonl(_test_single(n_test_single, seed, sandbox), out / "test_single.jsonl")
    _write_jsonl(_test_multi(n_test_multi, seed, sandbox), out / "test_multi.jsonl")
    trajs = train + val
    manifest = {
        "generator": "tl_lightning.synthetic.generator",
        "version": VERSION,
        "seed": seed,
        "error_rate": error_rate,
        "counts": {"train": len(train), "val": len(val), "test_single": n_test_single, "test_multi": n_test_multi},
        "trajectories_with_error": {s: sum(any(st.is_error for st in t.steps) for t in ts) for s, ts in (("train", train), ("val", val))},
        "injected_kinds": dict(sorted(Counter(t.meta["error"]["kind"] for t in trajs if t.meta["error"]).items())),
        "error_categories": dict(sorted(Counter(st.category.value for t in trajs for st in t.steps if st.is_error).items())),
        "steps_per_trajectory": dict(sorted(Counter(str(len(t.steps)) for t in trajs).items())),
        "n_tools": len(default_tools()),
        "toolkits": sorted(sandbox.toolkits),
        "scenarios": len(SCENARIOS),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


# ---------------------------------------------------------------------------------- success
def _matches(item: Any, where: dict[str, Any]) -> bool:
    return isinstance(item, dict) and all(item.get(k) == v for k, v in where.items())


def _collection_has(coll: Any, where: dict[str, Any]) -> bool:
    if isinstance(coll, list):
        return any(_matches(x, where) for x in coll)
    if isinstance(coll, dict):
        if any(isinstance(v, dict) for v in coll.values()):
            return any(_matches(x, where) for x in coll.values())
        return _matches(coll, where)  # a mapping of plain values (e.g. path -> content)
    return False


def _contains_word(text: str, value: str) -> bool:
    """``value`` occurs in ``text`` not glued to letters or digits ("12.8" is not in "112.87", "no" not in "cannot")."""
    return re.search(rf"(?<![a-z0-9]){re.escape(value)}(?![a-z0-9])", text) is not None


def check_success(task_meta: dict[str, Any], sandbox: Any, final_answer: str | None) -> bool:
    """Whether a multi-turn task succeeded: its ``success`` condition on the sandbox's final state and answer.

    The condition is ``{"finished": bool, "all": [cond, ...]}`` with conditions
    ``{"type": "answer_contains", "values": [...]}`` (each value in the final answer, case-insensitive,
    not glued to other letters or digits),
    ``{"type": "state_match" | "state_absent", "toolkit", "key", "where": {...}}`` (some / no item of
    ``state[toolkit][key]`` has all the ``where`` fields).
    """
    cond = task_meta.get("success")
    if not isinstance(cond, dict):
        raise ValueError(f"task has no success condition: {str(task_meta)[:200]}")
    if cond.get("finished", True) and final_answer is None:
        return False
    state = {name: kit.state for name, kit in sandbox.toolkits.items()}
    answer = (final_answer or "").lower()
    for c in cond.get("all", []):
        kind = c.get("type")
        if kind == "answer_contains":
            ok = all(_contains_word(answer, str(v).lower()) for v in c["values"])
        elif kind in ("state_match", "state_absent"):
            has = _collection_has(state.get(c["toolkit"], {}).get(c["key"]), c["where"])
            ok = has if kind == "state_match" else not has
        else:
            raise ValueError(f"unknown success condition type {kind!r}")
        if not ok:
            return False
    return True


# -------------------------------------------------------------------------------- quick-start
def cache_root() -> Path:
    return Path(os.environ.get("TL_LIGHTNING_CACHE") or Path.home() / ".cache" / "tl_lightning")


def quickstart_path(split: str = "train") -> Path:
    """The quick-start file of ``split`` (train, val, test_single, test_multi), generated on first use.

    Generation (a few seconds) writes into a temporary folder that is then renamed into place, so
    concurrent processes (e.g. DDP ranks) never see a half-written set: one rename wins, the others
    discard their copy.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown quick-start split {split!r}; choose one of {SPLITS}")
    q = QUICKSTART
    final = cache_root() / f"quickstart-{VERSION}-{q['seed']}"
    if not (final / "manifest.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            generate(tmp, q["n_train"], q["n_val"], q["n_test_single"], q["n_test_multi"], q["seed"], q["error_rate"])
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished first
                if not (final / "manifest.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final / f"{split}.jsonl"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tl_lightning.synthetic.generator", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n-train", type=int, default=QUICKSTART["n_train"])
    p.add_argument("--n-val", type=int, default=QUICKSTART["n_val"])
    p.add_argument("--n-test", type=int, default=QUICKSTART["n_test_single"], help="single-turn test cases")
    p.add_argument("--n-test-multi", type=int, default=None, help="multi-turn test tasks (default: n-test / 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--error-rate", type=float, default=QUICKSTART["error_rate"], help="fraction of trajectories with an injected error")
    a = p.parse_args(argv)
    n_multi = a.n_test_multi if a.n_test_multi is not None else max(1, a.n_test // 3)
    manifest = generate(a.out, a.n_train, a.n_val, a.n_test, n_multi, a.seed, a.error_rate)
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
