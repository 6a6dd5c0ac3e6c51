"""End to end: ``python -m tl_lightning fit --config configs/grpo_quickstart.yaml`` (1 and 2 DDP processes)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import test_ppo_cli as ppo_cli
import torch
from lightning.pytorch import Callback
from test_ppo_cli import _sft_export

QUICK = [
    "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "2",
    "--trainer.num_sanity_val_steps", "0", "--trainer.max_time", "null",
    "--model.init_args.max_new_tokens", "6", "--model.init_args.group_size", "2",
    "--data.init_args.batch_size", "2", "--data.init_args.val_batch_size", "2",
    "--data.init_args.max_train_prompts", "8", "--data.init_args.max_val_prompts", "2",
]


class LengthRewardSync(Callback):
    """Passed by class path to the CLI run. An untrained tiny model writes unparseable text only, so every IRM
    reward is -2, every group is unanimous and nothing would move; a reward from the response length varies
    within groups, so the actor really trains. Writes how far the ranks' weights differ and how far they moved."""

    def __init__(self, out: str) -> None:
        self.out = out

    def _flat(self, pl_module) -> torch.Tensor:
        return torch.cat([p.detach().flatten().clone() for p in pl_module.parameters() if p.requires_grad])

    def on_train_start(self, trainer, pl_module):
        pl_module.reward_fn = lambda text, record: (float(len(text) % 3), "correct")
        self.start = self._flat(pl_module)

    def on_train_end(self, trainer, pl_module):
        flat = self._flat(pl_module)
        gathered = trainer.strategy.all_gather(flat)  # [world, N]
        if trainer.is_global_zero:
            diff = (gathered - gathered[0]).abs().max().item()
            Path(self.out).write_text(json.dumps({"rank_diff": diff, "moved": (flat - self.start).abs().max().item()}))


def _run(workdir: Path, *extra: str) -> None:
    ppo_cli._run(workdir, *extra, config="grpo_quickstart.yaml", quick=QUICK)


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.multiprocess
def test_grpo_quickstart_runs_with_ddp_on_two_cpu_processes_and_keeps_ranks_identical(tmp_path):
    _sft_export(tmp_path)
    out = tmp_path / "sync.json"
    _run(
        tmp_path, "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.callbacks+=test_ppo_grpo_cli.LengthRewardSync", f"--trainer.callbacks.out={out}",
    )
    sync = json.loads(out.read_text())
    # different prompts and samples on each rank, yet identical weights after 2 steps: gradients were averaged
    assert sync["rank_diff"] == 0.0 and sync["moved"] > 0
    run = tmp_path / "runs" / "grpo_quickstart"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2 * 2  # 2 steps x 2 minibatches, one optimizer
    assert len(ckpt["optimizer_states"]) == 1 and not any(k.startswith("critic.") for k in ckpt["state_dict"])
    with open(run / "metrics.csv") as f:
        train = [r for r in csv.DictReader(f) if r.get("train/reward")]
    assert train and all(r["train/frac_zero_std_groups"] != "" and r["train/kl_k3"] != "" for r in train)
    assert all(r.get("train/value_loss", "") == "" for r in train)
