"""GPU checks: an FSDP auto-wrap bf16 SFT step, a bf16 PPO step, and the SFT step benchmark on CUDA.

Deselected by default (``-m 'not gpu'`` in pyproject.toml) and skipped without a CUDA device; run them
all with ``scripts/gpu_check.sh`` or::

    python -m pytest -q -m gpu tests/gpu
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from sft_helpers import TINY, HandBuiltDataModule

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

REPO = Path(__file__).resolve().parents[2]


class StepLosses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


def _trainer(tmp_path, accelerator: str, **kw) -> Trainer:
    defaults = dict(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                    num_sanity_val_steps=0, limit_val_batches=0)
    return Trainer(**{**defaults, **kw})


def sft_fsdp_bf16_steps(tmp_path, accelerator: str = "cuda") -> None:
    """Three SFT steps under FSDP with no auto_wrap_policy in the config: every decoder layer gets wrapped."""
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    from tl_lightning.modules.sft import TLSFTModule

    seed_everything(0)
    dm = HandBuiltDataModule()
    module = TLSFTModule(tokenizer=dm.tokenizer, tiny_config=TINY, lr=1e-2, warmup_ratio=0.0, lr_schedule="constant")
    before = {n: p.detach().float().cpu().clone() for n, p in module.model.named_parameters()}
    losses = StepLosses()
    trainer = _trainer(tmp_path, accelerator, strategy=FSDPStrategy(), precision="bf16-mixed", max_steps=3,
                       callbacks=[losses])
    trainer.fit(module, datamodule=dm)
    wrapped = [m for m in module.model.modules() if isinstance(m, FullyShardedDataParallel)]
    assert sum(isinstance(m.module, LlamaDecoderLayer) for m in wrapped) == TINY["num_hidden_layers"]
    assert len(losses.losses) == 3 and all(math.isfinite(x) for x in losses.losses)
    export = module.export_hf(tmp_path / "hf")  # gathers the full state dict from the shards
    from transformers import AutoModelForCausalLM

    after = AutoModelForCausalLM.from_pretrained(export).state_dict()
    changed = [n for n, p in before.items() if not torch.equal(p, after[n].float())]
    assert len(changed) == len(before), set(before) - set(changed)


def ppo_bf16_step(tmp_path, accelerator: str = "cuda") -> None:
    """One PPO iteration (two update passes) in bf16 mixed precision: actor and critic change, the reference
    does not. Two passes, because the zero-initialised value head sends the critic backbone no gradient in the first."""
    from torch.utils.data import DataLoader

    from tl_lightning.data.schema import Message, Tool, ToolCall, Trajectory
    from tl_lightning.modules.ppo import TLPPOModule
    from tl_lightning.rl.data import PromptRecord
    from tl_lightning.tokenization import load_tokenizer

    seed_everything(0)
    tools = [Tool("ping_a"), Tool("ping_b")]
    record = PromptRecord("toy", "User: ping\nAssistant:", Trajectory("toy", tools, [Message("user", "ping")]),
                          [ToolCall("ping_a")], tools, 0, "python", "</s>")
    module = TLPPOModule(tokenizer=load_tokenizer("tl-tiny"), tiny_config=TINY, max_new_tokens=8, do_sample=True,
                         ppo_epochs=2, actor_lr=1e-2, critic_lr=1e-2)
    snapshot = {name: {n: p.detach().clone() for n, p in getattr(module, name).named_parameters()}
                for name in ("actor", "critic", "reference")}
    trainer = _trainer(tmp_path, accelerator, precision="bf16-mixed", max_steps=1)
    trainer.fit(module, DataLoader([record] * 4, batch_size=4, collate_fn=list))
    assert math.isfinite(float(trainer.callback_metrics["train/policy_loss"]))
    for name in ("actor", "critic"):
        for n, p in getattr(module, name).named_parameters():
            assert not torch.equal(snapshot[name][n].to(p.device), p.detach()), f"{name}.{n} did not change"
    for n, p in module.reference.named_parameters():
        assert torch.equal(snapshot["reference"][n].to(p.device), p.detach()), f"reference.{n} changed"


def test_fsdp_auto_wrap_bf16_sft_step(tmp_path):
    sft_fsdp_bf16_steps(tmp_path)


def test_ppo_step_bf16(tmp_path):
    ppo_bf16_step(tmp_path)


def test_bench_sft_step_on_cuda():
    cmd = [sys.executable, "benchmarks/bench_sft_step.py", "--device", "cuda", "--steps", "3", "--warmup", "1",
           "--batch-size", "2", "--max-length", "512"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "on cuda" in out.stdout and "step ratio" in out.stdout and "peak memory" in out.stdout, out.stdout
