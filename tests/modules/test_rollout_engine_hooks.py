"""The RL modules' side of the rollout-engine seam: one engine per fit, synced every ``sync_every`` steps and
before validation, closed after; the mismatch and TIS statistics in the logs; TIS in the policy loss."""

from __future__ import annotations

import math

import pytest
import torch
from lightning.pytorch import seed_everything
from test_ppo import TINY, make_module, toy_record, trainer
from torch.utils.data import DataLoader

from tl_lightning.rl import engines
from tl_lightning.rl.engines import HFEngine

GRPO = dict(advantage="grpo", group_size=4, do_sample=True, kl_mode="loss")


class CountingEngine(HFEngine):
    """HF generation standing in for vLLM: counts what the module asks of its engine."""

    built: list[CountingEngine] = []

    def __init__(self, model, tokenizer, settings):
        super().__init__(model, tokenizer)
        self.syncs, self.closed, self.generated, self.asked_logprobs = [], False, 0, []
        CountingEngine.built.append(self)

    def generate(self, prompt_ids, sampling):
        self.generated += 1
        self.asked_logprobs.append(sampling.logprobs)
        return super().generate(prompt_ids, sampling)

    def sync_weights(self, model) -> float:
        self.syncs.append(self.generated)
        return 0.0

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def counting(monkeypatch):
    monkeypatch.setattr(engines, "build_engine", lambda name, model, tok, settings: CountingEngine(model, tok, settings))
    CountingEngine.built.clear()
    return CountingEngine.built


def _fit(module, tmp_path, steps: int, **kw):
    loader = DataLoader([toy_record()] * 2, batch_size=2, collate_fn=list)
    t = trainer(tmp_path, max_epochs=steps, **kw)
    t.fit(module, loader, **({"val_dataloaders": loader} if "check_val_every_n_epoch" in kw else {}))
    return t


def test_engine_built_once_per_fit_synced_every_k_steps_and_closed(tiny_tokenizer, tmp_path, one_thread, counting):
    seed_everything(0)
    module = make_module(tiny_tokenizer, **GRPO, rollout_engine="vllm", vllm={"sync_every": 2})
    _fit(module, tmp_path, steps=5)
    (engine,) = counting
    assert engine.generated == 5 and engine.syncs == [2, 4]  # after the 2nd and 4th rollouts' updates
    assert engine.closed and module._engine is None
    assert all(engine.asked_logprobs)  # a non-HF engine's sampling log-probs are free: always asked for


def test_a_stale_engine_is_synced_before_validation(tiny_tokenizer, tmp_path, one_thread, counting):
    seed_everything(0)
    module = make_module(tiny_tokenizer, **GRPO, rollout_engine="vllm", vllm={"sync_every": 3})
    _fit(module, tmp_path, steps=2, check_val_every_n_epoch=1, num_sanity_val_steps=0)
    (engine,) = counting
    # step 1, sync (stale before validation), validation generates, step 2, sync, validation generates
    assert engine.syncs == [1, 3]
    assert engine.asked_logprobs == [True, False, True, False]  # greedy validation trains on nothing


def test_multi_turn_episodes_generate_through_the_engine_and_carry_its_logprobs(tmp_path, one_thread, counting):
    from tl_lightning.benchmarks.synthetic import read_synthetic_cases
    from tl_lightning.modules.rl_multiturn import TLMultiTurnRLModule
    from tl_lightning.synthetic import ensure_quickstart_data

    ensure_quickstart_data()
    tasks = read_synthetic_cases("quickstart:test_multi").cases[:2]
    seed_everything(0)
    module = TLMultiTurnRLModule(tiny_config=TINY, advantage="gae", max_turns=2, max_new_tokens=6, do_sample=True,
                                 sampling_seed=0, rollout_engine="vllm")
    t = trainer(tmp_path, max_epochs=1)
    t.fit(module, DataLoader(tasks, batch_size=2, collate_fn=list))
    (engine,) = counting
    assert 1 <= engine.generated <= 2 and engine.syncs == [engine.generated] and engine.closed
    # each turn's sampling log-probs went into the episode's trace and on to the rollout, aligned with its mask
    assert t.callback_metrics["train/sampler_abs_diff"].item() < 1e-4


def test_hf_engine_logs_a_tiny_mismatch_and_tis_weights_near_one(tiny_tokenizer, tmp_path, one_thread):
    seed_everything(0)
    module = make_module(tiny_tokenizer, **GRPO, tis_cap=2.0)
    t = _fit(module, tmp_path, steps=1)
    m = t.callback_metrics
    # the same weights sample and train: only the KV-cached vs full forward rounding differs
    assert m["train/sampler_abs_diff"].item() < 1e-4 and 0 <= m["train/sampler_kl"].item() < 1e-6
    assert abs(m["train/tis_weight"].item() - 1) < 1e-3 and m["train/tis_capped"].item() == 0
    assert isinstance(module.engine, HFEngine)  # outside a fit, rollouts go through HF on the actor


def test_hf_engine_keeps_no_scores_unless_tis_needs_them(tiny_tokenizer, tmp_path, one_thread):
    seed_everything(0)
    t = _fit(make_module(tiny_tokenizer, **GRPO), tmp_path, steps=1)
    assert "train/sampler_kl" not in t.callback_metrics and "train/tis_weight" not in t.callback_metrics


def _policy_loss_of_one_update(tokenizer, tis_cap):
    """The policy loss the module's minibatch update builds, for rollouts whose sampler found every sampled token
    twice as likely as the trainer did; the optimizer step is replaced by reading the loss."""
    seed_everything(0)
    module = make_module(tokenizer, **GRPO, tis_cap=tis_cap)
    rollout = module.rollout([toy_record()] * 4)
    rollout.sampling_logprobs = torch.where(rollout.response_mask.bool(), rollout.logprobs + math.log(2.0), 0.0)
    advantages = torch.arange(1.0, 5.0)[:, None].expand_as(rollout.logprobs) * rollout.response_mask
    losses = []
    module._step = lambda opt, loss: losses.append(loss.item())
    optimizer = torch.optim.SGD(module.actor.parameters(), lr=0.0)
    module.optimizers = lambda: optimizer
    stats = module._minibatch_update(rollout, advantages, advantages)
    return losses[0], stats


def test_tis_weights_scale_the_surrogate_of_the_update(tiny_tokenizer, one_thread):
    """With ``tis_cap`` each token's surrogate is weighed by p_trainer / p_sampler = 1/2; without it, untouched."""
    plain, plain_stats = _policy_loss_of_one_update(tiny_tokenizer, None)
    weighted, stats = _policy_loss_of_one_update(tiny_tokenizer, 4.0)
    assert plain != 0 and weighted == pytest.approx(plain / 2, rel=1e-4)
    assert stats["tis_weight"].item() == pytest.approx(0.5, rel=1e-5) and stats["tis_capped"].item() == 0
    assert "tis_weight" not in plain_stats
