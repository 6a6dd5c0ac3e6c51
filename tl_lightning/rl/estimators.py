"""Advantage estimators: GAE with a critic (PPO) and the critic-free GRPO family, as pure functions.

:func:`compute_advantages` is the one path from a :class:`~tl_lightning.rl.rollout.Rollout` to advantages,
for single-step and multi-turn rollouts alike::

    out = compute_advantages("grpo", rollout, group_size=8, kl_coef=0.0, reward_clip=5.0)
    out.advantages, out.returns, out.stats                    # [B, T], [B, T], {"frac_zero_std_groups": ...}

The environment's rewards (``rollout.scores``) are clipped so that each row's running return stays within
``±reward_clip`` (:func:`~tl_lightning.rl.losses.clip_return`), then every estimator sees the same numbers:

- ``gae``: per-token rewards = the k1 KL penalty on sampled tokens + the clipped rewards; GAE over the sampled
  tokens only (an episode's observations squeezed out), whitened; the returns are the critic's targets;
- ``reinforce_pp``: the same per-token rewards, their discounted return-to-go, whitened over the batch;
- ``grpo`` / ``dr_grpo`` / ``rloo``: one score per sample, the clipped return minus ``kl_coef`` x its summed k1
  KL, against the baseline of the other samples of its prompt; broadcast over the sample's tokens.

The formulas: docs/method.md, "PPO" and "The GRPO family". Each estimator's needs (a critic, groups) and its
published loss aggregation are in :data:`ESTIMATORS`, the one place ``advantage`` is dispatched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from tl_lightning.ranges import choose
from tl_lightning.rl.losses import clip_return, kl_penalty, masked_whiten
from tl_lightning.rl.rollout import Rollout

__all__ = [
    "ESTIMATORS",
    "KL_MODES",
    "Advantage",
    "Advantages",
    "Estimator",
    "KLMode",
    "compute_advantages",
    "gae",
    "group_advantages",
    "sampled_gae",
]

Advantage = Literal["gae", "grpo", "dr_grpo", "rloo", "reinforce_pp"]
KLMode = Literal["reward", "loss"]


class Advantages(NamedTuple):
    """``advantages`` [B, T] (0 off the response mask), ``returns`` [B, T] (the critic's targets; the advantages
    for critic-free estimators) and detached ``stats``."""

    advantages: Tensor
    returns: Tensor
    stats: dict[str, Tensor]


@dataclass(frozen=True)
class _Settings:
    """What :func:`compute_advantages` passes each estimator."""

    estimator: str
    group_size: int
    kl_coef: float
    reward_clip: float | None
    gamma: float
    lam: float
    whiten: bool


@torch.no_grad()
def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over contiguous response tokens. Returns ``(advantages, returns)``, [B, T].

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` with ``V`` past the last valid token taken as 0 (the episode
    ends there), ``A_t = delta_t + gamma * lam * A_{t+1}``, and ``returns = A + V``. Padding positions get
    0 advantage and 0 return.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = (delta + gamma * lam * next_adv) * mask[:, t]
        advantages[:, t] = adv
        # A padded position passes on nothing: the next valid token sees V=0, A=0 beyond the end.
        next_value = values[:, t]
        next_adv = adv
    returns = (advantages + values) * mask
    return advantages, returns


@torch.no_grad()
def sampled_gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """:func:`gae` over the sampled tokens only (``mask`` 1), wherever they are in the row. [B, T] each.

    The sampled tokens of each row are gathered in order (an episode's observation tokens squeezed out),
    :func:`gae` runs over them, and the results go back to their columns: the last token of turn k
    bootstraps from the value of the first token of turn k+1 instead of treating the observation between
    them as the episode's end. A single response's mask is contiguous, so this is :func:`gae` exactly.
    """
    order = torch.argsort((mask == 0).to(torch.int8), dim=1, stable=True)  # sampled columns first, in order
    adv, ret = gae(rewards.gather(1, order), values.gather(1, order), mask.gather(1, order), gamma, lam)
    return torch.zeros_like(adv).scatter(1, order, adv), torch.zeros_like(ret).scatter(1, order, ret)


def group_advantages(scores: Tensor, group_size: int, estimator: str, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Sequence advantages [B] from scores [B] laid out as B/G groups of G consecutive samples of one prompt.

    - ``grpo``: ``(r - mean_G r) / (std_G r + eps)`` (std with Bessel's correction, as TRL);
    - ``dr_grpo``: ``r - mean_G r`` (no std division: it up-weights near-unanimous groups);
    - ``rloo``: ``r - mean_{j != i} r_j``, the leave-one-out baseline (= ``G/(G-1) * (r - mean_G r)``).

    A group whose G rewards are all equal carries no signal: every estimator gives it advantage exactly 0.
    Returns ``(advantages, zero_std)`` with ``zero_std`` [B/G] bool marking those groups.
    """
    baseline = choose(_GROUP_BASELINES, estimator, "group_advantages: estimator")
    if group_size < 2 or scores.numel() % group_size:
        raise ValueError(f"group_size={group_size} must be >= 2 and divide the {scores.numel()} samples")
    r = scores.float().view(-1, group_size)
    zero_std = (r == r[:, :1]).all(dim=1)
    adv = baseline(r, r.mean(dim=1, keepdim=True), eps)
    # exact zeros for unanimous groups, whatever rounding the mean had
    return adv.masked_fill(zero_std[:, None], 0.0).reshape(-1), zero_std


_GROUP_BASELINES: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "grpo": lambda r, mean, eps: (r - mean) / (r.std(dim=1, keepdim=True) + eps),
    "dr_grpo": lambda r, mean, eps: r - mean,
    "rloo": lambda r, mean, eps: r - (r.sum(dim=1, keepdim=True) - r) / (r.shape[1] - 1),
}


