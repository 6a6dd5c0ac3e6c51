"""Pure tensor maths of TL-Training: the SFT objective (MAE + PKT) and PPO.

Every function here is a pure function of tensors, returns its value plus detached statistics,
and is unit-tested against hand-computed numbers (tests/test_losses*.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ============================================================================ SFT: MAE + PKT
# Labels, weights and masks are [B, L] over input positions, unshifted; the causal shift happens once,
# inside weighted_masked_nll, so every caller builds its tensors in the order the tokens were written.

IGNORE_INDEX = -100  # the value of tl_lightning.data.batch.IGNORE_INDEX, restated so pure maths imports no data code


def pkt_weights(
    labels: Tensor,
    key_mask: Tensor,
    step_ids: Tensor,
    error_mask: Tensor,
    use_mae: bool = True,
    use_pkt: bool = True,
    w_max: float = 9.0,
) -> Tensor:
    """Per-token loss weights of TL-Training SFT (DESIGN.md §1, MAE + PKT). Unshifted, like ``labels``.

    Args:
        labels: [B, L] long, ``IGNORE_INDEX`` on unsupervised tokens.
        key_mask: [B, L] bool, PKT key tokens.
        step_ids: [B, L] long, assistant step index of each supervised token (-1 elsewhere).
        error_mask: [B, L] bool, supervised tokens of erroneous steps.
        use_mae: zero the weight of erroneous steps.
        use_pkt: weight key tokens by ``clip(|NK_s| / |K_s|, 1, w_max)``, counted per (sequence, step).
        w_max: the upper clip of the key-token weight (9 in the paper).

    Returns:
        [B, L] float32 weights: 0 on unsupervised tokens (and MAE-dropped steps), the clipped ratio on
        key tokens, 1 on every other supervised token. A step without key tokens keeps weight 1.
    """
    if w_max < 1:
        raise ValueError(f"w_max must be >= 1 (key tokens are never down-weighted), got {w_max}")
    supervised = labels != IGNORE_INDEX
    weights = supervised.to(torch.float32)
    if use_pkt:
        key = key_mask & supervised
        b, _ = labels.shape
        # One slot per (sequence, step): slot 0 of each row takes step -1, so every id is >= 0.
        num_slots = int(step_ids.max().item()) + 2 if step_ids.numel() else 2
        slot = torch.arange(b, device=labels.device).unsqueeze(1) * num_slots + (step_ids + 1).clamp_min(0)
        # Counting key and non-key supervised tokens in one bincount: even bins non-key, odd bins key.
        bins = (slot * 2 + key.long())[supervised]
        counts = torch.bincount(bins, minlength=2 * b * num_slots).view(b * num_slots, 2).to(torch.float32)
        ratio = (counts[:, 0] / counts[:, 1].clamp_min(1)).clamp(1.0, float(w_max))
        weights = torch.where(key, ratio[slot], weights)
    if use_mae:
        weights = weights.masked_fill(error_mask & supervised, 0.0)
    return weights


def loss_positions(labels: Tensor, weights: Tensor) -> Tensor:
    """[B, L] bool: the input positions whose *next* token carries loss (position i predicts token i + 1).

    These are the only positions where :func:`weighted_masked_nll` needs logits; a model asked for
    logits there alone (see :func:`tl_lightning.models.logits_only_at`) returns [N, V] with
    ``N = positions.sum()`` rows in row-major order, instead of [B, L, V].
    """
    positions = torch.zeros_like(labels, dtype=torch.bool)
    positions[:, :-1] = (weights[:, 1:] > 0) & (labels[:, 1:] != IGNORE_INDEX)
    return positions


def weighted_masked_nll(
    logits: Tensor,
    labels: Tensor,
    weights: Tensor,
    key_mask: Tensor | None = None,
    normalizer: Tensor | float | None = None,
    positions: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum(w * nll) / sum(w)`` over the supervised tokens, with the causal shift done here.

    Args:
        logits: [B, L, V] model outputs, or [N, V]: only the rows at ``loss_positions(labels, weights)``
            in row-major order (any float dtype; the NLL is computed in float32).
        labels: [B, L] long, unshifted (position i holds token i), ``IGNORE_INDEX`` where unsupervised.
        weights: [B, L] float, unshifted, from :func:`pkt_weights`. Weights on ``IGNORE_INDEX`` labels are ignored.
        key_mask: optional [B, L] bool, only used for the key / non-key statistics.
        normalizer: the denominator instead of the local ``sum(w)``; data-parallel training passes
            ``global_sum(w) / world_size`` so that averaging gradients over ranks gives the global
            weighted mean exactly.
        positions: ``loss_positions(labels, weights)`` when the caller already has it.

    With [B, L, V] logits only the rows with a positive weight are gathered before the cross-entropy,
    so the only extra logits-sized memory is [N, V] (float32), never another [B, L, V] copy; with
    [N, V] logits the model never builds [B, L, V] at all.
    A batch whose weights sum to 0 gives a loss of exactly 0 that is still attached to the graph.

    Returns:
        ``(loss, stats)`` where stats are detached scalars: ``nll`` (unweighted mean NLL of the
        trained tokens), ``key_nll`` / ``nonkey_nll`` (0 when there are none), ``num_tokens``,
        ``num_key_tokens``, ``weight_sum``.
    """
    if labels.dim() != 2 or weights.shape != labels.shape:
        raise ValueError(f"expected labels and weights [B, L], got {tuple(labels.shape)}, {tuple(weights.shape)}")
    if positions is None:
        positions = loss_positions(labels, weights)
    if logits.dim() == 3 and logits.shape[:2] == labels.shape:
        logits = logits[positions]
    elif logits.dim() != 2 or logits.shape[0] != int(positions.sum()):
        raise ValueError(
            f"expected logits [B, L, V] = [{labels.shape[0]}, {labels.shape[1]}, V] or [N, V] with N = "
            f"{int(positions.sum())} loss positions, got {tuple(logits.shape)}"
        )
    # Shifting the targets left by one puts token i + 1 at position i (the last column is never a position).
    targets = labels.roll(-1, dims=1)[positions]
    nll = F.cross_entropy(logits.float(), targets, reduction="none")
    w_sel = weights.roll(-1, dims=1)[positions].to(nll.dtype)
    weighted_sum = (w_sel * nll).sum()
    weight_sum = w_sel.sum()
    if normalizer is None:
        normalizer = weight_sum.detach()
    normalizer = torch.as_tensor(normalizer, dtype=nll.dtype, device=nll.device)
    # A zero denominator only happens when the numerator is an empty sum: 0 / 1 keeps the graph and no NaN.
    loss = weighted_sum / torch.where(normalizer > 0, normalizer, torch.ones_like(normalizer))

    with torch.no_grad():
        nll_d = nll.detach()
        if key_mask is not None:
            is_key = key_mask.roll(-1, dims=1)[positions]
        else:
            is_key = torch.zeros_like(targets, dtype=torch.bool)
        n_key = is_key.sum()
        n_nonkey = (~is_key).sum()
        stats = {
            "nll": nll_d.sum() / max(nll_d.numel(), 1),
            "key_nll": (nll_d * is_key).sum() / n_key.clamp_min(1),
            "nonkey_nll": (nll_d * ~is_key).sum() / n_nonkey.clamp_min(1),
            "num_tokens": torch.tensor(float(nll_d.numel()), device=nll.device),
            "num_key_tokens": n_key.to(nll.dtype),
            "weight_sum": weight_sum.detach(),
        }
    return loss, stats


