"""Synthetic tool-use trajectories with real, executed error feedback (the quick-start dataset).

    python -m tl_lightning.synthetic                  # the quick-start set, into the cache (once)
    python -m tl_lightning.synthetic --out data/qs --n-train 1217 --n-test 300 --seed 0 --error-rate 0.17

Every call of every trajectory runs in the :class:`~tl_lightning.tools.sandbox.Sandbox`, so each
feedback text is what the tool really answered. A requested fraction of trajectories (exactly
``round(rate * n)``) gets one injected wrong call, executed for its real error feedback and followed
by the recovery (the correct call). Injected kinds cycle through: a prefix-sharing sibling tool,
a hallucinated tool, a hallucinated parameter, a missing parameter, a bad value and a transient
failure. Each trajectory lists 4-8 tools that always include the prefix-sharing siblings of the
gold tools. Test splits draw slot values that training never uses. A seed gives byte-identical files.

Files: ``train.jsonl`` and ``val.jsonl`` (the ``openai`` trajectory format), ``test_single.jsonl``
(first-step cases with gold calls), ``test_multi.jsonl`` (sandbox tasks with a success condition),
``train_multi.jsonl`` (tasks of the same format for multi-turn RL, drawn like ``train`` from the
training values, so RL never sees a test value), ``manifest.json``. :func:`ensure_quickstart_data`
generates the quick-start set once into the cache, where
:func:`tl_lightning.data.paths.resolve_data_path` finds it. On request (``large=True``, ``--large``) it adds
``train_large.jsonl``: 10,000 training trajectories with the same generator, error rate and training value pools,
byte-identical to the ``train.jsonl`` of ``--n-train 10000`` (``configs/small.yaml`` trains on it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tl_lightning.data.paths import LARGE_SPLIT, QUICKSTART_SEED, QUICKSTART_VERSION, quickstart_dir
from tl_lightning.data.readers.openai import write_openai_jsonl
from tl_lightning.data.schema import Message, Tool, ToolCall, Trajectory
from tl_lightning.synthetic.scenario_run import (
    ERROR_KINDS,
    NotApplicable,
    ScenarioError,
    ScenarioRun,
    default_tools,
    siblings,
)
from tl_lightning.synthetic.scenarios import office, personal
from tl_lightning.synthetic.scenarios.base import Scenario
from tl_lightning.tools.sandbox import Sandbox, default_toolkits

__all__ = ["N_TRAIN_LARGE", "QUICKSTART", "SCENARIOS", "ensure_quickstart_data", "generate", "main", "run_scenario"]

#: The quick-start sizes (1,217 is the paper's training-set size) and generator settings.
QUICKSTART = {"n_train": 1217, "n_val": 100, "n_test_single": 300, "n_test_multi": 100, "n_train_multi": 400,
              "seed": QUICKSTART_SEED, "error_rate": 0.17}
#: Size of the on-demand ``train_large`` split (``configs/small.yaml``).
N_TRAIN_LARGE = 10_000
MIN_TOOLS, TYPICAL_MAX_TOOLS = 4, 6
#: Every scenario, in the order the generator draws them by index (so the order is part of the output).
SCENARIOS: tuple[Scenario, ...] = (*personal.SCENARIOS, *office.SCENARIOS)


# ---------------------------------------------------------------------------------- generation
def list_tools(gold_names: Sequence[str], rng: random.Random) -> list[str]:
    """The tools shown with a trajectory: gold tools, all their prefix siblings, then distractors (4-8 in all)."""
    names = [t.name for t in default_tools()]
    required = list(dict.fromkeys([g for name in gold_names for g in (name, *siblings(name, names))]))
    # 4-6 tools keep prompts short (docs/method.md#quick-start-scale); a gold family can push a list up to 8.
    n = rng.randint(max(MIN_TOOLS, len(required)), max(TYPICAL_MAX_TOOLS, len(required)))
    others = [t for t in names if t not in required]
    listed = required + rng.sample(others, n - len(required))
    rng.shuffle(listed)
    return listed


def run_scenario(scenario: Scenario, split: str, rng: random.Random, sandbox: Sandbox, inject: str | None = None,
                 allow_fallback: bool = True) -> ScenarioRun:
    """Run one scenario from a fresh sandbox state; raises :class:`ScenarioError` on a scenario bug."""
    sandbox.reset()
    listed = list_tools(scenario.tools, rng)
    at = rng.randrange(len(scenario.tools))
    ep = ScenarioRun(sandbox, rng, split, listed, inject=inject, inject_at=at, n_calls=len(scenario.tools),
                     allow_fallback=allow_fallback)
    scenario.run(ep)
    done = tuple(c.name for c in ep.gold)
    if done != scenario.tools or ep.answer is None or not ep.success:
        raise ScenarioError(f"scenario {scenario.name}: made {done}, declared {scenario.tools}; answer/success set: "
                            f"{ep.answer is not None}/{bool(ep.success)}")
    return ep


def _draw(split: str, seed: int, i: int, sandbox: Sandbox, inject: str | None = None) -> tuple[Scenario, ScenarioRun]:
    """The ``i``-th scenario run of a split.

    A draw whose slot values do not fit the scenario (e.g. nothing to book) is redrawn, and so, for
    its first attempts, is one where the requested error kind fits no call (keeps the kinds balanced).
    """
    for attempt in range(20):
        rng = random.Random(f"tl-synthetic:{seed}:{split}:{i}:{attempt}")
        scenario = SCENARIOS[rng.randrange(len(SCENARIOS))]
        try:
            return scenario, run_scenario(scenario, split, rng, sandbox, inject, allow_fallback=attempt >= 10)
        except (StopIteration, ValueError, IndexError, KeyError, NotApplicable):  # e.g. an empty search result
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
        scenario, ep = _draw(split, seed, i, sandbox, inject.get(i))
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
        scenario, ep = _draw("test_single", seed, i, sandbox)
        records.append({"id": f"qs-test_single-{i:05d}", "tools": [t.to_openai() for t in _tools(ep.listed)],
                        "messages": [{"role": "user", "content": ep.query}], "gold": _gold_variants(ep.gold[0]),
                        "scenario": scenario.name})
    return records


def _multi_tasks(split: str, n: int, seed: int, sandbox: Sandbox) -> list[dict[str, Any]]:
    """Sandbox tasks with a success check; ``split`` picks the value pools (``test_multi``: test-only values)."""
    owner = {t.name: kit.name for kit in sandbox.toolkits.values() for t in kit.tools}
    records = []
    for i in range(n):
        scenario, ep = _draw(split, seed, i, sandbox)
        toolkits = sorted({owner[t] for t in ep.listed} | set(ep.initial_state))
        records.append({"id": f"qs-{split}-{i:05d}", "tools": [t.to_openai() for t in _tools(ep.listed)],
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
             seed: int = 0, error_rate: float = 0.17, n_train_multi: int = 0) -> dict[str, Any]:
    """Write the splits and ``manifest.json`` into ``out``; returns the manifest. ``train_multi.jsonl`` is
    written only when ``n_train_multi > 0``; it is drawn last, so it leaves the other files unchanged."""
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
    _write_jsonl(_multi_tasks("test_multi", n_test_multi, seed, sandbox), out / "test_multi.jsonl")
    counts = {"train": len(train), "val": len(val), "test_single": n_test_single, "test_multi": n_test_multi}
    if n_train_multi > 0:
        _write_jsonl(_multi_tasks("train_multi", n_train_multi, seed, sandbox), out / "train_multi.jsonl")
        counts["train_multi"] = n_train_multi
    trajs = train + val
    manifest = {
        "generator": "tl_lightning.synthetic.generator",
        "version": QUICKSTART_VERSION,  # bumped in data/paths.py whenever the output changes
        "seed": seed,
        "error_rate": error_rate,
        "counts": counts,
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


# -------------------------------------------------------------------------------- quick-start
def ensure_quickstart_data(large: bool = False) -> Path:
    """Generate the quick-start set into :func:`~tl_lightning.data.paths.quickstart_dir` unless it is
    there already; returns that folder. With ``large``, also its ``train_large.jsonl`` (:data:`N_TRAIN_LARGE`
    trajectories). Idempotent and safe to call from several processes at once.

    Generation (a few seconds) writes into a temporary folder that is then renamed into place, so
    concurrent processes (e.g. DDP ranks) never see a half-written set: one rename wins, the others
    discard their copy.
    """
    q = QUICKSTART
    final = quickstart_dir()
    if not (final / "manifest.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            generate(tmp, q["n_train"], q["n_val"], q["n_test_single"], q["n_test_multi"], q["seed"], q["error_rate"],
                     q["n_train_multi"])
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
            try:
                os.rename(tmp, final)
            except OSError:  # another process finished first
                if not (final / "manifest.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    large_file = final / f"{LARGE_SPLIT}.jsonl"
    if large and not large_file.is_file():
        # A generation of its own, train first from a fresh sandbox: the file equals `--n-train N_TRAIN_LARGE`'s
        # train.jsonl, and the other splits keep their bytes.
        tmp = Path(tempfile.mkdtemp(prefix=f".{LARGE_SPLIT}-", dir=final))
        try:
            generate(tmp, N_TRAIN_LARGE, 0, 0, 0, q["seed"], q["error_rate"])
            os.replace(tmp / "train.jsonl", large_file)  # atomic: a reader sees all of it or nothing
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


_SIZE_OPTIONS = ("n_train", "n_val", "n_test", "n_test_multi", "n_train_multi", "seed", "error_rate")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tl_lightning.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None,
                   help="output folder (default: generate the quick-start set into the cache, with its fixed settings)")
    p.add_argument("--n-train", type=int, default=None, help=f"training trajectories (default {QUICKSTART['n_train']})")
    p.add_argument("--n-val", type=int, default=None, help=f"validation trajectories (default {QUICKSTART['n_val']})")
    p.add_argument("--n-test", type=int, default=None, help=f"single-turn test cases (default {QUICKSTART['n_test_single']})")
    p.add_argument("--n-test-multi", type=int, default=None, help="multi-turn test tasks (default: n-test / 3)")
    p.add_argument("--n-train-multi", type=int, default=None,
                   help=f"multi-turn RL tasks drawn from the training values (default {QUICKSTART['n_train_multi']})")
    p.add_argument("--seed", type=int, default=None, help=f"default {QUICKSTART['seed']}")
    p.add_argument("--error-rate", type=float, default=None,
                   help=f"fraction of trajectories with an injected error (default {QUICKSTART['error_rate']})")
    p.add_argument("--large", action="store_true",
                   help=f"also generate the cached set's {LARGE_SPLIT} split ({N_TRAIN_LARGE:,} trajectories, configs/small.yaml)")
    a = p.parse_args(argv)
    if a.out is None:
        given = [f"--{o.replace('_', '-')}" for o in _SIZE_OPTIONS if getattr(a, o) is not None]
        if given:
            p.error(f"{', '.join(given)} need --out: the cached quick-start set always has its fixed settings")
        folder = ensure_quickstart_data(large=a.large)
        print(folder)
        return 0
    if a.large:
        p.error(f"--large adds a split to the cached quick-start set; with --out, give --n-train {N_TRAIN_LARGE} instead")
    n_test = a.n_test if a.n_test is not None else QUICKSTART["n_test_single"]
    n_multi = a.n_test_multi if a.n_test_multi is not None else max(1, n_test // 3)
    manifest = generate(
        a.out,
        a.n_train if a.n_train is not None else QUICKSTART["n_train"],
        a.n_val if a.n_val is not None else QUICKSTART["n_val"],
        n_test,
        n_multi,
        a.seed if a.seed is not None else QUICKSTART["seed"],
        a.error_rate if a.error_rate is not None else QUICKSTART["error_rate"],
        a.n_train_multi if a.n_train_multi is not None else QUICKSTART["n_train_multi"],
    )
    print(json.dumps(manifest, indent=2, sort_keys=True))
    return 0
