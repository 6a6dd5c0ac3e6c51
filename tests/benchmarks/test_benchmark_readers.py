"""Benchmark readers: every quirk of the public sets (docs/evaluation.md#benchmark-data), plus BFCL's AST layout (fixtures)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tl_lightning.benchmarks import BENCHMARKS, REGISTRY, benchmarks_root, load_benchmark
from tl_lightning.benchmarks.bfcl import parse_ground_truth_call
from tl_lightning.benchmarks.toolalpaca import parse_function_description, repair_repeated_key
from tl_lightning.data.cases import EvalCase, MultiTurnTask
from tl_lightning.data.errors import TrajectoryFormatError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bfcl"
EVAL_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "eval"
#: Registered sets that ship no configs/eval YAML, with the reason (none today).
NO_EVAL_CONFIG: dict[str, str] = {}
DEEP = "[" * 100_000 + "]" * 100_000


# ----------------------------------------------------------------------------------- registry


def _eval_configs() -> dict[str, dict]:
    """Each benchmark's eval config as the CLI resolves it (composed with configs/eval/base.yaml)."""
    from test_configs import resolve

    return {p.name: resolve(["--config", str(p)]) for p in sorted(EVAL_CONFIGS.glob("*.yaml")) if p.name != "base.yaml"}


def test_every_benchmark_has_a_default_mode_and_format():
    from tl_lightning.evaluation.score import build_parser
    from tl_lightning.evaluation.scoring import SCORING_MODES

    formats = {a.dest: a.choices for a in build_parser()._actions}["format"]
    assert BENCHMARKS == tuple(REGISTRY) and BENCHMARKS
    for name, entry in REGISTRY.items():
        assert entry.mode in SCORING_MODES, name
        assert entry.format in formats and entry.format != "auto", name
        assert callable(entry.reader), name


def test_every_benchmark_has_an_eval_config():
    configs = _eval_configs()
    covered = {c["data"]["init_args"]["benchmark"] for c in configs.values()}
    for name in REGISTRY:
        assert name in covered or NO_EVAL_CONFIG.get(name), f"{name}: add configs/eval/{name}.yaml or say why not"
    for file, config in configs.items():
        init = config["data"]["init_args"]
        assert init["benchmark"] in REGISTRY, file
        assert config["model"]["init_args"]["mode"] == REGISTRY[init["benchmark"]].mode, file
        # public sets are read through $TL_LIGHTNING_BENCHMARKS, never a path beside one checkout
        assert str(init["path"]).startswith(("benchmarks:", "quickstart")), file


def test_eval_configs_resolve_under_the_benchmarks_root(benchmarks_dir):
    from tl_lightning.evaluation.datamodule import BenchmarkDataModule

    for file, config in _eval_configs().items():
        init = config["data"]["init_args"]
        if str(init["path"]).startswith("benchmarks:"):
            bench = BenchmarkDataModule(**init).load()
            assert bench.report.path.startswith(str(benchmarks_dir)) and len(bench) > 0, file


def test_benchmarks_path_follows_the_environment_variable(tmp_path, monkeypatch):
    (tmp_path / "rb").mkdir()
    (tmp_path / "rb" / "clean.json").write_text(json.dumps([_rotbench_record()]))
    monkeypatch.setenv("TL_LIGHTNING_BENCHMARKS", str(tmp_path))
    assert benchmarks_root() == tmp_path
    bench = load_benchmark("rotbench", "benchmarks:rb", category="clean")
    assert len(bench) == 1 and bench.report.path == str(tmp_path / "rb" / "clean.json")
    with pytest.raises(FileNotFoundError, match=r"'benchmarks:nope'.*TL_LIGHTNING_BENCHMARKS="):
        load_benchmark("rotbench", "benchmarks:nope")
    monkeypatch.delenv("TL_LIGHTNING_BENCHMARKS")
    assert benchmarks_root() == Path(__file__).resolve().parents[3] / "shared" / "benchmarks"


# ----------------------------------------------------------------------------------- RoTBench


