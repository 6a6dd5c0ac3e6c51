"""TLMultiTurnRLModule: one training step on sandbox episodes with gae (critic) and grpo (no critic)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch.utils.data import DataLoader

from tl_lightning.benchmarks.synthetic import read_synthetic_cases
from tl_lightning.modules.rl_multiturn import TLMultiTurnRLModule
from tl_lightning.rl.data import TaskDataModule
from tl_lightning.synthetic import ensure_quickstart_data

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 64}


@pytest.fixture(scope="module")
def tasks():
    ensure_quickstart_data()
    return read_synthetic_cases("quickstart:test_multi").cases[:2]


@pytest.mark.parametrize("advantage", ["gae", "grpo"])
def test_one_step_on_episodes_trains_the_actor_and_logs_every_reward_component(advantage, tasks, tmp_path):
    seed_everything(0)
    kw = dict(group_size=2, kl_mode="loss") if advantage == "grpo" else {}  # grpo: 2 episodes of each of the 2 tasks
    module = TLMultiTurnRLModule(tiny_config=TINY, advantage=advantage, max_turns=2, max_new_tokens=6, do_sample=True,
                                 actor_lr=1e-2, critic_lr=1e-2, sampling_seed=0, **kw)
    assert (module.critic is None) == (advantage == "grpo")
    assert module.loss_norm == 2 * 6  # Dr. GRPO's constant: max_turns x max_new_tokens per episode
    before = {k: v.detach().clone() for k, v in module.actor.named_parameters()}
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(tasks, batch_size=2, collate_fn=list))
    m = trainer.callback_metrics
    for key in ("train/return", "train/reward_calls", "train/reward_success", "train/reward_max_turns", "train/success",
                "train/turns", "train/truncated", "train/de_rate", "train/ce_rate", "train/generated_tokens",
                "train/policy_loss", "time/episodes_s"):
        assert key in m and torch.isfinite(m[key]), key
    assert ("train/value_loss" in m) == (advantage == "gae")
    if advantage == "gae":  # the KL-penalised rewards differ per token even when every turn is unparseable
        assert any(not torch.equal(before[k], v.detach()) for k, v in module.actor.named_parameters())


def test_episode_returns_are_clipped_to_reward_clip_as_configured(tasks, tmp_path):
    """An untrained model's first turn is unparseable, which ends the episode with the ``unparseable`` reward: -9
    here, clipped to -5. With no KL, gamma = lambda = 1 and a zero-initialised value head, every value target is
    the clipped return, so the critic's first squared error is exactly 25 (81 unclipped)."""
    seed_everything(0)
    module = TLMultiTurnRLModule(tiny_config=TINY, advantage="gae", max_turns=2, max_new_tokens=6, do_sample=True,
                                 sampling_seed=0, category_rewards={"unparseable": -9.0}, reward_clip=5.0, kl_coef=0.0,
                                 lam=1.0, whiten_advantages=False)
    trainer = Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(tasks, batch_size=2, collate_fn=list))
    m = trainer.callback_metrics
    assert m["train/return"].item() == -9.0 and m["train/turns"].item() == 1.0  # the setting holds: one turn, -9
    assert m["train/value_error"].item() == pytest.approx(25.0)


def test_multiturn_module_rejects_bad_turns():
    with pytest.raises(ValueError, match="max_turns must be >= 1"):
        TLMultiTurnRLModule(tiny_config=TINY, max_turns=0)
    with pytest.raises(ValueError, match="max_context must be >= 2"):
        TLMultiTurnRLModule(tiny_config=TINY, max_context=1)


def test_multiturn_module_passes_template_options_to_its_template():
    module = TLMultiTurnRLModule(tiny_config=TINY, template="chat_template",
                                 template_kwargs={"chat_template_kwargs": {"enable_thinking": False}})
    assert module.template.chat_template_kwargs == {"enable_thinking": False}
    with pytest.raises(TypeError, match="no_such_option"):
        TLMultiTurnRLModule(tiny_config=TINY, template="python_sig", template_kwargs={"no_such_option": 1})


def test_task_datamodule_batches_distinct_tasks(tasks):
    dm = TaskDataModule(train_path="quickstart:train_multi", batch_size=2, max_train_tasks=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 2 and batch[0].id != batch[1].id


def test_training_tasks_that_share_a_query_with_the_test_set_are_dropped_and_counted(tasks):
    dm = TaskDataModule(train_path="quickstart:test_multi", exclude_path="quickstart:test_multi")
    with pytest.raises(ValueError, match="held_out_overlap"):
        dm.setup("fit")
