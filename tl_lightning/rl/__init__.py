"""Reinforcement learning for tool use: one rollout container, pure estimators and losses, rewards, episodes.

- :mod:`~tl_lightning.rl.rollout`: :class:`Rollout` (every tensor's shape documented), the generation seam
  (:data:`Policy`) and the scoring of sampled ids under the policy, the reference and the critic;
- :mod:`~tl_lightning.rl.estimators`: GAE and the GRPO family behind one :func:`compute_advantages`;
- :mod:`~tl_lightning.rl.losses`: the clipped policy and value losses, KL estimators, aggregation, reward clipping;
- :mod:`~tl_lightning.rl.rewards`: reward adapters (IRM against gold calls, sandbox execution, per-turn rewards);
- :mod:`~tl_lightning.rl.episodes`: multi-turn episodes in the sandbox, token-in/token-out;
- :mod:`~tl_lightning.rl.value_model`: the critics;
- :mod:`~tl_lightning.rl.data`: the RL datamodules (prompts, multi-turn tasks).

The LightningModules (:mod:`tl_lightning.modules.ppo`, :mod:`tl_lightning.modules.rl_multiturn`) share one
update path (:mod:`tl_lightning.modules.rl_base`) over these. The method: docs/method.md; the layout:
docs/architecture.md.
"""

from tl_lightning.rl.estimators import (
    ESTIMATORS,
    KL_MODES,
    Advantage,
    Advantages,
    Estimator,
    KLMode,
    compute_advantages,
    gae,
    group_advantages,
    sampled_gae,
)
from tl_lightning.rl.losses import (
    AGGREGATIONS,
    RATIOS,
    LossAgg,
    RatioLevel,
    aggregate,
    clip_return,
    k3_kl,
    kl_penalty,
    masked_mean,
    masked_var,
    masked_whiten,
    policy_loss,
    value_loss,
)
from tl_lightning.rl.rollout import (
    Policy,
    Rollout,
    engine_policy,
    policy_forward,
    score_rollout,
    scores_at_last_token,
)
from tl_lightning.rl.value_model import CRITICS, CriticKind

__all__ = [
    "AGGREGATIONS",
    "CRITICS",
    "ESTIMATORS",
    "KL_MODES",
    "RATIOS",
    "Advantage",
    "Advantages",
    "CriticKind",
    "Estimator",
    "KLMode",
    "LossAgg",
    "Policy",
    "RatioLevel",
    "Rollout",
    "aggregate",
    "clip_return",
    "compute_advantages",
    "gae",
    "group_advantages",
    "engine_policy",
    "k3_kl",
    "kl_penalty",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "policy_forward",
    "policy_loss",
    "sampled_gae",
    "score_rollout",
    "scores_at_last_token",
    "value_loss",
]