def test_rotbench_clean(benchmarks_dir):
    bench = load_benchmark("rotbench", benchmarks_dir / "rotbench", category="clean")
    assert len(bench) == 105 and bench.report.n_skipped == 0
    assert Counter(c.scenario for c in bench.cases) == {s: 15 for s in ("TG", "RS", "DU", "PL", "AM", "IR", "FT")}
    assert sum(len(c.gold) > 1 for c in bench.cases) == 26
    assert sum(len(c.gold) == 1 and c.gold[0][0].arguments == {} for c in bench.cases) == 8
    case = bench.cases[0]
    assert case.id == "rotbench-clean-0000" and case.index == 0
    assert case.messages[0].content == "What is the translation of the English phrase 'See you later' in Japanese?"
    assert case.system.endswith("you have access of the following tools:\n")
    assert [t.name for t in case.tools] == ["get_translation_nllb", "get_translation_baidu", "ask_to_user", "finish"]
    assert [a[0].name for a in case.gold] == ["get_translation_nllb", "get_translation_baidu"]
    assert case.gold[0][0].arguments["max_length"] == "None"
    assert case.meta["skip_value_tools"] == ["ask_to_user", "finish"]
    # three clean cases list two different tools named "drivers": the first is kept, and noted
    assert [c.index for c in bench.cases if "duplicate_tools" in c.meta] == [75, 78, 80]
    assert len(bench.notes) == 3
    assert all(len({t.name for t in c.tools}) == len(c.tools) for c in bench.cases)
    bench.cases[75].as_trajectory()  # unique names: a Trajectory can be built


@pytest.mark.parametrize(("level", "n"), [("clean", 105), ("slight", 210), ("medium", 210), ("heavy", 210), ("union", 105)])
def test_rotbench_levels_unique_ids(benchmarks_dir, level, n):
    bench = load_benchmark("rotbench", benchmarks_dir / "rotbench" / f"{level}.json")
    assert len(bench) == n and bench.name == f"rotbench-{level}"
    assert len({c.id for c in bench.cases}) == n
    if n == 210:  # record i and i+105 share the source id
        assert bench.cases[0].source_id == bench.cases[105].source_id
        assert len({c.source_id for c in bench.cases}) < n


def test_rotbench_perturbed_finish_tool(benchmarks_dir):
    case = load_benchmark("rotbench", benchmarks_dir / "rotbench", category="slight").cases[0]
    assert case.meta["skip_value_tools"] == ["ask_to_user", "fPnish"]
    assert case.meta["finish_tool"] == "fPnish"


def _rotbench_record(system_tail="\n\nLet's Begin!", answers=None):
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}},
             {"name": "ask_to_user", "parameters": {"type": "object", "properties": {}}},
             {"name": "finish", "parameters": {"type": "object", "properties": {}}}]
    return {"id": "Turn 1: q", "scenario": "TG", "conversations": [
        {"from": "system", "value": "Instructions:\n" + json.dumps(tools) + system_tail},
        {"from": "user", "value": "q\nBegin!\n"},
        {"from": "assistant", "value": answers or ['Thought: t\nAction: f\nAction Input: {"x": "1"}']}]}


def test_rotbench_bad_record_strict_and_lenient(tmp_path):
    path = tmp_path / "clean.json"
    recs = [_rotbench_record(), _rotbench_record(system_tail="\nBegin"), _rotbench_record(answers=["Action: f\nAction Input: {x"])]
    path.write_text(json.dumps(recs))
    with pytest.raises(TrajectoryFormatError) as err:
        load_benchmark("rotbench", path)
    assert str(path) in str(err.value) and "index 1" in str(err.value) and "Let's Begin" in str(err.value)
    bench = load_benchmark("rotbench", path, strict=False)
    assert [c.index for c in bench.cases] == [0]  # index kept: predictions align by position
    assert bench.report.n_records == 3 and bench.report.n_skipped == 2
    assert "not valid JSON" in bench.report.errors[1]


