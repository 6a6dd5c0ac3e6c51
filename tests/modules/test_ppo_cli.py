"""End to end: ``python -m tl_lightning fit --config configs/ppo_quickstart.yaml`` (1 and 2 DDP processes)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[2]
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 64}
QUICK = [
    "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.val_check_interval", "2",
    "--trainer.num_sanity_val_steps", "0", "--trainer.max_time", "null",
    "--model.init_args.max_new_tokens", "6", "--data.init_args.batch_size", "2",
    "--data.init_args.max_train_prompts", "8", "--data.init_args.max_val_prompts", "2",
]


class ParamSyncCheck(Callback):
    """Passed by class path to the CLI run: writes how far the ranks' trainable weights differ."""

    def __init__(self, out: str) -> None:
        self.out = out

    def on_train_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().flatten() for p in pl_module.parameters() if p.requires_grad])
        gathered = trainer.strategy.all_gather(flat)  # [world, N]
        if trainer.is_global_zero:
            Path(self.out).write_text(str((gathered - gathered[0]).abs().max().item()))


def _sft_export(workdir: Path) -> Path:
    """What the SFT quick start leaves behind (runs/quickstart/hf), from a tiny untrained model."""
    from tl_lightning.modules.sft import TLSFTModule

    torch.manual_seed(0)
    return TLSFTModule(tiny_config=TINY).export_hf(workdir / "runs" / "quickstart" / "hf")


def _run(workdir: Path, *extra: str, config: str = "ppo_quickstart.yaml", quick: list[str] = QUICK) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "tl_lightning", "fit", "--config", str(ROOT / "configs" / config), *quick, *extra]
    # run from workdir: the config's relative paths (actor export, runs/ppo_quickstart) resolve there
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _metrics(workdir: Path) -> list[dict]:
    with open(workdir / "runs" / "ppo_quickstart" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ppo_quickstart_config_runs_end_to_end(tmp_path):
    _sft_export(tmp_path)
    _run(tmp_path)
    out = tmp_path / "runs" / "ppo_quickstart"
    assert (out / "hf" / "config.json").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    rows = _metrics(tmp_path)
    train = [r for r in rows if r.get("train/reward")]
    assert len(train) == 2
    for key in ("train/kl", "train/entropy", "train/clipfrac", "train/approx_kl", "train/value_loss",
                "train/response_length", "time/rollout_s", "time/train_s", "train/frac_unparseable"):
        assert all(r[key] != "" for r in train), key
    assert any(r.get("val/reward") for r in rows)
    # the exported actor loads with plain transformers
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "hf")


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.multiprocess
def test_ppo_quickstart_runs_with_ddp_on_two_cpu_processes(tmp_path):
    _sft_export(tmp_path)
    sync = tmp_path / "max_param_diff.txt"
    _run(
        tmp_path, "--trainer.devices", "2", "--trainer.strategy", "ddp_find_unused_parameters_true",
        "--trainer.callbacks+=test_ppo_cli.ParamSyncCheck", f"--trainer.callbacks.out={sync}",
    )
    # different prompts on each rank, yet identical weights after 8 updates of each model: gradients were averaged
    assert float(sync.read_text()) == 0.0
    ckpt = torch.load(tmp_path / "runs" / "ppo_quickstart" / "checkpoints" / "last.ckpt", weights_only=False)
    # 2 iterations x 2 ppo_epochs x 2 minibatches x 2 optimizers
    assert ckpt["global_step"] == 16
    assert len(_metrics(tmp_path)) > 0
