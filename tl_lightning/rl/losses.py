"""The policy and value losses of RL, and the masked statistics they are built from: pure tensor maths.

Every tensor is [B, T] over *response* tokens (T: the response width, right-padded) with a 0/1 ``mask`` of
the tokens the policy sampled; padding (and, in multi-turn episodes, observation tokens) never contributes to
a mean, a loss or a return. The log-prob and value at response position t belong to the state just before
token t was generated (DeepSpeed-Chat's convention, the paper's PPO). The formulas: docs/method.md, "PPO"
and "The GRPO family".

Two choices are modes, each dispatched in one place: ``loss_agg`` (:data:`AGGREGATIONS`) and
``ratio_level`` (:data:`RATIOS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from tl_lightning.ranges import choose

__all__ = [
    "AGGREGATIONS",
    "RATIOS",
    "LossAgg",
    "RatioLevel",
    "aggregate",
    "clip_return",
    "k3_kl",
    "kl_penalty",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "policy_loss",
    "value_loss",
]

LossAgg = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]
RatioLevel = Literal["token", "sequence"]


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``values`` over positions where ``mask`` is 1 (over all of them when ``dim`` is None).

    An all-zero mask gives 0 rather than NaN, so an empty minibatch cannot poison a logged mean.
    """
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(values: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of the masked entries (Bessel-corrected by default, as TRL and DeepSpeed-Chat use)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        if n < 2:
            raise ValueError(f"unbiased masked variance needs at least 2 valid entries, got {int(n)}")
        var = var * n / (n - 1)
    return var


def masked_whiten(values: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalise the masked entries to unit variance (and zero mean if ``shift_mean``); padding becomes 0."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """Per-token KL penalty ``-kl_coef * (logp - logp_ref)`` on valid tokens, 0 elsewhere. [B, T].

    The k1 estimator of KL(policy || reference) on the sampled token, the one DeepSpeed-Chat (and so the
    paper) puts in the reward; summed over a response it is an unbiased estimate of the sequence KL.
    """
    return -kl_coef * (logprobs - ref_logprobs) * mask.to(logprobs.dtype)


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Schulman's k3 estimator of KL(policy || reference) per token: ``exp(d) - d - 1``, ``d = ref - logp``.

    Unbiased, always >= 0, and lower-variance than k1; GRPO puts it in the loss instead of the reward.
    """
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1.0


def clip_return(token_scores: Tensor, clip: float | None) -> Tensor:
    """Environment rewards [B, T] whose running sum along each row is held to ``[-clip, clip]``.

    Each reward becomes ``clip(S_t) - clip(S_{t-1})``, ``S_t`` the sum of the row's rewards up to t, so the
    row's total is ``clip(S_T)``: the return of an episode never leaves ±clip, however many turns earn
    rewards. A row with one reward (a single-step rollout, the reward at its last token) gets exactly
    DeepSpeed-Chat's ``clamp(score, -clip, clip)`` there. ``clip=None`` returns the rewards unchanged.
    """
    if clip is None:
        return token_scores
    running = token_scores.cumsum(dim=1).clamp(-clip, clip)
    return torch.diff(running, dim=1, prepend=torch.zeros_like(running[:, :1]))


# ----------------------------------------------------------------------------- aggregation (loss_agg)
def _token_mean(per_token: Tensor, mask: Tensor, norm: float | None) -> Tensor:
    return masked_mean(per_token, mask)


def _seq_mean_token_mean(per_token: Tensor, mask: Tensor, norm: float | None) -> Tensor:
    rows = mask.sum(dim=1)
    return _row_mean((per_token * mask).sum(dim=1) / rows.clamp(min=1.0), rows)


def _seq_mean_token_sum_norm(per_token: Tensor, mask: Tensor, norm: float | None) -> Tensor:
    return _row_mean((per_token * mask).sum(dim=1) / float(norm or per_token.shape[1]), mask.sum(dim=1))


def _row_mean(per_row: Tensor, rows: Tensor) -> Tensor:
    has = (rows > 0).to(per_row.dtype)  # rows without valid tokens do not count
    return (per_row * has).sum() / has.sum().clamp(min=1.0)


#: ``loss_agg`` -> ``f(per_token [B, T], mask [B, T], norm) -> scalar``:
#:
#: - ``token_mean``: ``sum / n_tokens`` over the batch (DAPO; DeepSpeed-Chat's PPO): every token weighs the same;
#: - ``seq_mean_token_mean``: the mean over rows of each row's token mean (GRPO): long responses weigh less per token;
#: - ``seq_mean_token_sum_norm``: the mean over rows of ``sum / norm`` (Dr. GRPO), ``norm`` a constant (the
#:   generation budget; default T), so the loss has no length bias.
AGGREGATIONS: dict[str, Callable[[Tensor, Tensor, float | None], Tensor]] = {
    "token_mean": _token_mean,
    "seq_mean_token_mean": _seq_mean_token_mean,
    "seq_mean_token_sum_norm": _seq_mean_token_sum_norm,
}


def aggregate(per_token: Tensor, mask: Tensor, loss_agg: LossAgg, norm: float | None = None) -> Tensor:
    """Reduce a [B, T] per-token loss over the valid tokens to a scalar (see :data:`AGGREGATIONS`)."""
    return choose(AGGREGATIONS, loss_agg, "loss_agg")(per_token, mask.to(per_token.dtype), norm)


# ----------------------------------------------------------------------------- ratios (ratio_level)
def _token_log_ratio(log_ratio: Tensor, mask: Tensor) -> Tensor:
    return log_ratio


def _sequence_log_ratio(log_ratio: Tensor, mask: Tensor) -> Tensor:
    return masked_mean(log_ratio, mask, dim=1)[:, None].expand_as(log_ratio)


#: ``ratio_level`` -> ``f(log_ratio [B, T], mask) -> [B, T]``: ``token`` (PPO) keeps each token's own ratio;
#: ``sequence`` (GSPO) gives every token of a response ``mean_t (logp_t - old_t)``, the length-normalised
#: sequence likelihood ratio, clipped as a whole.
RATIOS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"token": _token_log_ratio, "sequence": _sequence_log_ratio}


def policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_low: float = 0.2,
    clip_high: float | None = None, loss_agg: LossAgg = "token_mean", ratio_level: RatioLevel = "token",
    ref_logprobs: Tensor | None = None, kl_coef: float = 0.0, norm: float | None = None, is_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate ``max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))``, aggregated by ``loss_agg``.

    All tensors [B, T]. ``r = exp(log_ratio)`` with the log-ratio of ``ratio_level`` (:data:`RATIOS`).
    ``clip_high`` (None: ``clip_low``) above ``clip_low`` is DAPO's clip-higher. With ``ref_logprobs`` and
    ``kl_coef > 0``, ``kl_coef *`` :func:`k3_kl` is added per token before aggregation (KL as a loss, GRPO's
    way). ``is_weights`` [B, T] (truncated importance sampling, :func:`~tl_lightning.rl.engines.tis_weights`)
    scale each token's surrogate, not its KL term. With the defaults this is PPO's
    ``mean(max(-A r, -A clip(r, 1 - c, 1 + c)))`` over the batch's tokens.

    Stats (detached): ``clipfrac`` (share of tokens where the clipped term won), ``approx_kl``
    (``0.5 * mean(log_ratio^2)`` of the ratio used, as TRL logs it), ``ratio`` (mean), and ``kl_k3``.
    """
    log_ratio = choose(RATIOS, ratio_level, "ratio_level")(logprobs - old_logprobs, mask)
    high = clip_low if clip_high is None else clip_high
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + high)
    per_token = torch.maximum(unclipped, clipped)
    if is_weights is not None:
        per_token = per_token * is_weights
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


def value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float | None = 0.2
) -> tuple[Tensor, dict[str, Tensor]]:
    """``0.5 * mean(max((V - R)^2, (V_clip - R)^2))`` over valid tokens, ``V_clip = old + clip(V - old, ±c)``.

    ``clip=None`` gives the plain ``0.5 * mean((V - R)^2)``. Stats (detached): ``vf_clipfrac`` (share of
    tokens where the clipped error was the larger) and ``value_error`` (mean squared error of the unclipped values).
    """
    err = (values - returns) ** 2
    if clip is None:
        loss = 0.5 * masked_mean(err, mask)
        clipfrac = torch.zeros((), dtype=values.dtype, device=values.device)
    else:
        clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
        err_clipped = (clipped_values - returns) ** 2
        loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
        clipfrac = masked_mean((err_clipped > err).to(values.dtype), mask).detach()
    return loss, {"vf_clipfrac": clipfrac, "value_error": masked_mean(err, mask).detach()}