def _write_json(path: Path, records: list[str], encoding: str = "utf-8") -> Path:
    path.write_bytes(("[" + ",\n".join(records) + "]").encode(encoding))
    return path


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ('{"id": "x", "conversations": ' + DEEP + "}", "invalid JSON: nested too deeply to decode"),
        ('{"id": ' + "9" * 5000 + ', "conversations": []}', "invalid JSON: Exceeds the limit (4300 digits)"),
        (json.dumps([1, 2]), "record is not an object"),
        ('{"conversations": [1, 2, 3]}', "AttributeError"),
    ],
    ids=["deep", "huge-int", "not-an-object", "attribute-error"],
)
def test_rotbench_bad_record_never_aborts_the_file(tmp_path, bad, problem):
    path = _write_json(tmp_path / "clean.json", [json.dumps(_rotbench_record()), bad, json.dumps(_rotbench_record())])
    bench = load_benchmark("rotbench", path, strict=False)
    assert [c.index for c in bench.cases] == [0, 2] and bench.report.n_skipped == 1
    assert bench.report.errors[0].startswith(f"{path}, index 1: ") and problem in bench.report.errors[0]
    with pytest.raises(TrajectoryFormatError, match="index 1: "):
        load_benchmark("rotbench", path)


def test_rotbench_required_must_be_a_list(tmp_path):
    rec = _rotbench_record()
    system = rec["conversations"][0]["value"]
    rec["conversations"][0]["value"] = system.replace('"properties": {"x": {"type": "string"}}}', '"properties": {"x": {"type": "string"}}, "required": "symbol"}')
    assert rec["conversations"][0]["value"] != system
    path = _write_json(tmp_path / "clean.json", [json.dumps(rec)])
    with pytest.raises(TrajectoryFormatError, match=r"index 0: tool 'f': required must be a list of parameter names, got 'symbol'"):
        load_benchmark("rotbench", path)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_bom_files_read_every_record(tmp_path, encoding):
    """A BOM'd 3-record array reads 3 records (it used to read "0 of 1")."""
    path = _write_json(tmp_path / "clean.json", [json.dumps(_rotbench_record())] * 3, encoding)
    bench = load_benchmark("rotbench", path, strict=False)
    assert len(bench) == 3 and bench.report.n_records == 3
    tooleyes = _write_json(tmp_path / "tooleyes_zero_shot.json", [json.dumps(_rotbench_record())] * 3, encoding)
    assert len(load_benchmark("tooleyes", tooleyes)) == 3


def test_undecodable_benchmark_file_names_the_byte_offset(tmp_path):
    path = tmp_path / "clean.json"
    path.write_bytes(json.dumps([_rotbench_record()]).replace("Instructions", "Instrucci\u00f3n").encode("latin-1"))
    for strict in (True, False):
        with pytest.raises(TrajectoryFormatError, match=rf"^{path}: not utf-8 text: byte 0xf3 at byte offset \d+ does not decode"):
            load_benchmark("rotbench", path, strict=strict)


# ----------------------------------------------------------------------------------- ToolAlpaca


def _toolalpaca_api(inputs: list[str]) -> dict:
    return {
        "Name": "Api", "Description": "d", "Category": "c",
        "Function_Description": {"f": "Does f. Parameters: {\"x\": \"Required. string. The x.\"}", "components": {}},
        "Instructions": [f"do {i}" for i in range(len(inputs))],
        "Golden_Answers": [[{"Action": "f", "Action_Input": s}] for s in inputs],
    }


def test_toolalpaca_bad_input_never_aborts_the_file(tmp_path):
    path = tmp_path / "eval_real.json"
    apis = [_toolalpaca_api(['{"x": "1"}', DEEP, '{"x": ' + "9" * 5000 + "}", '{"x": "2"}']), "not an api"]
    path.write_text(json.dumps(apis))
    bench = load_benchmark("toolalpaca", path, strict=False)
    assert [c.gold[0][0].arguments for c in bench.cases] == [{"x": "1"}, {"x": "2"}]
    assert bench.report.n_records == 5 and bench.report.n_skipped == 3
    assert "instruction 1" in bench.report.errors[0] and "nested too deeply" in bench.report.errors[0]
    assert "instruction 2" in bench.report.errors[1] and "4300" in bench.report.errors[1]
    assert "(entry 1): API entry is not an object" in bench.report.errors[2]
    with pytest.raises(TrajectoryFormatError, match="instruction 1 .*nested too deeply"):
        load_benchmark("toolalpaca", path)



