"""TLPPOModule: PPO (or a critic-free GRPO-family estimator) from an SFT model with the tool-error reward (IRM).

    python -m tl_lightning fit --config configs/ppo_quickstart.yaml
    python -m tl_lightning fit --config configs/grpo_quickstart.yaml       # advantage: grpo, G=8, no critic
    python -m tl_lightning fit --config configs/paper/ppo_codellama7b.yaml

One training step is one PPO iteration on a batch of prompts (docs/method.md, "PPO"; DeepSpeed-Chat's
settings): a rollout per prompt (G per prompt for a group estimator) -> the reward of the parsed call (IRM
against the gold calls, or the sandbox's feedback), at the last generated token -> the shared update of
:class:`~tl_lightning.modules.rl_base.RLModule` (reward clip, KL, advantages, clipped minibatch updates).
Validation: greedy rollouts on held-out prompts, their mean reward and share of fully correct calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from tl_lightning.generation import tokenize_prompts
from tl_lightning.modules.rl_base import Collected, RLModule
from tl_lightning.ranges import check_ranges, choose
from tl_lightning.rl import Rollout, masked_mean, scores_at_last_token
from tl_lightning.rl.data import PromptRecord
from tl_lightning.rl.rewards import REWARD_SOURCES, RewardSourceName, score_texts

__all__ = ["TLPPOModule"]


class TLPPOModule(RLModule):
    """PPO with IRM rewards (or sandbox-feedback rewards) and a KL penalty to the frozen initial actor.

    Args (besides :class:`~tl_lightning.modules.rl_base.RLModule`'s):
        reward_source: ``gold`` (IRM table against the gold calls) or ``sandbox`` (execute the call and map its
            feedback category through ``category_rewards``) (:data:`~tl_lightning.rl.rewards.REWARD_SOURCES`).
        irm_values: overrides of the IRM table (keys of :class:`~tl_lightning.rewards.IRMValues`).
        sandbox_seed, sandbox_instability_rate: the sandbox's settings (sandbox source).
    """

    def __init__(
        self, reward_source: RewardSourceName = "gold", irm_values: dict[str, float] | None = None, sandbox_seed: int = 0,
        sandbox_instability_rate: float = 0.0, **kwargs: Any,
    ) -> None:
        check_ranges("TLPPOModule: ", {"sandbox_instability_rate": sandbox_instability_rate})
        source = choose(REWARD_SOURCES, reward_source, "TLPPOModule: reward_source")
        super().__init__(**kwargs)
        hp = self.hparams
        self.reward_fn = source.make(irm_values, hp.category_rewards, sandbox_seed, sandbox_instability_rate)
        self.categories = list(source.outcomes)
        self.val_reward, self.val_correct = MeanMetric(), MeanMetric()
        self.val_frac = torch.nn.ModuleDict({c: MeanMetric() for c in self.categories})

    def _stop_for(self, records: Sequence[PromptRecord]) -> tuple[list[int], list[str]]:
        eos = self.tokenizer.eos_token_id
        ids, strings = {eos} if eos is not None else set(), []
        for eot in {r.end_of_turn for r in records}:
            tid = self.tokenizer.convert_tokens_to_ids(eot)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
            else:
                strings.append(eot)
        return sorted(ids), strings

    def collect(self, records: list[PromptRecord], greedy: bool = False) -> Collected:
        policy = self.policy(greedy, *self._stop_for(records))
        out = policy(tokenize_prompts(self.tokenizer, [r.text for r in records]), self._rollout_seed())
        rewards, outcomes = score_texts(out.texts, records, self.reward_fn)
        scores = scores_at_last_token(rewards.to(self.device), out.response_mask)
        return Collected(out.sequences, out.attention_mask, out.response_mask, scores, out.texts, (rewards, outcomes), out.logprobs)

    def rollout(self, records: Sequence[PromptRecord], greedy: bool = False) -> Rollout:
        """One response per prompt, rewarded and scored under the policy, reference and critic (all detached)."""
        return self.score(self.collect(list(records), greedy), 1.0 if greedy else self._train_temperature)

    def train_logs(self, info: Any, rollout: Rollout, returns: Tensor) -> dict[str, Tensor]:
        rewards, outcomes = info
        n, mask = len(outcomes), rollout.response_mask
        logs = {"train/reward": rewards.mean(), "train/response_length": mask.sum(dim=1).mean()}
        if self.critic is not None:
            logs.update({"train/return": masked_mean(returns, mask), "train/value": masked_mean(rollout.values, mask)})
        logs.update({f"train/frac_{c}": torch.tensor(outcomes.count(c) / n) for c in self.categories})
        self.log("train/reward_step", rewards.mean().to(self.device), prog_bar=True, on_step=True, batch_size=n)
        return logs

    def validation_step(self, batch: list[PromptRecord], batch_idx: int) -> None:
        """Greedy rollouts on held-out prompts: mean reward and share of fully correct calls."""
        out = self.policy(True, *self._stop_for(batch))(tokenize_prompts(self.tokenizer, [r.text for r in batch]), None)
        scores, categories = score_texts(out.texts, batch, self.reward_fn)
        correct = torch.tensor([c in ("correct", "all_right") for c in categories], dtype=torch.float32)
        self.val_reward.update(scores.to(self.device))
        self.val_correct.update(correct.to(self.device))
        self.log("val/reward", self.val_reward, prog_bar=True, batch_size=len(batch))
        self.log("val/correct", self.val_correct, batch_size=len(batch))
        for c, metric in self.val_frac.items():
            metric.update(torch.tensor([float(x == c) for x in categories], device=self.device))
            self.log(f"val/frac_{c}", metric, batch_size=len(batch))
