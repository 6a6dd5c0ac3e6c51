"""End to end: the GRPO and multi-turn quick starts with ``--model.init_args.rollout_engine hf|vllm``.

Both engines must hand the module rollouts of the same shapes and invariants: token ids in the vocabulary, 0/1
masks, the sampler's log-probs on exactly the sampled tokens and close to the trainer's, environment rewards
only on sampled tokens. The ``vllm`` runs need vLLM (``.ci/run``'s vLLM lane); elsewhere they are skipped.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from test_ppo_cli import _run
from test_ppo_grpo_cli import QUICK as GRPO_QUICK  # the GRPO quick start cut to 2 steps

HAS_VLLM = importlib.util.find_spec("vllm") is not None
ENGINES = ["hf", pytest.param("vllm", marks=pytest.mark.skipif(not HAS_VLLM, reason="vLLM is not installed (see .ci/run)"))]
#: on the CPU build of vLLM gpu_memory_utilization is a share of host RAM: give the KV cache an exact size instead
VLLM = '{kv_cache_memory_bytes: 134217728, enforce_eager: true}'
MULTI_QUICK = [
    "--trainer.limit_train_batches", "2", "--trainer.max_time", "null",
    "--model.init_args.max_new_tokens", "4", "--model.init_args.max_turns", "2", "--model.init_args.group_size", "2",
    "--data.init_args.batch_size", "2",
]


def _sft_export(workdir: Path) -> Path:
    """The SFT quick start's export (runs/quickstart/hf), untrained and small; head_dim 32, since vLLM's CPU
    attention kernels take no head_dim below 32."""
    from tl_lightning.modules.sft import TLSFTModule

    torch.manual_seed(0)
    tiny = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 128}
    return TLSFTModule(tiny_config=tiny).export_hf(workdir / "runs" / "quickstart" / "hf")


class RolloutRecorder(Callback):
    """Passed by class path to the CLI run: wraps the module's update, which every step hands its scored rollout,
    and writes what each step's rollout looked like."""

    def __init__(self, out: str) -> None:
        self.out, self.steps = out, []

    def on_train_start(self, trainer, pl_module):
        update = pl_module.update  # every RL module's step hands its scored rollout to the one update

        def recorded(rollout):
            self.steps.append(summary(rollout, len(pl_module.tokenizer)))
            return update(rollout)

        pl_module.update = recorded

    def on_train_end(self, trainer, pl_module):
        Path(self.out).write_text(json.dumps(self.steps))


def summary(rollout, vocab: int) -> dict:
    mask, start = rollout.response_mask, rollout.response_start
    sampled = rollout.sampling_logprobs
    on = mask.bool()
    return {
        "shape": list(rollout.sequences.shape), "T": mask.shape[1],
        "ids_in_vocab": bool(((rollout.sequences >= 0) & (rollout.sequences < vocab)).all()),
        "mask_01": bool(((mask == 0) | (mask == 1)).all()),
        "mask_inside_attention": bool((rollout.attention_mask[:, start:] >= mask).all()),
        "mask_is_prefix": bool((mask[:, 1:] <= mask[:, :-1]).all()),
        "every_row_sampled": bool((mask.sum(1) >= 1).all()),
        "has_sampling": sampled is not None,
        "sampling_zero_off_mask": sampled is not None and bool((sampled[~on] == 0).all()),
        "sampling_le_0": sampled is not None and bool((sampled[on] <= 1e-6).all()),
        "max_diff": None if sampled is None else float((sampled - rollout.logprobs).abs().max()),
        "scores_on_sampled_only": bool((rollout.scores[~on] == 0).all()),
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("config", ["grpo_quickstart.yaml", "rl_multiturn_quickstart.yaml"])
def test_quickstart_configs_run_with_either_rollout_engine(config, engine, tmp_path):
    _sft_export(tmp_path)
    out = tmp_path / "rollouts.json"
    quick = GRPO_QUICK if config.startswith("grpo") else MULTI_QUICK
    _run(
        tmp_path, "--model.init_args.rollout_engine", engine, "--model.init_args.vllm", VLLM, "--model.init_args.tis_cap", "2",
        "--trainer.callbacks+=test_rollout_engine_cli.RolloutRecorder", f"--trainer.callbacks.out={out}",
        config=config, quick=quick,
    )
    steps = json.loads(out.read_text())
    assert len(steps) == 2
    for s in steps:
        assert s["shape"][0] == 4  # 2 prompts or tasks x group_size 2
        assert s["ids_in_vocab"] and s["mask_01"] and s["mask_inside_attention"] and s["every_row_sampled"]
        assert s["has_sampling"] and s["sampling_zero_off_mask"] and s["sampling_le_0"] and s["scores_on_sampled_only"]
        assert s["max_diff"] <= 1e-4  # float32, weights synced every step: the sampler is the trainer
        if config.startswith("grpo"):
            assert s["mask_is_prefix"] and s["T"] <= 6  # one turn: at most max_new_tokens generated, then padding
    run = tmp_path / "runs" / config.removesuffix(".yaml")
    with open(run / "metrics.csv") as f:
        train = [r for r in csv.DictReader(f) if r.get("train/sampler_kl")]
    assert len(train) == 2 and all(float(r["train/sampler_abs_diff"]) <= 1e-4 for r in train)
    assert all(r["train/tis_weight"] != "" for r in train)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2 * 2
