"""Pure helpers of PPO: the rollout container, reward adapters and the advantage recipe.

:class:`~tl_lightning.modules.ppo.TLPPOModule` calls them in order, each step testable alone::

    rollout = module.rollout(records)                                   # Rollout, all detached
    scores, outcomes = score_texts(rollout.texts, records, reward_fn)   # [B], B outcome names
    rewards, advantages, returns = compute_advantages(rollout, scores, kl_coef=0.4, reward_clip=5.0,
                                                      gamma=1.0, lam=0.95)

The tensor maths (KL penalty, GAE, whitening, clipped losses) is in :mod:`tl_lightning.losses`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from tl_lightning.data.feedback import step_category
from tl_lightning.data.prompts import PromptRecord
from tl_lightning.data.schema import FeedbackCategory
from tl_lightning.losses import gae, masked_whiten, token_rewards
from tl_lightning.rewards import IRMValues, RewardCategory, category_reward, tool_call_reward
from tl_lightning.tools.calls import parse_calls

__all__ = ["REWARD_CATEGORIES", "Rollout", "compute_advantages", "gold_reward", "sandbox_reward", "score_texts"]

#: The outcome names each reward source can give, so the logged keys never change from step to step:
#: the IRM outcomes for gold rewards, the feedback categories (plus unparseable output) for sandbox rewards.
REWARD_CATEGORIES = {
    "gold": [c.value for c in RewardCategory],
    "sandbox": ["unparseable"] + [c.value for c in FeedbackCategory],
}


@dataclass
class Rollout:
    """B generated responses and what PPO needs of them, all detached. P: prompt width, T: response width.

    - ``sequences``: [B, P+T] long, prompt (left-padded) + response (right-padded) ids.
    - ``attention_mask``: [B, P+T] long, 1 on real tokens of prompt and response.
    - ``response_mask``: [B, T] float, 1 on generated tokens up to and including the stop token.
    - ``logprobs`` / ``ref_logprobs``: [B, T] float, log-probs of the response tokens under the acting
      policy / the frozen reference; 0 on padding.
    - ``values``: [B, T] float32, critic values of the states before each response token; 0 on padding.
    - ``texts``: B decoded responses (stop token excluded).
    """

    sequences: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    logprobs: Tensor
    ref_logprobs: Tensor
    values: Tensor
    texts: list[str]

    @property
    def response_start(self) -> int:
        """P: the column where every response starts."""
        return self.sequences.shape[1] - self.response_mask.shape[1]

    def select(self, index: Tensor) -> Rollout:
        """The rows ``index`` ([b] long), e.g. a minibatch."""
        rows = index.tolist()
        return Rollout(
            **{f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "texts"},
            texts=[self.texts[i] for i in rows],
        )


def gold_reward(text: str, record: PromptRecord, values: IRMValues) -> tuple[float, str]:
    """IRM reward of a generated step against the record's gold calls (DESIGN.md §1 table)."""
    reward, category = tool_call_reward(parse_calls(text, record.call_format), record.gold, record.tools, values)
    return reward, category.value


def sandbox_reward(text: str, record: PromptRecord, sandbox: Any, table: dict[str, float] | None = None) -> tuple[float, str]:
    """Reward from really executing the generated calls: the category of the feedback, via a table.

    The sandbox is reset to the record's initial state (``context.meta["initial_state"]`` if any) and
    the context's earlier steps are replayed, so the call runs in the state the trajectory reached.
    The step's category is the first error among its calls' feedback, the same rule that labels
    training steps for MAE (:func:`~tl_lightning.data.feedback.step_category`).
    """
    parsed = parse_calls(text, record.call_format)
    if not parsed.ok:
        return category_reward(None, table), "unparseable"
    sandbox.reset(record.context.meta.get("initial_state"))
    for step in record.context.steps:
        for call in step.calls:
            sandbox.execute(call)
    feedback = [sandbox.execute(call) for call in parsed.calls]
    category = step_category(feedback)
    return category_reward(category, table), category.value


def score_texts(
    texts: Sequence[str], records: Sequence[PromptRecord], reward_fn: Callable[[str, PromptRecord], tuple[float, str]]
) -> tuple[Tensor, list[str]]:
    """Scores [B] (float32) and outcome names of the responses."""
    if len(texts) != len(records):
        raise ValueError(f"{len(texts)} responses for {len(records)} prompts")
    pairs = [reward_fn(t, r) for t, r in zip(texts, records, strict=True)]
    return torch.tensor([p[0] for p in pairs], dtype=torch.float32), [p[1] for p in pairs]


def compute_advantages(
    rollout: Rollout, scores: Tensor, kl_coef: float, reward_clip: float | None, gamma: float, lam: float, whiten: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token rewards, advantages and returns, each [B, T], from scores [B] (DeepSpeed-Chat's recipe).

    Advantages are whitened over the valid tokens of the batch (when ``whiten`` and there are at
    least two); returns stay in reward units: they are the critic's regression targets.
    """
    mask = rollout.response_mask
    rewards = token_rewards(scores.to(rollout.logprobs), rollout.logprobs, rollout.ref_logprobs, mask, kl_coef, reward_clip)
    advantages, returns = gae(rewards, rollout.values, mask, gamma, lam)
    if whiten and mask.sum() >= 2:
        advantages = masked_whiten(advantages, mask)
    return rewards, advantages, returns
