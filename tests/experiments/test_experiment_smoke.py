"""A smoke grid end to end: ``python -m tl_lightning sweep`` runs 2 real cells (tiny model, a few steps, 4 test cases),
one SFT only and one SFT + IRM-PPO, each as plain ``fit``/``test`` subprocesses, then writes the results table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tl_lightning.experiments import runner

ROOT = Path(__file__).resolve().parents[2]
TINY = '{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 64}'


# About 75 s on 2 free cores (the CI bound is 2 minutes); speed is not asserted here: a loaded machine
# would fail a timed test for nothing. The timeout only catches a hang.
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_smoke_grid_runs_end_to_end(tmp_path):
    from tl_lightning.synthetic.generator import generate

    data = tmp_path / "data"
    generate(data, n_train=24, n_val=8, n_test_single=4, n_test_multi=2, seed=0, error_rate=0.17)
    sweep = tmp_path / "smoke.yaml"
    # The grid parameter is a cell option here (${args} before `fit`): one cell without IRM, one with.
    sweep.write_text(f"""
program: tl_lightning
method: grid
parameters:
  irm: {{values: ["off", "on"]}}
command: [python, -m, "${{program}}", cell, "${{args}}", fit, --config, {ROOT / 'configs' / 'quickstart.yaml'},
          --data.init_args.train_path, {data / 'train.jsonl'}, --data.init_args.val_path, {data / 'val.jsonl'},
          --seed_everything, "0"]
""")
    out = tmp_path / "grid"
    code = runner.main([
        str(sweep), "--out", str(out),
        f"--sft-args=--model.init_args.model tl-tiny --model.init_args.tiny_config '{TINY}' --data.init_args.max_length 256 "
        "--trainer.max_steps 2 --trainer.val_check_interval 2 --trainer.limit_val_batches 1 --trainer.log_every_n_steps 1",
        f"--ppo-args=--data.init_args.train_path {data / 'train.jsonl'} --data.init_args.val_path {data / 'val.jsonl'} "
        "--trainer.limit_train_batches 1 --trainer.limit_val_batches 1 --trainer.val_check_interval 1 --trainer.max_time null "
        "--model.init_args.max_new_tokens 8 --data.init_args.batch_size 2 --data.init_args.max_val_prompts 2",
        "--test-args=--data.init_args.limit 4 --model.init_args.max_new_tokens 8",
    ])
    logs = {p.parent.name: p.read_text()[-3000:] for p in out.glob("*/cell.log")}
    assert code == 0, logs
    off, on = (json.loads((out / name / "cell.json").read_text()) for name in ("irm_off", "irm_on"))
    assert [e["model"] for e in off["evaluations"]] == ["sft"] and [e["model"] for e in on["evaluations"]] == ["ppo"]
    for record in (off, on):
        assert record["stages"]["sft"]["status"]["completed"] and set(record["evaluations"][0]["metrics"]) >= {"TS", "DE", "VA"}
    assert on["stages"]["ppo"]["status"]["completed"]
    sft = out / "irm_on" / "sft"
    assert "train/key_nll" in (sft / "metrics.csv").read_text().splitlines()[0]  # CSV logger
    assert list((sft / "wandb").glob("offline-run-*"))  # and W&B, offline
    report = json.loads((out / "irm_on" / "ppo" / "eval" / "synthetic_multi" / "report.json").read_text())
    assert report["n"] == 4 and len(report["cases"]) == 4  # the quick-start multi-turn set, --data.init_args.limit 4
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["label"] for r in rows] == ["+MAE +PKT", "+MAE +PKT +IRM"]
