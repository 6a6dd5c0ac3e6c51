"""``python -m tl_lightning score``: gold self-scores, hand-computed reports, multi-turn replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tl_lightning.benchmarks import load_benchmark
from tl_lightning.data.errors import TrajectoryFormatError
from tl_lightning.evaluation.predictions import (
    gold_predictions,
    read_predictions,
    resolve_possible_values,
    write_jsonl,
)
from tl_lightning.evaluation.score import main, score_predictions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bfcl"


def _gold_report(bench, fmt, mode):
    return score_predictions(bench, gold_predictions(bench.cases, fmt), mode)


# ----------------------------------------------------------------------------------- gold self-scores


def test_rotbench_gold_official_and_corrected(benchmarks_dir):
    bench = load_benchmark("rotbench", benchmarks_dir / "rotbench", category="clean")
    off = _gold_report(bench, "react", "official")
    assert (off["TS"], off["PI"], off["CF"]) == (92.38, 92.38, 92.38)
    failed = [c for c in off["cases"] if not c["TS"]]
    assert len(failed) == 8 and {c["category"] for c in failed} == {"unparseable"}  # {} gold: rejected by the official rule
    cor = _gold_report(bench, "react", "corrected")
    assert (cor["TS"], cor["PI"], cor["CF"]) == (100.0, 100.0, 100.0)
    assert cor["error_categories"] == {"correct": 105}
    assert cor["per_scenario"]["TG"] == {"n": 15, "TS": 100.0, "PI": 100.0, "CF": 100.0}


def test_rotbench_heavy_official(benchmarks_dir):
    # 95.24 = 200/210, cross-checked by re-running the official scorer's algorithm on the same file
    bench = load_benchmark("rotbench", benchmarks_dir / "rotbench", category="heavy")
    assert _gold_report(bench, "react", "official")["CF"] == 95.24
    assert _gold_report(bench, "react", "corrected")["CF"] == 100.0


def test_toolalpaca_gold(benchmarks_dir):
    bench = load_benchmark("toolalpaca", benchmarks_dir / "toolalpaca", repair=True)
    rep = _gold_report(bench, "react", "corrected")
    assert (rep["TS"], rep["PI"], rep["CF"], rep["n"]) == (100.0, 100.0, 100.0, 114)
    assert rep["data"]["unsolvable"] == [f"toolalpaca-{i:03d}" for i in range(30, 36)]
    assert len(rep["data"]["repaired"]) == 4
    assert rep["solvable_only"]["n"] == 108
    # 8 gold inputs are {}: the official rule fails them
    assert _gold_report(bench, "react", "official")["TS"] == pytest.approx(100 * 97 / 114, abs=0.005)


def test_bfcl_exec_gold(benchmarks_dir):
    bench = load_benchmark("bfcl", benchmarks_dir / "bfcl_v3_exec")
    assert _gold_report(bench, "python", "corrected")["CF"] == 100.0
    rep = _gold_report(bench, "python", "bfcl")
    assert (rep["TS"], rep["CF"]) == (100.0, 99.58)  # exec_multiple_45's gold breaks its own schema
    assert [c["id"] for c in rep["cases"] if not c["CF"]] == ["exec_multiple_45"]
    assert rep["solvable_only"] == {"n": 239, "TS": 100.0, "PI": 100.0, "CF": 100.0}


def test_bfcl_ast_gold_and_mode_guard():
    bench = load_benchmark("bfcl", FIXTURES)
    rep = _gold_report(bench, "python", "bfcl")
    assert (rep["TS"], rep["PI"], rep["CF"], rep["n"]) == (100.0, 100.0, 100.0, 6)
    with pytest.raises(ValueError, match="only --mode bfcl"):
        _gold_report(bench, "python", "corrected")


def test_resolve_possible_values():
    args = {"a": [10], "unit": ["", "cm"], "opt": [""], "cond": [{"dep": ["Science"], "x": ["", 1]}], "l": [[1.0, 3.0]]}
    assert resolve_possible_values(args) == {"a": 10, "unit": "cm", "cond": {"dep": "Science", "x": 1}, "l": [1.0, 3.0]}


def test_tooleyes_gold(benchmarks_dir):
    bench = load_benchmark("tooleyes", benchmarks_dir / "tooleyes")
    rep = _gold_report(bench, "react", "corrected")
    assert (rep["DE"], rep["CE"], rep["VA"], rep["n"], rep["n_calls"]) == (0.0, 0.0, 100.0, 382, 382)


# ----------------------------------------------------------------------------------- hand-computed


def _rotbench_file(tmp_path):
    tools = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}},
             {"name": "get_news", "parameters": {"type": "object", "properties": {"topic": {"type": "string"}}}},
             {"name": "ask_to_user", "parameters": {"type": "object", "properties": {"question": {"type": "string"}}}},
             {"name": "finish", "parameters": {"type": "object", "properties": {"answer": {"type": "string"}}}}]
    system = "Use tools:\n" + json.dumps(tools) + "\n\nLet's Begin!"
    gold = ['Thought: x\nAction: get_weather\nAction Input: {"city": "Rome", "unit": "None"}']
    recs = [{"id": "Turn 1: q", "scenario": sc, "conversations": [{"from": "system", "value": system},
             {"from": "user", "value": "q\nBegin!\n"}, {"from": "assistant", "value": gold}]} for sc in ("TG", "TG", "RS", "RS")]
    path = tmp_path / "clean.json"
    path.write_text(json.dumps(recs))
    return path


def test_hand_computed_report(tmp_path, capsys):
    data = _rotbench_file(tmp_path)
    preds = [
        {"index": 0, "output": 'Action: get_weather\nAction Input: {"city": "Rome", "unit": "C"}'},  # right ("None" not compared)
        {"index": 1, "output": 'Action: get_weather\nAction Input: {"city": "Paris", "unit": "C"}'},  # wrong value
        {"index": 2, "output": 'Action: get_news\nAction Input: {"topic": "x"}'},  # wrong tool
        # index 3 missing
        {"index": 9, "output": "x"},
    ]
    write_jsonl(tmp_path / "p.jsonl", preds)
    out = tmp_path / "out"
    assert main(["--benchmark", "rotbench", "--data", str(data), "--predictions", str(tmp_path / "p.jsonl"), "--output", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert (rep["mode"], rep["TS"], rep["PI"], rep["CF"]) == ("official", 50.0, 50.0, 25.0)
    assert rep["per_scenario"] == {"RS": {"n": 2, "TS": 0.0, "PI": 0.0, "CF": 0.0}, "TG": {"n": 2, "TS": 100.0, "PI": 100.0, "CF": 50.0}}
    assert [(c["index"], c["TS"], c["PI"], c["CF"], c["category"]) for c in rep["cases"]] == [
        (0, True, True, True, "correct"),
        (1, True, True, False, "wrong_values"),
        (2, False, False, False, "wrong_tool"),
        (3, False, False, False, "missing"),
    ]
    assert rep["predictions"]["missing"] == ["rotbench-clean-0003"] and rep["predictions"]["unknown"] == ["index=9"]
    # a case without a prediction is wrong, but it is not an unparseable output: counted and printed apart
    assert (rep["n_unparseable"], rep["unparseable"], rep["n_missing"]) == (0, [], 1)
    md = (out / "report.md").read_text()
    assert "| overall | 4 | 50.00 | 50.00 | 25.00 |" in md and "## Cases without a prediction (1)" in md
    assert ("rotbench-clean [official]: TS=50.00 PI=50.00 CF=25.00 (4 cases, 0 unparseable, 1 without a prediction)"
            in capsys.readouterr().out)


def test_cli_errors(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_text('{"index": 0, "output": "x"}\n{"output": "y"}\n')
    code = main(["--benchmark", "rotbench", "--data", str(_rotbench_file(tmp_path)), "--predictions", str(tmp_path / "p.jsonl"), "--output", str(tmp_path / "o")])
    assert code == 2 and "line 2: a prediction needs an 'id' or an 'index'" in capsys.readouterr().err
    with pytest.raises(TrajectoryFormatError, match="line 1: 'output' must be a string"):
        (tmp_path / "q.jsonl").write_text('{"id": "a", "output": 3}\n')
        read_predictions(tmp_path / "q.jsonl")


def test_write_gold_cli(tmp_path, benchmarks_dir):
    gold = tmp_path / "gold.jsonl"
    args = ["--benchmark", "toolalpaca", "--data", str(benchmarks_dir / "toolalpaca"), "--write-gold", str(gold)]
    assert main(args) == 0
    rows = read_predictions(gold)
    assert len(rows) == 114 and rows[0]["output"].startswith("Thought: \nAction: PublicHolidayIsTodayPublicHoliday\nAction Input:")
    assert main(args[:4] + ["--no-repair"] + args[4:]) == 2  # strict + no repair: the invalid gold is an error


# ----------------------------------------------------------------------------------- multi-turn replay


def _tooleyes_file(tmp_path):
    tools = [{"name": "get_uuid", "description": "A UUID.", "parameters": {"type": "object", "properties": {"cnt": {"type": "string"}}, "required": ["cnt"]}},
             {"name": "finish", "description": "Finish.", "parameters": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}]
    system = "Use tools:\n" + json.dumps(tools) + "\n\nLet's Begin!"
    recs = [{"id": "Turn 1: q", "scenario": sc, "path": "p", "conversations": [{"from": "system", "value": system}, {"from": "user", "value": "Give me a UUID."}]}
            for sc in ("TG", "TG", "RS")]
    path = tmp_path / "tooleyes_zero_shot.json"
    path.write_text(json.dumps(recs))
    return path


def test_multi_turn_replay(tmp_path):
    bench = load_benchmark("tooleyes", _tooleyes_file(tmp_path))
    act = 'Thought: t\nAction: {}\nAction Input: {}'.format
    rows = [
        # hallucinated tool (DE), missing parameter (DE), good call, finish: VA
        {"id": "tooleyes-0000", "turns": [act("get_uid", '{"cnt": "1"}'), act("get_uuid", "{}"), act("get_uuid", '{"cnt": "1"}'), act("finish", '{"answer": "ok"}')]},
        # unparseable output: one CE, the episode ends without an answer
        {"id": "tooleyes-0001", "turns": ["I will call get_uuid now.", act("finish", '{"answer": "ok"}')]},
        # recorded trace: feedback classified, not re-executed
        {"index": 2, "turns": [{"output": act("get_uuid", '{"cnt": "1"}'), "feedback": ['{"error": "quota exceeded"}']}]},
    ]
    rep = score_predictions(bench, rows, "corrected", "react")
    assert rep["n_calls"] == 6  # 4 + 1 (the unparseable turn) + 1
    assert (rep["DE"], rep["CE"], rep["VA"]) == (33.33, 33.33, 33.33)  # 2/6, 2/6, 1/3
    assert rep["cases"][0]["categories"] == ["tool_hallucination", "parameter_missing", "all_right", "all_right"]
    assert rep["cases"][1]["categories"] == ["format_error"] and rep["cases"][1]["turns"] == 1
    assert rep["cases"][2]["categories"] == ["others"] and rep["cases"][2]["VA"] is False
    assert rep["per_scenario"]["RS"] == {"n": 1, "n_calls": 1, "DE": 0.0, "CE": 100.0, "VA": 0.0}
    assert rep["unparseable"][0]["id"] == "tooleyes-0001"


def test_synthetic_gold_through_sandbox(tmp_path):
    """The quick-start generator's reference solutions replay through the sandbox: success 100."""
    from tl_lightning.synthetic.generator import generate

    generate(tmp_path, n_train=1, n_val=1, n_test_single=3, n_test_multi=3)
    single = load_benchmark("synthetic", tmp_path, category="single")
    rep = _gold_report(single, "python", "corrected")
    assert (rep["TS"], rep["CF"], rep["n"]) == (100.0, 100.0, 3)
    multi = load_benchmark("synthetic", tmp_path / "test_multi.jsonl")
    rep = _gold_report(multi, "python", "corrected")
    assert (rep["DE"], rep["CE"], rep["VA"], rep["success"], rep["n"]) == (0.0, 0.0, 100.0, 100.0, 3)
    assert all(c["categories"][-1] == "all_right" and c["success"] for c in rep["cases"])