def test_toolalpaca_strict_names_api_and_instruction(benchmarks_dir):
    with pytest.raises(TrajectoryFormatError) as err:
        load_benchmark("toolalpaca", benchmarks_dir / "toolalpaca")
    msg = str(err.value)
    assert "eval_real.json" in msg and "'CurrencyBeacon'" in msg and "instruction 4" in msg and '"symbols": "symbols"' in msg


def test_toolalpaca_lenient_skips_four(benchmarks_dir):
    bench = load_benchmark("toolalpaca", benchmarks_dir / "toolalpaca" / "eval_real.json", strict=False)
    assert len(bench) == 110 and bench.report.n_records == 114 and bench.report.n_skipped == 4
    assert bench.report.reasons == {"invalid gold Action_Input": 4}


def test_toolalpaca_repair_and_unsolvable(benchmarks_dir):
    bench = load_benchmark("toolalpaca", benchmarks_dir / "toolalpaca", repair=True)
    assert len(bench) == 114 and bench.report.n_skipped == 0
    assert sorted(bench.repaired) == ["toolalpaca-107", "toolalpaca-111", "toolalpaca-112", "toolalpaca-113"]
    by_id = {c.id: c for c in bench.cases}
    assert by_id["toolalpaca-107"].gold[0][0].arguments == {"api_key": "***", "base": "USD", "symbols": ["EUR", "GBP"]}
    assert bench.unsolvable == [f"toolalpaca-{i:03d}" for i in range(30, 36)]
    assert {by_id[u].meta["api"] for u in bench.unsolvable} == {"AviationAPI"}
    assert by_id["toolalpaca-030"].gold[0][0].name == "preferred-routes_search_get"
    assert all("components" not in {t.name for t in c.tools} for c in bench.cases)
    assert sum(c.meta["n_gold_steps"] == 1 for c in bench.cases) == 94
    weather = next(c for c in bench.cases if c.meta["api"] == "apilayer weatherstack")
    assert "Authentication information: {\"access_key\": \"***\"}" in weather.system
    tool = weather.tools[0]
    assert tool.required == ("access_key", "query")
    assert tool.properties["units"]["type"] == "string"
    assert load_benchmark("toolalpaca", benchmarks_dir / "toolalpaca", category="Fruityvice", repair=True).cases[0].meta["api"] == "Fruityvice"


def test_function_description_and_repair():
    tool = parse_function_description("f", 'Do it\nParameters: {"a": "Required. integer. Count {n}.", "b": "number. ", "c": "free text"}\nOutput: OK.')
    assert tool.required == ("a",)
    assert tool.properties == {"a": {"type": "integer", "description": "Count {n}."}, "b": {"type": "number", "description": ""},
                               "c": {"type": "string", "description": "free text"}}
    assert tool.description == "Do it\nOutput: OK."
    assert repair_repeated_key('{"s": "s": "EUR"}') == '{"s": "EUR"}'
    assert repair_repeated_key('{"s": "EUR"}') is None
    assert repair_repeated_key('{"s": "s": {') is None


# ----------------------------------------------------------------------------------- BFCL


def test_bfcl_exec(benchmarks_dir):
    bench = load_benchmark("bfcl", benchmarks_dir / "bfcl_v3_exec")
    assert len(bench) == 240
    assert Counter(c.scenario for c in bench.cases) == {"simple": 100, "multiple": 50, "parallel": 50, "parallel_multiple": 40}
    assert [c.index for c in bench.cases] == list(range(240))
    assert all(c.answer_style == "exact" and len(c.gold) == 1 for c in bench.cases)
    assert {len(c.gold[0]) for c in bench.cases if c.scenario == "parallel"} <= {2, 3, 4}
    by_id = {c.id: c for c in bench.cases}
    assert by_id["exec_simple_0"].gold[0][0].arguments == {"n": 20, "k": 5, "p": 0.6}
    assert by_id["exec_multiple_0"].gold[0][0].arguments["p"] == pytest.approx(1 / 6)  # "p=1/6" folded
    assert by_id["exec_simple_0"].tools[0].parameters["type"] == "dict"  # BFCL types kept for the bfcl mode
    assert bench.unsolvable == ["exec_multiple_45"]  # gold passes price=, not in book_room's schema
    assert len(load_benchmark("bfcl", benchmarks_dir / "bfcl_v3_exec", category="exec_parallel")) == 50
    assert len(load_benchmark("bfcl", benchmarks_dir / "bfcl_v3_exec" / "exec_multiple.json")) == 50