def _token_rewards(rollout: Rollout, kl_coef: float, reward_clip: float | None) -> Tensor:
    return kl_penalty(rollout.logprobs, rollout.ref_logprobs, rollout.response_mask, kl_coef) + clip_return(
        rollout.scores.to(rollout.logprobs), reward_clip
    )


def _whiten(x: Tensor, mask: Tensor, whiten: bool) -> Tensor:
    return masked_whiten(x, mask) if whiten and mask.sum() >= 2 else x


def _gae(rollout: Rollout, s: _Settings) -> Advantages:
    mask = rollout.response_mask
    adv, returns = sampled_gae(_token_rewards(rollout, s.kl_coef, s.reward_clip), rollout.values, mask, s.gamma, s.lam)
    return Advantages(_whiten(adv, mask, s.whiten), returns, {})


@torch.no_grad()
def _reinforce_pp(rollout: Rollout, s: _Settings) -> Advantages:
    # REINFORCE++ (OpenRLHF): the batch-wide whitening of the return-to-go is its baseline, no critic, no groups.
    mask = rollout.response_mask
    rewards = _token_rewards(rollout, s.kl_coef, s.reward_clip)
    returns, _ = sampled_gae(rewards, torch.zeros_like(rewards), mask, s.gamma, lam=1.0)  # V = 0, lam = 1: return-to-go
    adv = masked_whiten(returns, mask) if mask.sum() >= 2 else returns
    return Advantages(adv, adv, {})


def _group(rollout: Rollout, s: _Settings) -> Advantages:
    mask = rollout.response_mask
    seq_kl = ((rollout.logprobs - rollout.ref_logprobs) * mask).sum(dim=1)
    score = clip_return(rollout.scores.to(seq_kl), s.reward_clip).sum(dim=1)
    adv, zero_std = group_advantages(score - s.kl_coef * seq_kl, s.group_size, s.estimator)
    adv = adv.to(mask)[:, None] * mask
    return Advantages(adv, adv, {"frac_zero_std_groups": zero_std.float().mean()})


@dataclass(frozen=True)
class Estimator:
    """What an ``advantage`` choice is: its function, whether it needs a critic or groups of G samples per
    prompt, and its published loss aggregation (GRPO averages per sequence, Dr. GRPO divides by a constant,
    PPO (DeepSpeed-Chat) and the rest average over every token of the batch)."""

    fn: Callable[[Rollout, _Settings], Advantages] = field(repr=False)
    critic: bool = False
    groups: bool = False
    loss_agg: str = "token_mean"


#: ``advantage`` -> :class:`Estimator`: the one dispatch of the estimator.
ESTIMATORS: dict[str, Estimator] = {
    "gae": Estimator(_gae, critic=True),
    "grpo": Estimator(_group, groups=True, loss_agg="seq_mean_token_mean"),
    "dr_grpo": Estimator(_group, groups=True, loss_agg="seq_mean_token_sum_norm"),
    "rloo": Estimator(_group, groups=True),
    "reinforce_pp": Estimator(_reinforce_pp),
}

#: ``kl_mode`` -> ``kl_coef -> (coefficient in the reward, coefficient in the loss)``: ``reward`` is the paper's
#: k1 penalty in the per-token reward; ``loss`` is GRPO's ``kl_coef * k3`` term in the policy loss.
KL_MODES: dict[str, Callable[[float], tuple[float, float]]] = {
    "reward": lambda c: (c, 0.0),
    "loss": lambda c: (0.0, c),
}


def compute_advantages(
    estimator: Advantage, rollout: Rollout, *, group_size: int = 1, kl_coef: float = 0.0, reward_clip: float | None = 5.0,
    gamma: float = 1.0, lam: float = 0.95, whiten: bool = True,
) -> Advantages:
    """Advantages of ``rollout`` by ``estimator`` (see the module docstring). ``kl_coef`` is the k1 coefficient
    *in the reward* (0 when the KL is a loss term); ``whiten`` applies to ``gae`` (the others always whiten or
    never do, as published); ``group_size`` to the group estimators, whose rows come in runs of G per prompt."""
    spec = choose(ESTIMATORS, estimator, "advantage")
    return spec.fn(rollout, _Settings(estimator, group_size, kl_coef, reward_clip, gamma, lam, whiten))