# ============================================================================ PPO
# All PPO functions take [B, T] tensors over *response* tokens (T = generated length, right-padded)
# and a 0/1 ``mask`` of valid response tokens; padding never contributes to a mean or a return.
# Conventions follow DeepSpeed-Chat, the official TL-Training PPO: the value and log-prob at
# response position t belong to the state just before token t is generated.


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
    """Normalise the masked entries to unit variance (and zero mean if ``shift_mean``); padding becomes 0.

    ``shift_mean=False`` keeps the mean, which is how returns are sometimes scaled; advantages
    are always shifted.
    """
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, kl_coef: float) -> Tensor:
    """Per-token KL penalty ``-kl_coef * (logp - logp_ref)`` on valid tokens, 0 on padding. [B, T].

    This is the k1 estimator of KL(policy || reference) on the sampled token, the one
    DeepSpeed-Chat (and so the paper) uses; summed over a response it is an unbiased estimate
    of the sequence KL.
    """
    return -kl_coef * (logprobs - ref_logprobs) * mask.to(logprobs.dtype)


def last_token_index(mask: Tensor) -> Tensor:
    """Index of the last valid token of each row of a [B, T] mask (0 for an empty row). [B]."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (positions * mask.long()).amax(dim=1)


def token_rewards(
    scores: Tensor, logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, kl_coef: float, clip: float | None = 5.0
) -> Tensor:
    """Per-token rewards [B, T]: the KL penalty everywhere, plus the clipped score [B] at the last token.

    This is DeepSpeed-Chat's ``compute_rewards``: the sequence-level reward (here IRM's) is
    clipped to ``±clip`` and added at the last generated token (the stop token when there is one).
    """
    rewards = kl_penalty(logprobs, ref_logprobs, mask, kl_coef)
    if clip is not None:
        scores = scores.clamp(-clip, clip)
    last = last_token_index(mask)
    has_tokens = mask.sum(dim=1) > 0
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype) * has_tokens.to(rewards.dtype)
    return rewards


@torch.no_grad()
def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over response tokens. Returns ``(advantages, returns)``, [B, T].

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` with ``V`` past the last valid token taken as 0
    (the episode ends there), ``A_t = delta_t + gamma * lam * A_{t+1}``, and ``returns = A + V``.
    Padding positions get 0 advantage and 0 return.
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


def ppo_policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip: float = 0.2
) -> tuple[Tensor, dict[str, Tensor]]:
    """The clipped PPO surrogate ``mean(max(-A * r, -A * clip(r, 1-c, 1+c)))`` over valid tokens.

    ``r = exp(logp - old_logp)``. The mean is over every valid token of the batch (DeepSpeed-Chat's
    normalisation). Stats (detached): ``clipfrac`` (share of tokens where the clipped term won),
    ``approx_kl`` (``0.5 * mean((logp - old_logp)^2)``, as TRL logs it) and ``ratio`` (mean).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((clipped > unclipped).to(logprobs.dtype), mask),
            "approx_kl": 0.5 * masked_mean(log_ratio**2, mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def ppo_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float | None = 0.2
) -> tuple[Tensor, dict[str, Tensor]]:
    """``0.5 * mean(max((V - R)^2, (V_clip - R)^2))`` over valid tokens, ``V_clip = old + clip(V - old, ±c)``.

    ``clip=None`` gives the plain ``0.5 * mean((V - R)^2)``. Stats (detached): ``vf_clipfrac``
    (share of tokens where the clipped error was the larger) and ``value_error`` (mean squared error
    of the unclipped values).
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

