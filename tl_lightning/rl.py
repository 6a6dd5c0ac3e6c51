"""Pure helpers of RL: the rollout container, reward adapters, advantage estimators and the policy loss.

:class:`~tl_lightning.modules.ppo.TLPPOModule` calls them in order, each step testable alone::

    rollout = module.rollout(records)                                   # Rollout, all detached
    scores, outcomes = score_texts(rollout.texts, records, reward_fn)   # [B], B outcome names
    rewards, advantages, returns = compute_advantages(rollout, scores, kl_coef=0.4, reward_clip=5.0,
                                                      gamma=1.0, lam=0.95)          # PPO (advantage: gae)
    advantages, stats = critic_free_advantages("grpo", rollout, scores, group_size=8)  # no critic
    loss, stats = policy_loss(logp, rollout.logprobs, advantages, mask, 0.2, 0.28, "token_mean", "token")

The PPO tensor maths (KL penalty, GAE, whitening, PPO's clipped losses) is in :mod:`tl_lightning.losses`;
the GRPO family (group baselines, loss aggregation, sequence ratios, k3 KL) is here (DESIGN.md §6).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from tl_lightning.data.feedback import step_category
from tl_lightning.data.prompts import PromptRecord
from tl_lightning.data.schema import FeedbackCategory
from tl_lightning.losses import gae, masked_mean, masked_whiten, token_rewards
from tl_lightning.rewards import IRMValues, RewardCategory, category_reward, tool_call_reward
from tl_lightning.tools.calls import parse_calls

__all__ = [
    "CRITIC_FREE",
    "ESTIMATORS",
    "GROUP_ESTIMATORS",
    "LOSS_AGGS",
    "REWARD_CATEGORIES",
    "Rollout",
    "aggregate",
    "check_groups",
    "check_ppo_ranges",
    "check_rl_settings",
    "compute_advantages",
    "critic_free_advantages",
    "default_loss_agg",
    "episode_gae",
    "gold_reward",
    "group_advantages",
    "k3_kl",
    "policy_loss",
    "reinforce_pp_advantages",
    "sandbox_reward",
    "score_texts",
]

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


# ----------------------------------------------------------------------------- GRPO family (DESIGN.md §6)
#: ``advantage:`` choices. Only ``gae`` needs a critic; the others estimate the baseline from rewards alone.
ESTIMATORS = ("gae", "grpo", "dr_grpo", "rloo", "reinforce_pp")
CRITIC_FREE = frozenset({"grpo", "dr_grpo", "rloo", "reinforce_pp"})
#: Estimators whose baseline is the other samples of the same prompt: they need ``group_size >= 2``.
GROUP_ESTIMATORS = frozenset({"grpo", "dr_grpo", "rloo"})
LOSS_AGGS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


def default_loss_agg(estimator: str) -> str:
    """Each estimator's published aggregation: GRPO averages per sequence, Dr. GRPO divides by a constant
    (no length bias), PPO (DeepSpeed-Chat) and the rest average over every token of the batch."""
    return {"grpo": "seq_mean_token_mean", "dr_grpo": "seq_mean_token_sum_norm"}.get(estimator, "token_mean")


def group_advantages(scores: Tensor, group_size: int, estimator: str, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Sequence advantages [B] from scores [B] laid out as B/G groups of G consecutive samples of one prompt.

    - ``grpo``: ``(r - mean_G r) / (std_G r + eps)`` (std with Bessel's correction, as TRL);
    - ``dr_grpo``: ``r - mean_G r`` (no std division: it up-weights near-unanimous groups);
    - ``rloo``: ``r - mean_{j != i} r_j``, the leave-one-out baseline (= ``G/(G-1) * (r - mean_G r)``).

    A group whose G rewards are all equal carries no signal: every estimator gives it advantage
    exactly 0 (so it adds nothing to the policy gradient). Returns ``(advantages, zero_std)`` with
    ``zero_std`` [B/G] bool marking those groups (logged as ``train/frac_zero_std_groups``).
    """
    if estimator not in GROUP_ESTIMATORS:
        raise ValueError(f"group_advantages: estimator must be one of {sorted(GROUP_ESTIMATORS)}, got {estimator!r}")
    if group_size < 2 or scores.numel() % group_size:
        raise ValueError(f"group_size={group_size} must be >= 2 and divide the {scores.numel()} samples")
    r = scores.float().view(-1, group_size)
    mean = r.mean(dim=1, keepdim=True)
    zero_std = (r == r[:, :1]).all(dim=1)
    if estimator == "grpo":
        adv = (r - mean) / (r.std(dim=1, keepdim=True) + eps)
    elif estimator == "dr_grpo":
        adv = r - mean
    else:
        adv = r - (r.sum(dim=1, keepdim=True) - r) / (group_size - 1)
    # exact zeros for unanimous groups, whatever rounding the mean had
    adv = adv.masked_fill(zero_std[:, None], 0.0)
    return adv.reshape(-1), zero_std


