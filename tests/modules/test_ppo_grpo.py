"""TLPPOModule with critic-free estimators: no critic built, groups, bad input, and GRPO learning a toy task."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from lightning.pytorch import seed_everything
from test_ppo import RewardLog, make_module, p_call, toy_record, trainer, warm_up
from torch.utils.data import DataLoader

from tl_lightning.modules.ppo import TLPPOModule

GRPO = dict(advantage="grpo", group_size=4, do_sample=True, kl_mode="loss")


def prompts(n: int) -> DataLoader:
    """One batch of n prompts: the module samples each group_size times."""
    return DataLoader([toy_record()] * n, batch_size=n, collate_fn=list)


@pytest.mark.parametrize("advantage", ["grpo", "dr_grpo", "rloo", "reinforce_pp"])
def test_critic_free_estimators_build_no_critic_and_train_only_the_actor(advantage, tiny_tokenizer, tmp_path, one_thread):
    seed_everything(0)
    module = make_module(tiny_tokenizer, **{**GRPO, "advantage": advantage})
    assert module.critic is None
    assert not any(k.startswith("critic.") for k in module.state_dict())
    assert isinstance(module.configure_optimizers(), torch.optim.AdamW)  # one optimizer: the actor's
    warm_up(module, tiny_tokenizer, steps=40)  # ping_a vs ping_b: groups whose rewards differ
    before = {k: v.detach().clone() for k, v in module.actor.named_parameters()}
    t = trainer(tmp_path, max_epochs=1)
    t.fit(module, prompts(2))
    metrics = t.callback_metrics
    assert "train/value_loss" not in metrics and "train/value" not in metrics and "train/return" not in metrics
    assert torch.isfinite(metrics["train/policy_loss"])
    assert ("train/frac_zero_std_groups" in metrics) == (advantage != "reinforce_pp")
    assert "train/kl_k3" in metrics
    changed = [k for k, v in module.actor.named_parameters() if not torch.equal(before[k], v.detach())]
    assert changed, "no actor parameter moved"
    assert t.global_step == 1  # one optimizer step per minibatch: no critic step is counted


def test_gae_still_builds_the_critic_and_two_optimizers(tiny_tokenizer):
    module = make_module(tiny_tokenizer)
    assert module.critic is not None and len(module.configure_optimizers()) == 2


def _no_load(*args, **kwargs):
    raise AssertionError("a model was loaded before the settings were checked")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(advantage="grpo", group_size=1, do_sample=True), "group_size must be >= 2"),
        (dict(advantage="rloo", group_size=4, do_sample=False), "do_sample"),
        (dict(advantage="ppo"), "advantage must be one of"),
        (dict(loss_agg="sum"), "loss_agg"),
        (dict(ratio_level="group"), "ratio_level"),
        (dict(kl_mode="k2"), "kl_mode"),
        (dict(clip_high=0.0), "clip_high"),
    ],
)
def test_bad_settings_are_rejected_before_any_model_loads(kw, message, monkeypatch):
    monkeypatch.setattr("tl_lightning.modules.rl_base.load_pretrained", _no_load)
    with pytest.raises(ValueError, match=message):
        TLPPOModule(tiny_config={}, **kw)


def test_the_module_samples_each_prompt_group_size_times_in_a_row(tiny_tokenizer, tmp_path, one_thread):
    seed_everything(0)
    module = make_module(tiny_tokenizer, **GRPO)
    seen, collect = [], module.collect
    module.collect = lambda items: seen.append([r.id for r in items]) or collect(items)
    other = dataclasses.replace(toy_record(), id="other")
    trainer(tmp_path, max_epochs=1).fit(module, DataLoader([toy_record(), other], batch_size=2, collate_fn=list))
    assert seen == [["toy"] * 4 + ["other"] * 4]


def test_grpo_raises_mean_reward_on_the_two_tool_toy_task(tiny_tokenizer, tmp_path, one_thread):
    seed_everything(0)
    module = make_module(tiny_tokenizer, **{**GRPO, "group_size": 8, "kl_coef": 0.01, "sampling_seed": 0})
    warm_up(module, tiny_tokenizer)
    p_a = p_call(module, tiny_tokenizer, " ping_a()</s>")
    log = RewardLog()
    trainer(tmp_path, max_epochs=12, callbacks=[log]).fit(module, prompts(2))
    first, last = sum(log.rewards[:2]) / 2, sum(log.rewards[-3:]) / 3
    assert last > first + 0.5, log.rewards
    assert p_call(module, tiny_tokenizer, " ping_a()</s>") > p_a + 0.2
