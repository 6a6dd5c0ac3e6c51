"""The ``test`` stage: TLEvalModule + BenchmarkDataModule, checkpoint loading, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from tl_lightning.benchmarks import load_benchmark
from tl_lightning.evaluation.datamodule import BenchmarkDataModule
from tl_lightning.evaluation.predictions import gold_predictions, read_predictions
from tl_lightning.evaluation.score import score_predictions
from tl_lightning.modules.evaluate import TLEvalModule

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "bfcl"
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 64}


def _trainer(tmp_path) -> Trainer:
    return Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu", devices=1)


def test_single_turn_metric_and_report_agree(tmp_path, monkeypatch):
    dm = BenchmarkDataModule("bfcl", str(FIXTURES), batch_size=4)
    module = TLEvalModule(template="python_doc", mode="bfcl", tiny_config=TINY, output_dir=str(tmp_path / "out"))
    gold = {r["id"]: r["output"] for r in gold_predictions(dm.load().cases, "python")}
    seen_prompts = []

    def scripted(trajectories):
        seen_prompts.extend(module.template.render_prompt(t, module.tokenizer) for t in trajectories)
        # right answers for the first three cases, a wrong tool for parallel_0, garbage for the rest
        return [gold[t.id] if t.id.startswith("simple") else 'get_time(city="Oslo")' if t.id == "parallel_0" else "???" for t in trajectories]

    monkeypatch.setattr(module, "_generate", scripted)
    metrics = _trainer(tmp_path).test(module, datamodule=dm, verbose=False)[0]
    # 3 right + irrelevance_0 right (no call) of 6; live_simple unparseable; parallel_0 wrong count
    assert metrics["test/TS"] == pytest.approx(400 / 6) and metrics["test/CF"] == pytest.approx(400 / 6)
    report = module.last_report
    assert (report["TS"], report["CF"], report["n"]) == (66.67, 66.67, 6)
    assert [c["CF"] for c in report["cases"]] == [True, True, True, False, False, True]
    assert "Find the area of a triangle" in seen_prompts[0]
    # the predictions file scores to the same report with `score`
    rows = read_predictions(tmp_path / "out" / "predictions.jsonl")
    rescored = score_predictions(load_benchmark("bfcl", FIXTURES), rows, "bfcl", "python")
    assert rescored["cases"] == report["cases"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["CF"] == 66.67


def _tooleyes_file(tmp_path) -> Path:
    tools = [{"name": "get_uuid", "description": "A UUID.", "parameters": {"type": "object", "properties": {"cnt": {"type": "string"}}, "required": ["cnt"]}},
             {"name": "finish", "description": "Finish.", "parameters": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}]
    system = "Use tools:\n" + json.dumps(tools) + "\n\nLet's Begin!"
    recs = [{"id": "Turn 1: q", "scenario": sc, "path": "p", "conversations": [{"from": "system", "value": system}, {"from": "user", "value": "Give me a UUID."}]}
            for sc in ("TG", "RS")]
    path = tmp_path / "tooleyes_zero_shot.json"
    path.write_text(json.dumps(recs))
    return path


def test_multi_turn_loop(tmp_path, monkeypatch):
    dm = BenchmarkDataModule("tooleyes", str(_tooleyes_file(tmp_path)), batch_size=2)
    module = TLEvalModule(template="python_doc", tiny_config=TINY, output_dir=str(tmp_path / "out"))
    prompts: list[list[str]] = []

    def scripted(trajectories):
        prompts.append([module.template.render_prompt(t, module.tokenizer) for t in trajectories])
        outs = []
        for t in trajectories:
            if t.id == "tooleyes-0001":  # hallucinates a tool, then gives up with garbage
                outs.append("get_uid(cnt=\"1\")" if not t.steps else "...")
            else:  # a good call, then finish
                outs.append('get_uuid(cnt="1")' if not t.steps else 'finish(answer="done")')
        return outs

    monkeypatch.setattr(module, "_generate", scripted)
    metrics = _trainer(tmp_path).test(module, datamodule=dm, verbose=False)[0]
    assert [len(p) for p in prompts] == [2, 2]  # both tasks in lockstep for two model turns
    assert '"status": "success"' in prompts[1][0]  # the simulator's feedback is in the next prompt
    assert "name 'get_uid' is not defined" in prompts[1][1]
    # calls: get_uuid ok, finish ok | get_uid (DE), "..." (format error, CE)
    assert (metrics["test/DE"], metrics["test/CE"], metrics["test/VA"]) == (25.0, 25.0, 50.0)
    report = module.last_report
    assert (report["DE"], report["CE"], report["VA"]) == (25.0, 25.0, 50.0)
    assert [c["categories"] for c in report["cases"]] == [["all_right", "all_right"], ["tool_hallucination", "format_error"]]
    # the trace (outputs + feedback) replays to the same report through `score`
    rows = read_predictions(tmp_path / "out" / "predictions.jsonl")
    assert rows[0]["turns"][0]["feedback"][0].startswith('{"tool": "get_uuid"')
    rescored = score_predictions(load_benchmark("tooleyes", tmp_path / "tooleyes_zero_shot.json"), rows, "corrected", "python")
    assert rescored["cases"] == report["cases"]


def test_eval_module_loads_a_checkpoint(tmp_path):
    """A TLSFTModule .ckpt evaluates with its own weights, tokenizer and template (through load_pretrained)."""
    from tl_lightning.checkpoints import tokenizer_to_state
    from tl_lightning.modules.sft import TLSFTModule

    sft = TLSFTModule(tiny_config=TINY)
    path = tmp_path / "sft.ckpt"
    hparams = {**dict(sft.hparams), "template": "react"}
    torch.save({"state_dict": sft.state_dict(), "hyper_parameters": hparams, "tokenizer": tokenizer_to_state(sft.tokenizer)}, path)
    module = TLEvalModule(model=str(path))
    assert not module.model.training and len(module.tokenizer) == len(sft.tokenizer)
    assert module.template.name == "react" and module.call_format == "react"
    for (name, a), (_, b) in zip(sft.model.state_dict().items(), module.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert TLEvalModule(model=str(path), template="python_doc").template.name == "python_doc"  # an explicit template wins
    with pytest.raises(ValueError, match="carries no tokenizer"):
        torch.save({"state_dict": {}}, tmp_path / "bare.ckpt")
        TLEvalModule(model=str(tmp_path / "bare.ckpt"))


def test_pathological_outputs_are_counted_not_fatal(tmp_path, monkeypatch):
    """Outputs no scorer can handle (a 4,000-hex-digit int, a product past float range) are wrong, not fatal."""
    dm = BenchmarkDataModule("bfcl", str(FIXTURES), batch_size=4)
    module = TLEvalModule(template="python_doc", mode="bfcl", tiny_config=TINY, output_dir=str(tmp_path / "out"))
    gold = {r["id"]: r["output"] for r in gold_predictions(dm.load().cases, "python")}
    bad = {
        "simple_python_0": "calculate_triangle_area(base=0x" + "f" * 4000 + ", height=5)",
        "simple_python_1": "math.factorial(number=" + "9" * 99_000 + ")",
    }
    monkeypatch.setattr(module, "_generate", lambda trajectories: [bad.get(t.id, gold[t.id]) for t in trajectories])
    metrics = _trainer(tmp_path).test(module, datamodule=dm, verbose=False)[0]
    assert metrics["test/CF"] == pytest.approx(400 / 6)  # the other four cases are right
    report = module.last_report
    assert [c["CF"] for c in report["cases"]][:2] == [False, False] and report["CF"] == 66.67
    assert {u["id"] for u in report["unparseable"]} >= set(bad)
    assert (tmp_path / "out" / "report.json").is_file()


def test_datamodule_pads_to_world_size(tmp_path):
    dm = BenchmarkDataModule("bfcl", str(FIXTURES), batch_size=4, limit=5)
    dm.setup("test")
    assert len(dm.load().cases) == 5 and [len(b) for b in dm.test_dataloader()] == [4, 1]
    assert dm.tokenizer is None


@pytest.mark.slow
@pytest.mark.parametrize("split", ["single", "multi"])
def test_cli_end_to_end(tmp_path, split):
    """``python -m tl_lightning test --config configs/eval/synthetic_<split>.yaml`` on a tiny random model."""
    from tl_lightning.__main__ import main
    from tl_lightning.synthetic.generator import generate

    generate(tmp_path / "data", n_train=2, n_val=1, n_test_single=4, n_test_multi=3)
    out = tmp_path / "out"
    main([
        "test", "--config", str(ROOT / "configs" / "eval" / f"synthetic_{split}.yaml"),
        "--data.init_args.path", str(tmp_path / "data" / f"test_{split}.jsonl"),
        "--data.init_args.limit", "3",
        "--model.init_args.tiny_config", json.dumps(TINY),
        "--model.init_args.max_new_tokens", "12",
        "--model.init_args.output_dir", str(out),
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
    ])
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 3 and len(read_predictions(out / "predictions.jsonl")) == 3
    assert report["kind"] == ("single_turn" if split == "single" else "multi_turn")
    assert (out / "report.md").is_file()
    # The resolved config goes beside the report, not into the run (or working) directory.
    assert "synthetic" in (out / "config.yaml").read_text() and not (tmp_path / "config.yaml").exists()


@pytest.mark.slow
def test_quickstart_accuracy_is_the_test_stage_on_an_hf_export(tmp_path):
    """The README's held-out accuracy command: the `test` stage on the quick start's HF export, TS/PI/CF."""
    from tl_lightning.__main__ import main
    from tl_lightning.checkpoints import export_hf_model
    from tl_lightning.modules.sft import TLSFTModule
    from tl_lightning.synthetic.generator import generate

    generate(tmp_path / "data", n_train=2, n_val=1, n_test_single=4, n_test_multi=1)
    sft = TLSFTModule(tiny_config=TINY)
    hf = export_hf_model(sft.model, sft.tokenizer, tmp_path / "hf")
    main([
        "test", "--config", str(ROOT / "configs" / "eval" / "synthetic_single.yaml"),
        "--model.init_args.model", str(hf),
        "--data.init_args.path", str(tmp_path / "data" / "test_single.jsonl"),
        "--model.init_args.max_new_tokens", "8",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path / "run"),
    ])
    reports = list((tmp_path / "run" / "eval").glob("*/report.json"))
    assert len(reports) == 1
    # A training run's own config.yaml would sit in run/; the test stage's goes beside its report.
    assert (reports[0].parent / "config.yaml").is_file() and not (tmp_path / "run" / "config.yaml").exists()
    report = json.loads(reports[0].read_text())
    assert (report["kind"], report["mode"], report["n"]) == ("single_turn", "corrected", 4)
    assert all(0.0 <= report[k] <= 100.0 for k in ("TS", "PI", "CF"))


class _ScriptedEval(TLEvalModule):
    """Answers BFCL fixture cases from a script (picklable for spawned DDP workers)."""

    def _generate(self, trajectories):
        gold = {r["id"]: r["output"] for r in gold_predictions(load_benchmark("bfcl", FIXTURES).cases, "python")}
        return [gold[t.id] if t.id.startswith("simple") else "???" for t in trajectories]


@pytest.mark.slow
@pytest.mark.multiprocess
def test_ddp_two_processes_gather_every_case_once(tmp_path):
    dm = BenchmarkDataModule("bfcl", str(FIXTURES), batch_size=2, limit=5)  # 5 cases: rank 1 gets a None pad
    module = _ScriptedEval(template="python_doc", mode="bfcl", tiny_config=TINY, output_dir=str(tmp_path / "out"))
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                      default_root_dir=tmp_path, accelerator="cpu", devices=2, strategy="ddp_spawn")
    metrics = trainer.test(module, datamodule=dm, verbose=False)[0]
    # simple_python_0..2 right, parallel_0 and live_simple wrong: 3 of 5, each counted once
    assert metrics["test/TS"] == pytest.approx(60.0) and metrics["test/CF"] == pytest.approx(60.0)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["n"] == 5 and [c["id"] for c in report["cases"]] == [c.id for c in load_benchmark("bfcl", FIXTURES).cases[:5]]
    assert report["CF"] == 60.0 and len(read_predictions(tmp_path / "out" / "predictions.jsonl")) == 5


@pytest.mark.parametrize("name", ["rotbench", "toolalpaca", "bfcl", "tooleyes", "synthetic_single", "synthetic_multi"])
def test_eval_configs_instantiate(name):
    from tl_lightning.cli import TLCLI

    cli = TLCLI(args=["--config", str(ROOT / "configs" / "eval" / f"{name}.yaml"), "--trainer.enable_progress_bar", "false"], run=False)
    assert isinstance(cli.model, TLEvalModule) and isinstance(cli.datamodule, BenchmarkDataModule)
    assert cli.model.call_format == cli.model.template.call_format


def test_a_set_whose_gold_the_template_cannot_read_back_is_refused_before_generating():
    """A case none of whose acceptable answers the template can write so that its parser reads it back would be
    scored wrong whatever the model does: the test stage refuses the set in one line. One readable answer is enough."""
    from types import SimpleNamespace

    from tl_lightning.data.cases import EvalCase
    from tl_lightning.data.schema import Message, Tool, ToolCall

    module = TLEvalModule(template="python_doc", tiny_config=TINY)
    tools = [Tool("run", "", {"type": "object", "properties": {"code:": {"type": "string"}, "code": {"type": "string"}}})]

    def case(*answers):
        return EvalCase("rb-1", 0, tools, [Message("user", "q")], gold=[[ToolCall("run", a)] for a in answers])

    module._check_names(SimpleNamespace(name="rb", cases=[case({"code": "1"}, {"code:": "1"})]))  # one answer reads back
    with pytest.raises(ValueError, match=r"^rb case rb-1: no acceptable answer can be written by the python_doc template "
                                         r"so that it reads back: call to 'run', argument 'code:': "):
        module._check_names(SimpleNamespace(name="rb", cases=[case({"code:": "1"})]))
    TLEvalModule(template="react", tiny_config=TINY)._check_names(SimpleNamespace(name="rb", cases=[case({"code:": "1"})]))


def _eval_args(tmp_path, split: str, *extra: str) -> list[str]:
    return ["--config", str(ROOT / "configs" / "eval" / f"synthetic_{split}.yaml"),
            "--model.init_args.tiny_config", json.dumps(TINY), "--model.init_args.max_new_tokens", "8",
            "--model.init_args.output_dir", str(tmp_path / "out"), "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path), *extra]


def test_a_partial_test_reports_over_the_cases_it_ran_and_says_so(tmp_path, caplog, monkeypatch):
    """`--trainer.limit_test_batches 2` used to report TS over the whole set, the cases never run counted as wrong
    and unparseable ("300 cases, 269 unparseable") while the metrics said test/n 32."""
    from tl_lightning.__main__ import main

    monkeypatch.setattr("sys.argv", ["tl-lightning"])
    assert main(["test", *_eval_args(tmp_path, "single", "--data.init_args.limit", "20", "--data.init_args.batch_size", "4",
                                     "--trainer.limit_test_batches", "2")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["n"] == 8 and len(report["cases"]) == 8 and report["n_unparseable"] <= 8
    assert report["partial"] == {"cases_run": 8, "cases_in_set": 20, "why": "trainer.limit_test_batches=2"}
    assert report["data"]["notes"] == ["limit: the first 20 of 300 cases"]
    assert len(read_predictions(tmp_path / "out" / "predictions.jsonl")) == 8
    assert "(8 of 20 cases, a partial run (trainer.limit_test_batches=2), " in caplog.text
    assert "**Partial run**: 8 of 20 cases" in (tmp_path / "out" / "report.md").read_text()
    # the whole (limited) set: not partial
    assert main(["test", *_eval_args(tmp_path, "single", "--data.init_args.limit", "6")]) == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["partial"] is None


@pytest.mark.parametrize("split", ["single", "multi"])
def test_predict_writes_the_predictions_file_that_score_reads(tmp_path, caplog, monkeypatch, split):
    from tl_lightning.__main__ import main
    from tl_lightning.evaluation.score import main as score

    monkeypatch.setattr("sys.argv", ["tl-lightning"])
    assert main(["predict", *_eval_args(tmp_path, split, "--data.init_args.limit", "3")]) == 0
    path = tmp_path / "out" / "predictions.jsonl"
    rows = read_predictions(path)
    assert [r["index"] for r in rows] == [0, 1, 2] and all(("output" if split == "single" else "turns") in r for r in rows)
    assert f"3 predictions written to {path}" in caplog.text
    assert not (tmp_path / "out" / "report.json").exists()  # predict does not score
    assert score(["--benchmark", "synthetic", "--data", "quickstart", "--category", split, "--predictions", str(path),
                  "--output", str(tmp_path / "scored")]) == 0
    report = json.loads((tmp_path / "scored" / "report.json").read_text())
    assert len(report["predictions"]["missing"]) == len(report["cases"]) - 3  # score reads the whole set
