"""End to end: ``python -m tl_lightning fit --config configs/rl_multiturn_quickstart.yaml`` trains on the quick-start
set's ``train_multi`` tasks, whose slot values are the training ones."""

from __future__ import annotations

import csv

import pytest
import yaml
from test_ppo_cli import _run, _sft_export

QUICK = [
    "--trainer.limit_train_batches", "1", "--trainer.max_time", "null",
    "--model.init_args.max_new_tokens", "4", "--model.init_args.max_turns", "2", "--model.init_args.group_size", "2",
    "--data.init_args.batch_size", "2",
]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_multiturn_quickstart_config_trains_on_train_multi(tmp_path):
    _sft_export(tmp_path)
    _run(tmp_path, config="rl_multiturn_quickstart.yaml", quick=QUICK)
    out = tmp_path / "runs" / "rl_multiturn_quickstart"
    assert (out / "hf" / "config.json").is_file()
    data = yaml.safe_load((out / "config.yaml").read_text())["data"]["init_args"]
    assert data["train_path"] == "quickstart:train_multi" and data["exclude_path"] == "quickstart:test_multi"
    with open(out / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/return")]
    assert len(rows) == 1 and float(rows[0]["train/turns"]) >= 1