def test_ground_truth_parsing_is_literal_only():
    tool = parse_function_description("calculate_mean", 'x\nParameters: {"numbers": "Required. array. "}\nOutput: -')
    assert parse_ground_truth_call("calculate_mean([1, 3])", tool).arguments == {"numbers": [1, 3]}
    assert parse_ground_truth_call("m.f(a=500*500, b=(1, 2), c=-2)").to_dict() == {"name": "m.f", "arguments": {"a": 250000, "b": (1, 2), "c": -2}}
    for bad in ("f(a=__import__('os').system('x'))", "f(a=x)", "f(a='s'*3)", "f(**k)", "f(1)", "import os", "f(a=1"):
        with pytest.raises(ValueError):
            parse_ground_truth_call(bad)


def test_bfcl_ast_layout():
    bench = load_benchmark("bfcl", FIXTURES)
    assert [c.id for c in bench.cases] == ["simple_python_0", "simple_python_1", "simple_python_2", "parallel_0", "live_simple_0-0-0", "irrelevance_0"]
    assert all(c.answer_style == "possible_values" for c in bench.cases)
    simple = bench.cases[0]
    assert simple.gold == [[simple.gold[0][0]]] and simple.gold[0][0].arguments == {"base": [10], "height": [5], "unit": ["units", ""]}
    assert bench.cases[1].gold[0][0].name == "math.factorial"
    assert len(bench.cases[3].gold[0]) == 2
    live = bench.cases[4]  # file name without the BFCL_v3_ prefix; system message kept
    assert [m.role for m in live.messages] == ["system", "user"] and live.scenario == "live_simple"
    irrelevant = bench.cases[5]
    assert irrelevant.gold == [] and irrelevant.meta["irrelevance"] is True
    assert [c.id for c in load_benchmark("bfcl", FIXTURES, category="BFCL_v3_parallel").cases] == ["parallel_0"]


def test_bfcl_missing_answer_file(tmp_path):
    (tmp_path / "BFCL_v3_simple_python.json").write_text((FIXTURES / "BFCL_v3_simple_python.json").read_text())
    with pytest.raises(TrajectoryFormatError, match="no answer file for category 'simple_python'"):
        load_benchmark("bfcl", tmp_path)


def test_bfcl_bad_line(tmp_path):
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "BFCL_v3_multiple.json").write_text('{"id": "multiple_0", "question": [[{"role": "user", "content": "q"}]], "function": []}\nnot json\n')
    (tmp_path / "possible_answer" / "BFCL_v3_multiple.json").write_text("")
    with pytest.raises(TrajectoryFormatError, match=r"line 1: 'function' must be a non-empty list"):
        load_benchmark("bfcl", tmp_path)
    bench = load_benchmark("bfcl", tmp_path, strict=False)
    assert len(bench) == 0 and bench.report.n_skipped == 2 and "line 2" in bench.report.errors[1]


# ----------------------------------------------------------------------------------- ToolEyes


def test_tooleyes(benchmarks_dir):
    bench = load_benchmark("tooleyes", benchmarks_dir / "tooleyes")
    assert len(bench) == 382 and bench.multi_turn
    assert len({t.id for t in bench.cases}) == 382 and len({t.source_id for t in bench.cases}) == 380
    task = bench.cases[0]
    assert isinstance(task, MultiTurnTask) and task.environment == "schema" and task.max_turns == 9
    assert task.tools[-1].name == "finish" and task.messages[0].content.startswith("I'm in need of assistance")
    assert Counter(t.scenario for t in bench.cases)["PL"] == 70
    assert len(bench.notes) == 5  # tool lists that repeat a name


