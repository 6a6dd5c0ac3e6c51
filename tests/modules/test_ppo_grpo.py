"""TLPPOModule with critic-free estimators: no critic built, groups, bad input, and GRPO learning a toy task."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import seed_everything
from test_ppo import RewardLog, make_module, p_call, toy_record, trainer, warm_up
from torch.utils.data import DataLoader

from tl_lightning.data.prompts import PromptDataModule, _RepeatEach
from tl_lightning.modules.ppo import TLPPOModule
from tl_lightning.rl import check_groups

GRPO = dict(advantage="grpo", group_size=4, do_sample=True, kl_mode="loss")


def groups(n_prompts: int, g: int) -> DataLoader:
    return DataLoader([toy_record()] * n_prompts, batch_size=n_prompts, collate_fn=_RepeatEach(g))


@pytest.mark.parametrize("advantage", ["grpo", "dr_grpo", "rloo", "reinforce_pp"])
def test_critic_free_estimators_build_no_critic_and_train_only_the_actor(advantage, tiny_tokenizer, tmp_path, one_thread):
    seed_everything(0)
    module = make_module(tiny_tokenizer, **{**GRPO, "advantage": advantage})
    assert module.critic is None and module.value_head is None
    assert not any(k.startswith(("critic.", "value_head.")) for k in module.state_dict())
    assert isinstance(module.configure_optimizers(), torch.optim.AdamW)  # one optimizer: the actor's
    warm_up(module, tiny_tokenizer, steps=40)  # ping_a vs ping_b: groups whose rewards differ
    before = {k: v.detach().clone() for k, v in module.actor.named_parameters()}
    t = trainer(tmp_path, max_epochs=1)
    t.fit(module, groups(2, 4))
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
    monkeypatch.setattr("tl_lightning.modules.ppo.load_pretrained", _no_load)
    with pytest.raises(ValueError, match=message):
        TLPPOModule(tiny_config={}, **kw)


def test_group_size_must_divide_the_data_batch_before_anything_loads():
    with pytest.raises(ValueError, match=r"group_size=4 must be >= 1 and divide batch_size=6"):
        PromptDataModule(train_path="quickstart", batch_size=6, group_size=4)


def test_prompt_batches_repeat_each_prompt_group_size_times_in_a_row():
    assert _RepeatEach(3)(["a", "b"]) == ["a", "a", "a", "b", "b", "b"]
    check_groups(["a", "a", "b", "b"], 2)
    with pytest.raises(ValueError, match="set data.init_args.group_size to 2"):
        check_groups(["a", "b", "a", "b"], 2)  # a module with G=2 fed ungrouped data
    with pytest.raises(ValueError, match="not 4 copies"):
        check_groups(["a", "a", "a"], 4)


def test_grpo_raises_mean_reward_on_the_two_tool_toy_task(tiny_tokenizer, tmp_path, one_thread):
    seed_everything(0)
    module = make_module(tiny_tokenizer, **{**GRPO, "group_size": 8, "kl_coef": 0.01, "sampling_seed": 0})
    warm_up(module, tiny_tokenizer)
    p_a = p_call(module, tiny_tokenizer, " ping_a()</s>")
    log = RewardLog()
    trainer(tmp_path, max_epochs=12, callbacks=[log]).fit(module, groups(2, 8))
    first, last = sum(log.rewards[:2]) / 2, sum(log.rewards[-3:]) / 3
    assert last > first + 0.5, log.rewards
    assert p_call(module, tiny_tokenizer, " ping_a()</s>") > p_a + 0.2