@torch.no_grad()
def reinforce_pp_advantages(
    scores: Tensor, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, kl_coef: float, gamma: float = 1.0
) -> Tensor:
    """REINFORCE++ (OpenRLHF): per-token rewards ``-kl_coef * (logp - logp_ref)`` plus the score at the last
    token, their discounted return-to-go, whitened over the batch's valid tokens. [B, T].

    The batch-wide whitening is its baseline: no critic and no groups are needed.
    """
    rewards = token_rewards(scores.to(logprobs), logprobs, ref_logprobs, mask, kl_coef, clip=None)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running * mask[:, t]
        returns[:, t] = running
    returns = returns * mask
    return masked_whiten(returns, mask) if mask.sum() >= 2 else returns


def critic_free_advantages(
    estimator: str, rollout: Rollout, scores: Tensor, group_size: int = 1, kl_coef: float = 0.0,
    kl_in_reward: bool = True, gamma: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Token advantages [B, T] (0 on padding) without a critic, and stats (``frac_zero_std_groups``).

    With ``kl_in_reward`` the k1 KL penalty is part of the reward: per token for ``reinforce_pp``, summed
    over the response (``score - kl_coef * sum_t (logp - logp_ref)``) for the group estimators, which
    only see one number per sample. Otherwise the KL is a loss term (:func:`policy_loss`'s ``kl_coef``).
    """
    mask = rollout.response_mask
    kl = kl_coef if kl_in_reward else 0.0
    if estimator == "reinforce_pp":
        return reinforce_pp_advantages(scores, rollout.logprobs, rollout.ref_logprobs, mask, kl, gamma), {}
    seq_kl = ((rollout.logprobs - rollout.ref_logprobs) * mask).sum(dim=1)
    adv, zero_std = group_advantages(scores.to(seq_kl) - kl * seq_kl, group_size, estimator)
    return adv.to(mask)[:, None] * mask, {"frac_zero_std_groups": zero_std.float().mean()}


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(policy || reference) per token: ``exp(d) - d - 1``, ``d = ref - logp``.

    Unbiased, always >= 0, and lower-variance than k1; GRPO puts it in the loss instead of the reward.
    """
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1.0


def aggregate(per_token: Tensor, mask: Tensor, loss_agg: str, norm: float | None = None) -> Tensor:
    """Reduce a [B, T] per-token loss over the valid tokens to a scalar.

    - ``token_mean``: ``sum / n_tokens`` over the batch (DAPO; DeepSpeed-Chat's PPO): every token weighs the same;
    - ``seq_mean_token_mean``: the mean over rows of each row's token mean (GRPO): long responses
      weigh less per token;
    - ``seq_mean_token_sum_norm``: the mean over rows of ``sum / norm`` (Dr. GRPO), ``norm`` a constant
      (the generation budget; default T), so the loss has no length bias.

    Rows without valid tokens do not count in the row means.
    """
    mask = mask.to(per_token.dtype)
    if loss_agg == "token_mean":
        return masked_mean(per_token, mask)
    rows = mask.sum(dim=1)
    has = (rows > 0).to(per_token.dtype)
    if loss_agg == "seq_mean_token_mean":
        per_row = (per_token * mask).sum(dim=1) / rows.clamp(min=1.0)
    elif loss_agg == "seq_mean_token_sum_norm":
        per_row = (per_token * mask).sum(dim=1) / float(norm or per_token.shape[1])
    else:
        raise ValueError(f"loss_agg must be one of {LOSS_AGGS}, got {loss_agg!r}")
    return (per_row * has).sum() / has.sum().clamp(min=1.0)


def policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_low: float = 0.2,
    clip_high: float | None = None, loss_agg: str = "token_mean", ratio_level: str = "token",
    ref_logprobs: Tensor | None = None, kl_coef: float = 0.0, norm: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate ``max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))``, aggregated by ``loss_agg``.

    All tensors [B, T]. ``ratio_level="token"``: ``r_t = exp(logp_t - old_t)`` (PPO). ``"sequence"``
    (GSPO): one ratio per response, ``exp(mean_t (logp_t - old_t))``, the length-normalised sequence
    likelihood ratio, shared by its tokens and clipped as a whole. ``clip_high`` (None: ``clip_low``)
    above ``clip_low`` is DAPO's clip-higher. With ``ref_logprobs`` and ``kl_coef > 0``, ``kl_coef *``
    :func:`k3_kl` is added per token before aggregation (KL as a loss, GRPO's way).

    With the defaults this is exactly :func:`tl_lightning.losses.ppo_policy_loss`. Stats (detached):
    ``clipfrac``, ``approx_kl`` (``0.5 * mean(log_ratio^2)`` of the ratio used), ``ratio``, and ``kl_k3``.
    """
    log_ratio = logprobs - old_logprobs
    if ratio_level == "sequence":
        log_ratio = masked_mean(log_ratio, mask, dim=1)[:, None].expand_as(logprobs)
    elif ratio_level != "token":
        raise ValueError(f"ratio_level must be 'token' or 'sequence', got {ratio_level!r}")
    high = clip_low if clip_high is None else clip_high
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + high)
    per_token = torch.maximum(unclipped, clipped)
    stats = {}
    if ref_logprobs is not None and kl_coef > 0:
        kl = k3_kl(logprobs, ref_logprobs)
        per_token = per_token + kl_coef * kl
        stats["kl_k3"] = masked_mean(kl.detach(), mask)
    loss = aggregate(per_token, mask, loss_agg, norm)
    with torch.no_grad():
        stats.update(
            clipfrac=masked_mean((clipped > unclipped).to(logprobs.dtype), mask),
            approx_kl=0.5 * masked_mean(log_ratio**2, mask),
            ratio=masked_mean(ratio, mask),
        )
    return loss, stats


def check_rl_settings(
    advantage: str, group_size: int, loss_agg: str | None, ratio_level: str, kl_mode: str, do_sample: bool,
    clip_high: float | None,
) -> None:
    """One clear ``ValueError`` for RL settings that cannot work, raised before any model is loaded."""
    if advantage not in ESTIMATORS:
        raise ValueError(f"advantage must be one of {list(ESTIMATORS)}, got {advantage!r}")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if advantage in GROUP_ESTIMATORS and group_size < 2:
        raise ValueError(f"advantage={advantage!r} compares the samples of one prompt: group_size must be >= 2, got {group_size}")
    if advantage in GROUP_ESTIMATORS and not do_sample:
        raise ValueError(f"advantage={advantage!r} needs do_sample: true (G greedy samples of one prompt are identical)")
    if loss_agg is not None and loss_agg not in LOSS_AGGS:
        raise ValueError(f"loss_agg must be one of {list(LOSS_AGGS)} or null, got {loss_agg!r}")
    if ratio_level not in ("token", "sequence"):
        raise ValueError(f"ratio_level must be 'token' or 'sequence', got {ratio_level!r}")
    if kl_mode not in ("reward", "loss"):
        raise ValueError(f"kl_mode must be 'reward' (k1 penalty in the reward) or 'loss' (k3 loss term), got {kl_mode!r}")
    if clip_high is not None and clip_high <= 0:
        raise ValueError(f"clip_high must be > 0 or null, got {clip_high}")


def check_groups(ids: Sequence[str], group_size: int) -> None:
    """A batch for a group estimator must be runs of ``group_size`` samples of one prompt (same ``id``)."""
    n = len(ids)
    runs_ok = n % group_size == 0 and all(len(set(ids[i : i + group_size])) == 1 for i in range(0, n, group_size))
    if not runs_ok:
        raise ValueError(
            f"group_size={group_size}, but the batch of {n} samples is not {group_size} copies of each prompt in a row: "
            f"set data.init_args.group_size to {group_size} too (and batch_size to a multiple of it)"
        )


@torch.no_grad()
def episode_gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """GAE across a multi-turn episode over its generated tokens only. Returns ``(advantages, returns)``, [B, T].

    ``mask`` is 1 on tokens the policy sampled and 0 on observation/template tokens and padding. The
    generated tokens of each row are gathered in order (observations squeezed out), :func:`gae` runs over
    them, and the results go back to their columns: the last token of turn k bootstraps from the value of
    the first token of turn k+1, instead of treating the observation between them as the episode's end.
    """
    order = torch.argsort((mask == 0).to(torch.int8), dim=1, stable=True)  # generated columns first, in order
    adv, ret = gae(rewards.gather(1, order), values.gather(1, order), mask.gather(1, order), gamma, lam)
    return torch.zeros_like(adv).scatter(1, order, adv), torch.zeros_like(ret).scatter(1, order, ret)

#: ``(setting, valid, rule)`` for the PPO-family module's numbers and choices: checked at construction,
#: before any model is loaded, so a typo costs one line instead of a model load and a traceback.
_PPO_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("critic", lambda v: v in ("separate", "shared"), "'separate' or 'shared'"),
    ("reward_source", lambda v: v in ("gold", "sandbox"), "'gold' or 'sandbox'"),
    ("sandbox_instability_rate", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("reward_clip", lambda v: v is None or v > 0, "> 0 or None"),
    ("kl_coef", lambda v: v >= 0, ">= 0"),
    ("gamma", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("lam", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("clip_policy", lambda v: 0 < v < 1, "in (0, 1)"),
    ("clip_value", lambda v: v is None or v > 0, "> 0 or None"),
    ("ppo_epochs", lambda v: v >= 1, ">= 1"),
    ("num_minibatches", lambda v: v >= 1, ">= 1"),
    ("vf_coef", lambda v: v >= 0, ">= 0"),
    ("actor_lr", lambda v: v > 0, "> 0"),
    ("critic_lr", lambda v: v > 0, "> 0"),
    ("weight_decay", lambda v: v >= 0, ">= 0"),
    ("betas", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    ("max_grad_norm", lambda v: v is None or v > 0, "> 0 or None"),
    ("max_new_tokens", lambda v: v >= 1, ">= 1"),
    ("temperature", lambda v: v > 0, "> 0"),
    ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("top_k", lambda v: v >= 0, ">= 0"),
)


def check_ppo_ranges(settings: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first of ``settings`` (the module's arguments) out of its range."""
    for name, valid, rule in _PPO_RANGES:
        if not valid(settings[name]):
            raise ValueError(f"TLPPOModule: {name} must be {rule}, got {settings[name]!r}")