# ----------------------------------------------------------------------------------- synthetic


def _spec(name):
    return {"type": "function", "function": {"name": name, "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_synthetic_single_and_multi(tmp_path):
    single = {"id": "s0", "tools": [_spec("get_weather")], "messages": [{"role": "user", "content": "Weather in Rome?"}],
              "gold": [[{"name": "get_weather", "arguments": {"city": "Rome"}}]], "scenario": "weather"}
    multi = {"id": "m0", "tools": [_spec("get_weather")], "messages": [{"role": "user", "content": "Weather in Rome?"}], "scenario": "weather",
             "toolkits": ["weather"], "initial_state": {}, "success": {"finished": True, "all": []}, "max_turns": 5}
    (tmp_path / "test_single.jsonl").write_text(json.dumps(single) + "\n")
    (tmp_path / "test_multi.jsonl").write_text(json.dumps(multi) + "\n")
    s = load_benchmark("synthetic", tmp_path, category="single")
    assert isinstance(s.cases[0], EvalCase) and s.cases[0].gold[0][0].arguments == {"city": "Rome"}
    m = load_benchmark("synthetic", tmp_path / "test_multi.jsonl")
    task = m.cases[0]
    assert task.environment == "sandbox" and task.max_turns == 5 and task.meta["toolkits"] == ["weather"]
    (tmp_path / "mixed.jsonl").write_text(json.dumps(single) + "\n" + json.dumps(multi) + "\n")
    with pytest.raises(TrajectoryFormatError, match="line 2: single-turn and multi-turn records mixed"):
        load_benchmark("synthetic", tmp_path / "mixed.jsonl")


def test_synthetic_bad_lines_never_abort_the_file(tmp_path):
    good = {"id": "s0", "tools": [_spec("get_weather")], "messages": [{"role": "user", "content": "q"}],
            "gold": [[{"name": "get_weather", "arguments": {"city": "Rome"}}]]}
    required = json.loads(json.dumps(good).replace('"required": ["city"]', '"required": "city"'))
    required["id"] = "s2"
    lines = [json.dumps(good), '{"id": "s1", "messages": ' + DEEP + "}", json.dumps(required),
             json.dumps({**good, "id": "s3", "messages": ["q"]}), json.dumps({**good, "id": "s4"})]
    path = tmp_path / "test_single.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8-sig"))
    bench = load_benchmark("synthetic", path, strict=False)
    assert [c.id for c in bench.cases] == ["s0", "s4"] and [c.index for c in bench.cases] == [0, 4]
    assert [e.split(": ", 1)[0] for e in bench.report.errors] == [f"{path}, line {n}" for n in (2, 3, 4)]
    assert "nested too deeply" in bench.report.errors[0] and "required must be a list" in bench.report.errors[1]


def test_bfcl_bad_lines_never_abort_the_file(tmp_path):
    question = json.loads((FIXTURES / "BFCL_v3_simple_python.json").read_text().splitlines()[0])
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "possible_answer" / "BFCL_v3_simple_python.json").write_text((FIXTURES / "possible_answer" / "BFCL_v3_simple_python.json").read_text())
    required = json.loads(json.dumps(question))
    required["function"][0]["parameters"]["required"] = "base"
    lines = [json.dumps(question), '{"id": "deep", "question": ' + DEEP + "}", json.dumps(required), '{"id": ' + "9" * 5000 + "}"]
    (tmp_path / "BFCL_v3_simple_python.json").write_text("\n".join(lines) + "\n")
    bench = load_benchmark("bfcl", tmp_path, strict=False)
    assert [c.id for c in bench.cases] == [question["id"]] and bench.report.n_skipped == 3
    problems = [e.split(": ", 1)[1] for e in bench.report.errors]
    assert "nested too deeply" in problems[0] and "required must be a list" in problems[1] and "4300" in problems[2]


def test_unknown_benchmark():
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        load_benchmark("nope", ".")
