"""Synthetic generator: executed error feedback per category, rate, determinism, strict round trip,
tool lists, unseen test values, multi-turn success checks, explicit scenario lists and the cached
quick-start set."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tl_lightning.data.feedback import classify_feedback
from tl_lightning.data.paths import QUICKSTART_VERSION, quickstart_dir, resolve_data_path
from tl_lightning.data.readers import read_trajectories
from tl_lightning.data.schema import FeedbackCategory as C
from tl_lightning.data.schema import ToolCall
from tl_lightning.synthetic import ensure_quickstart_data
from tl_lightning.synthetic import generator as synthetic
from tl_lightning.synthetic.pools import POOLS, split_pool
from tl_lightning.synthetic.scenario_run import ERROR_KINDS, default_tools, family, siblings
from tl_lightning.synthetic.scenarios import base, office, personal
from tl_lightning.tools.sandbox import Sandbox
from tl_lightning.tools.tasks import check_success
from tl_lightning.tools.toolkits._common import CITIES

SIZES = {"n_train": 600, "n_val": 20, "n_test_single": 40, "n_test_multi": 40, "n_train_multi": 40}

#: The feedback category each injected kind must produce (a wrong sibling fails on its arguments).
INTENDED = {
    "wrong_tool": {C.PARAMETER_HALLUCINATION, C.PARAMETER_MISSING},
    "hallucinated_tool": {C.TOOL_HALLUCINATION},
    "hallucinated_parameter": {C.PARAMETER_HALLUCINATION},
    "missing_parameter": {C.PARAMETER_MISSING},
    "bad_value": {C.TOOL_CALL_FAILURE, C.OTHERS},
    "instability": {C.TOOL_INSTABILITY},
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(out, seed=3, error_rate=0.17, **SIZES)
    return out


@pytest.fixture(scope="module")
def train(generated):
    return read_trajectories(generated / "train.jsonl", format="openai", strict=True)


def test_files_and_manifest(generated):
    manifest = json.loads((generated / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 600, "val": 20, "test_single": 40, "test_multi": 40, "train_multi": 40}
    assert manifest["seed"] == 3 and manifest["version"] == QUICKSTART_VERSION
    assert manifest["trajectories_with_error"] == {"train": 102, "val": 3}  # round(0.17 * n)
    assert set(manifest["injected_kinds"]) == set(ERROR_KINDS)
    assert manifest["n_tools"] >= 40 and len(manifest["toolkits"]) >= 8
    for split, n in manifest["counts"].items():
        assert len((generated / f"{split}.jsonl").read_text().splitlines()) == n


def test_strict_round_trip_through_openai_reader(generated, train):
    assert len(train) == 600 and train.report.n_skipped == 0
    sandbox = Sandbox(timeout_s=None)
    again = synthetic._trajectories("train", 600, 3, 0.17, sandbox)
    for read, made in zip(train, again, strict=True):
        assert read.id == made.id and read.query == made.query and read.final_answer == made.final_answer
        assert [t.name for t in read.tools] == [t.name for t in made.tools]
        assert [(c.name, c.arguments) for s in read.steps for c in s.calls] == [(c.name, c.arguments) for s in made.steps for c in s.calls]
        assert [s.feedback for s in read.steps] == [s.feedback for s in made.steps]
        # the reader's classifier agrees with the sandbox's intended category on every step
        assert [s.category for s in read.steps] == [s.category for s in made.steps]


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_each_injected_kind_classifies_as_intended(train, kind):
    hits = [t for t in train if t.meta["error"] and t.meta["error"]["kind"] == kind]
    assert len(hits) >= 10
    for t in hits:
        err = t.meta["error"]
        step = t.steps[err["step"]]
        category = classify_feedback(step.feedback[0])
        assert category.value == err["category"] and category in INTENDED[kind], (t.id, step.feedback)
        # the recovery: the next step makes the correct call, and it succeeds
        nxt = t.steps[err["step"] + 1]
        assert nxt.category is C.ALL_RIGHT
        if kind == "instability":
            assert nxt.calls[0].to_dict() == step.calls[0].to_dict()
        else:
            assert nxt.calls[0].to_dict() != step.calls[0].to_dict()
        if kind == "wrong_tool":
            assert step.calls[0].name in siblings(nxt.calls[0].name, t.tool_names)


def test_clean_steps_are_never_errors(train):
    for t in train:
        error_steps = [i for i, s in enumerate(t.steps) if s.is_error]
        assert error_steps == ([t.meta["error"]["step"]] if t.meta["error"] else []), t.id


def test_error_rate_within_two_points(generated, tmp_path):
    for path, rate in ((generated, 0.17),):
        trajs = read_trajectories(path / "train.jsonl", format="openai")
        measured = sum(any(s.is_error for s in t.steps) for t in trajs) / len(trajs)
        assert abs(measured - rate) <= 0.02
    synthetic.generate(tmp_path, n_train=200, n_val=0, n_test_single=1, n_test_multi=1, seed=1, error_rate=0.4)
    trajs = read_trajectories(tmp_path / "train.jsonl", format="openai")
    assert sum(any(s.is_error for s in t.steps) for t in trajs) == 80


def test_same_seed_gives_identical_bytes(generated, tmp_path):
    synthetic.generate(tmp_path / "a", seed=3, error_rate=0.17, **SIZES)
    for name in ("train.jsonl", "val.jsonl", "test_single.jsonl", "test_multi.jsonl", "train_multi.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (generated / name).read_bytes(), name
    # train_multi is drawn last: asking for none leaves every other file as it was
    synthetic.generate(tmp_path / "c", seed=3, error_rate=0.17, **{**SIZES, "n_train_multi": 0})
    assert not (tmp_path / "c" / "train_multi.jsonl").exists()
    for name in ("train.jsonl", "val.jsonl", "test_single.jsonl", "test_multi.jsonl"):
        assert (tmp_path / "c" / name).read_bytes() == (generated / name).read_bytes(), name
    synthetic.generate(tmp_path / "b", seed=4, error_rate=0.17, **SIZES)
    assert (tmp_path / "b" / "train.jsonl").read_bytes() != (generated / "train.jsonl").read_bytes()


@pytest.mark.slow
def test_same_bytes_in_a_fresh_process(generated, tmp_path):
    # Python's str hash is salted per process: the generator must not depend on it.
    code = ("from tl_lightning.synthetic import generator as synthetic; "
            f"synthetic.generate({str(tmp_path)!r}, seed=3, error_rate=0.17, n_train=600, n_val=20, n_test_single=40, n_test_multi=40)")
    subprocess.run([sys.executable, "-c", code], check=True, env={**__import__("os").environ, "PYTHONHASHSEED": "123"})
    assert (tmp_path / "train.jsonl").read_bytes() == (generated / "train.jsonl").read_bytes()


def test_tool_lists_hold_gold_tools_and_their_prefix_siblings(train):
    for t in train:
        names = t.tool_names
        assert 4 <= len(names) <= 8, t.id
        gold = [s.calls[0].name for s in t.steps if not s.is_error]
        for g in gold:
            assert g in names and set(siblings(g, [x.name for x in default_tools()])) <= set(names), (t.id, g)


def test_family_rule():
    assert family("get_weather_forecast") == "get_weather" == family("get_weather_alerts")
    assert family("get_air_quality") == "get_air"
    assert siblings("search_flights", ["search_hotels", "search_flights", "book_flight"]) == ["search_hotels"]


def test_test_splits_use_unseen_values(generated):
    train_cities = set(split_pool(POOLS["city"], "train"))
    test_cities = set(split_pool(POOLS["city"], "test"))
    assert train_cities.isdisjoint(test_cities) and train_cities | test_cities == set(CITIES)
    city_re = re.compile("|".join(sorted(map(re.escape, CITIES), key=len, reverse=True)))
    seen_test = Counter()
    for name in ("test_single.jsonl", "test_multi.jsonl"):
        for line in (generated / name).read_text().splitlines():
            found = set(city_re.findall(json.loads(line)["messages"][0]["content"]))
            assert found <= test_cities, found
            seen_test.update(found)
    assert seen_test
    seen_train = Counter()
    for name in ("train.jsonl", "train_multi.jsonl"):  # RL tasks too: no test value is ever trained on
        for line in (generated / name).read_text().splitlines():
            found = set(city_re.findall(json.loads(line)["messages"][0]["content"]))
            assert found <= train_cities, (name, found)
            seen_train[name] += bool(found)
    assert seen_train["train.jsonl"] and seen_train["train_multi.jsonl"]


def test_single_turn_cases(generated):
    records = [json.loads(x) for x in (generated / "test_single.jsonl").read_text().splitlines()]
    for r in records:
        assert set(r) == {"id", "tools", "messages", "gold", "scenario"}
        assert [m["role"] for m in r["messages"]] == ["user"]
        names = [t["function"]["name"] for t in r["tools"]]
        assert all(answer[0]["name"] in names for answer in r["gold"])
    forecast = synthetic._gold_variants(ToolCall("get_weather_forecast", {"city": "Oslo", "days": 3}))
    assert forecast == [[{"name": "get_weather_forecast", "arguments": {"city": "Oslo", "days": 3}}],
                        [{"name": "get_weather_forecast", "arguments": {"city": "Oslo"}}],
                        [{"name": "get_weather_forecast", "arguments": {"days": 3, "unit": "celsius", "city": "Oslo"}}]]


def _env(record) -> Sandbox:
    sb = Sandbox(record["toolkits"], timeout_s=None)
    sb.reset(record["initial_state"] or None)
    return sb


@pytest.mark.parametrize("split", ["test_multi", "train_multi"])
def test_multi_turn_tasks_are_solvable_and_checkable(generated, split):
    records = [json.loads(x) for x in (generated / f"{split}.jsonl").read_text().splitlines()]
    assert all(r["id"].startswith(f"qs-{split}-") for r in records)
    state_tasks = 0
    for r in records:
        assert r["max_turns"] == 9 and r["success"]["finished"] is True
        sb = _env(r)
        assert not check_success(r, sb, None)  # nothing done, no answer
        for c in r["reference"]["calls"]:
            assert sb.execute_outcome(ToolCall(c["name"], c["arguments"])).category is C.ALL_RIGHT
        assert check_success(r, sb, r["reference"]["answer"]), r["id"]
        if any(c["type"] != "answer_contains" for c in r["success"]["all"]):
            state_tasks += 1
            assert not check_success(r, _env(r), r["reference"]["answer"])  # right words, no action
        else:
            assert not check_success(r, sb, "I cannot handle the task")
    assert state_tasks >= 5


def test_ensure_quickstart_data_generates_once_atomically(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_LIGHTNING_CACHE", str(tmp_path))
    monkeypatch.setitem(synthetic.QUICKSTART, "n_train", 30)
    monkeypatch.setitem(synthetic.QUICKSTART, "n_val", 5)
    monkeypatch.setitem(synthetic.QUICKSTART, "n_test_single", 5)
    monkeypatch.setitem(synthetic.QUICKSTART, "n_test_multi", 5)
    monkeypatch.setitem(synthetic.QUICKSTART, "n_train_multi", 5)
    with pytest.raises(FileNotFoundError, match="python -m tl_lightning.synthetic"):
        resolve_data_path("quickstart:val")  # finding never generates
    folder = ensure_quickstart_data()
    assert folder == quickstart_dir() == tmp_path / f"quickstart-{QUICKSTART_VERSION}-0"
    path = resolve_data_path("quickstart:val")
    assert path == folder / "val.jsonl" and path.is_file()
    mtime = path.stat().st_mtime_ns
    assert ensure_quickstart_data() == folder and path.stat().st_mtime_ns == mtime  # not regenerated
    assert resolve_data_path("quickstart:test_multi").is_file() and resolve_data_path("quickstart:train_multi").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary folder left behind


#: sha256 of the quick-start files. They change only with the generator's output, which must bump
#: ``QUICKSTART_VERSION`` (data/paths.py) so cached copies are regenerated; update both together.
QUICKSTART_SHA256 = {
    "manifest.json": "785d1461d0931d14927ae220cb4b0a8aaef1c3a5cb7c0b880a028de06fea79f0",
    "test_multi.jsonl": "14356249ed75679434653cef659f8c9c433b3e59d0aa02d2d8ff903ecd539070",
    "test_single.jsonl": "d9e33a58dd2532788fccefd912e93ff692362528516518437dd0fbe8dd19792b",
    "train.jsonl": "f8439622974f55d8f0ea9371b8ac2b7d34877b209d9fead5c5b9a7f97be42bf9",
    "train_multi.jsonl": "1a53babd749013d6d68ef287d378f5c476017811bc8d149c2e0adfbe17edd709",
    "val.jsonl": "c0d482649879c1cf3f0d61e26e18231c9501c67973b5fd6ca2016c439cc92f6a",
}


def test_quickstart_set_bytes_are_pinned(quickstart_data):
    import hashlib

    # train_large.jsonl is there only once something asked for it (configs/small.yaml): the on-demand test pins it.
    got = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(quickstart_data.iterdir())
           if p.name != "train_large.jsonl"}
    assert got == QUICKSTART_SHA256


def test_the_large_split_is_generated_on_demand_as_its_own_generation(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_LIGHTNING_CACHE", str(tmp_path / "cache"))
    for key, n in (("n_train", 8), ("n_val", 2), ("n_test_single", 2), ("n_test_multi", 2), ("n_train_multi", 2)):
        monkeypatch.setitem(synthetic.QUICKSTART, key, n)
    monkeypatch.setattr(synthetic, "N_TRAIN_LARGE", 40)
    folder = ensure_quickstart_data()
    assert not (folder / "train_large.jsonl").exists()  # only on request
    with pytest.raises(FileNotFoundError, match=r"run `python -m tl_lightning.synthetic --large`"):
        resolve_data_path("quickstart:train_large")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert ensure_quickstart_data(large=True) == folder
    large = resolve_data_path("quickstart:train_large")
    # the same bytes as the train split of a generation with --n-train 40 (same seed and error rate)...
    synthetic.main(["--out", str(tmp_path / "alone"), "--n-train", "40", "--n-val", "1", "--n-test", "1", "--n-train-multi", "0"])
    assert large.read_bytes() == (tmp_path / "alone" / "train.jsonl").read_bytes()
    assert len(large.read_text().splitlines()) == 40
    # ...and the rest of the set keeps its bytes; no temporary file is left behind
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p != large} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted([*before, "train_large.jsonl"])
    with pytest.raises(SystemExit):
        synthetic.main(["--out", str(tmp_path / "x"), "--large"])


def test_scenarios_are_explicit_lists_in_a_fixed_order():
    assert synthetic.SCENARIOS == (*personal.SCENARIOS, *office.SCENARIOS)
    for module in (personal, office):
        defined = {v.name for v in vars(module).values() if isinstance(v, base.Scenario)}
        assert {s.name for s in module.SCENARIOS} == defined, f"{module.__name__}: a scenario is missing from SCENARIOS"
    names = [s.name for s in synthetic.SCENARIOS]
    assert len(names) == len(set(names)) == 43


def test_main_without_out_generates_the_quickstart_set(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TL_LIGHTNING_CACHE", str(tmp_path))
    monkeypatch.setitem(synthetic.QUICKSTART, "n_train", 6)
    monkeypatch.setitem(synthetic.QUICKSTART, "n_val", 2)
    monkeypatch.setitem(synthetic.QUICKSTART, "n_test_single", 2)
    monkeypatch.setitem(synthetic.QUICKSTART, "n_test_multi", 2)
    monkeypatch.setitem(synthetic.QUICKSTART, "n_train_multi", 2)
    assert synthetic.main([]) == 0
    assert capsys.readouterr().out.strip() == str(quickstart_dir())
    assert resolve_data_path("quickstart").is_file()
    with pytest.raises(SystemExit):
        synthetic.main(["--n-train", "5"])  # sizes without --out would not be the quick-start set
    assert "need --out" in capsys.readouterr().err


def test_cli(tmp_path, capsys):
    assert synthetic.main(["--out", str(tmp_path), "--n-train", "12", "--n-val", "3", "--n-test", "6", "--seed", "2",
                           "--error-rate", "0.5", "--n-train-multi", "3"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["counts"] == {"train": 12, "val": 3, "test_single": 6, "test_multi": 2, "train_multi": 3}
    assert manifest["trajectories_with_error"]["train"] == 6


@pytest.mark.slow
@pytest.mark.multiprocess
def test_full_quickstart_in_two_processes_is_fast_and_consistent(tmp_path):
    """Two processes (as DDP ranks would) ask for the set at once: both get the same complete files."""
    code = ("import time; t = time.perf_counter(); from tl_lightning.synthetic import ensure_quickstart_data; "
            "t1 = time.perf_counter(); p = ensure_quickstart_data() / 'train.jsonl'; print(p, time.perf_counter() - t1)")
    env = {**__import__("os").environ, "TL_LIGHTNING_CACHE": str(tmp_path)}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0][0] == outs[1][0]
    assert min(float(o[1]) for o in outs) < 60  # about 3 s on an idle core; generous for a loaded CI box
    root = Path(outs[0][0]).parent
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 1217, "val": 100, "test_single": 300, "test_multi": 100, "train_multi": 400}
    trajs = read_trajectories(root / "train.jsonl", format="openai", strict=True)
    measured = sum(any(s.is_error for s in t.steps) for t in trajs) / len(trajs)
    assert abs(measured - 0.17) <= 0.02
    assert len(list(tmp_path.iterdir())) == 1
    assert time.perf_counter() - t0 < 90