# ----------------------------------------------------------------------------------- one bad output is never fatal

HUGE_HEX = "0x" + "f" * 4000  # ~4,800 decimal digits: past Python's int repr limit, overflows a float
HUGE_PRODUCT = "999999**64*999999**64"  # 768 digits once folded


def _bfcl_float_set(tmp_path) -> Path:
    d = tmp_path / "bfcl"
    (d / "possible_answer").mkdir(parents=True)
    props = {"r": {"type": "float"}, "n": {"type": "integer"}, "d": {"type": "dict"}}
    fn = [{"name": "area", "description": "x", "parameters": {"type": "dict", "properties": props, "required": ["r"]}}]
    question = [[{"role": "user", "content": "q"}]]
    rows = [{"id": f"simple_python_{i}", "question": question, "function": fn} for i in range(2)]
    answers = [{"id": f"simple_python_{i}", "ground_truth": [{"area": {"r": [1.5], "n": ["", 3], "d": [""]}}]} for i in range(2)]
    (d / "BFCL_v3_simple_python.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "possible_answer" / "BFCL_v3_simple_python.json").write_text("".join(json.dumps(a) + "\n" for a in answers))
    return d


@pytest.mark.parametrize(
    ("output", "fatal_before"),
    [
        (f"area(r={HUGE_HEX})", True),  # OverflowError out of the BFCL type check
        (f"area(r={HUGE_PRODUCT})", True),  # the same
        (f"area(r=1.5, n={HUGE_HEX})", True),  # 'Exceeds the limit (4300 digits)': exit 2
        ("area(r=1e308*10)", False),
        ("area(r=1.5, d={(1, 2): 3})", False),  # a tuple key
        ("area(r=" + "9" * 99_000 + ")", False),  # a 99 KB output
    ],
    ids=["hex_float", "product_float", "hex_int", "inf", "tuple_key", "99kb"],
)
def test_score_counts_a_pathological_bfcl_output(tmp_path, capsys, output, fatal_before):
    rows = [{"id": "simple_python_0", "output": output}, {"id": "simple_python_1", "output": "area(r=1.5)"}]
    write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "out"
    args = ["--benchmark", "bfcl", "--data", str(_bfcl_float_set(tmp_path)), "--predictions", str(tmp_path / "p.jsonl")]
    assert main([*args, "--mode", "bfcl", "--output", str(out)]) == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    assert [c["CF"] for c in rep["cases"]] == [False, True] and rep["CF"] == 50.0
    if fatal_before:  # unscoreable: a format error, listed with its reason
        assert rep["cases"][0]["category"] == "unparseable"
        assert [u["id"] for u in rep["unparseable"]] == ["simple_python_0"] and rep["unparseable"][0]["error"]


@pytest.mark.parametrize("output", [f"get_uuid(cnt={HUGE_HEX})", f"finish(answer={HUGE_HEX})"], ids=["call", "finish"])
def test_tooleyes_replay_counts_a_pathological_call(tmp_path, capsys, output):
    write_jsonl(tmp_path / "t.jsonl", [{"id": "tooleyes-0000", "turns": [output, 'finish(answer="ok")']}, {"id": "tooleyes-0001", "turns": ['finish(answer="ok")']}])
    out = tmp_path / "out"
    args = ["--benchmark", "tooleyes", "--data", str(_tooleyes_file(tmp_path)), "--predictions", str(tmp_path / "t.jsonl")]
    assert main([*args, "--format", "python", "--output", str(out)]) == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    assert rep["cases"][0]["categories"] == ["format_error"] and rep["cases"][0]["VA"] is False  # the episode ends there
    assert rep["cases"][1]["categories"] == ["all_right"] and (rep["CE"], rep["VA"]) == (50.0, 33.33)
    assert [u["id"] for u in rep["unparseable"]] == ["tooleyes-0000"] and rep["unparseable"][0]["error"]


def test_episode_survives_an_environment_that_raises(tmp_path):
    """Whatever the environment raises on a model's value ends that task as a format error, with the reason."""
    from tl_lightning.evaluation.multiturn import Episode

    ep = Episode(load_benchmark("tooleyes", _tooleyes_file(tmp_path)).cases[0], call_format="python")

    def explode(call):
        raise OverflowError("int too large to convert to float")

    ep.env.execute_outcome = explode
    turn = ep.step('get_uuid(cnt="1")')
    assert ep.done and not ep.finished and turn.categories == ["format_error"]
    assert turn.error == "format error: OverflowError: int too large to convert to float"
    result = ep.result()
    assert (result.n_calls, result.n_de, result.n_ce) == (1, 0, 1)


def test_score_generates_the_quickstart_sets_into_an_empty_cache(monkeypatch, tmp_path, capsys):
    from tl_lightning.synthetic import generator

    monkeypatch.setenv("TL_LIGHTNING_CACHE", str(tmp_path / "cache"))
    for split, n in (("n_train", 20), ("n_val", 4), ("n_test_single", 6), ("n_test_multi", 3)):
        monkeypatch.setitem(generator.QUICKSTART, split, n)
    gold = tmp_path / "gold.jsonl"
    code = main(["--benchmark", "synthetic", "--data", "quickstart", "--category", "single", "--write-gold", str(gold)])
    assert code == 0
    assert len(gold.read_text().splitlines()) == 6


def test_gold_that_the_format_cannot_read_back_is_refused_not_written():
    """Written as Python, `get-weather(...)` parses as a subtraction: a gold file of such calls made the scorer fail
    its own gold (TS = PI = CF = 40 in the report of issue 23). Writing it is refused, naming the case and tool."""
    from tl_lightning.benchmarks import BenchmarkSet
    from tl_lightning.data.cases import EvalCase
    from tl_lightning.data.errors import ReadReport
    from tl_lightning.data.schema import Message, Tool, ToolCall

    tools = [Tool("get-weather", "", {"type": "object", "properties": {"city": {"type": "string"}}})]
    case = EvalCase("c1", 0, tools, [Message("user", "Rome?")], gold=[[ToolCall("get-weather", {"city": "Rome"})]])
    with pytest.raises(ValueError, match=r"^case c1: the gold call to 'get-weather' cannot be written: python writes it as "
                                         r"'get-weather\(city=0\)', which does not parse"):
        gold_predictions([case], "python")
    rows = gold_predictions([case], "react")  # an Action line holds the name, and reads it back
    bench = BenchmarkSet("t", [case], ReadReport("t"))
    assert score_predictions(bench, rows, "corrected", "react")["CF"] == 100.0
