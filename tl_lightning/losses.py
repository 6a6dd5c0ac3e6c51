"""Pure tensor maths of TL-Training's SFT objective: MAE + PKT weights and the weighted, masked NLL.

Every function here is a pure function of tensors, returns its value plus detached statistics,
and is unit-tested against hand-computed numbers (tests/test_losses.py). The RL losses are in
:mod:`tl_lightning.rl.losses`; the method: docs/method.md, "SFT: MAE and PKT".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

# ============================================================================ SFT: MAE + PKT
# Labels, weights and masks are [B, L] over input positions, unshifted; the causal shift happens once,
# inside weighted_masked_nll, so every caller builds its tensors in the order the tokens were written.

IGNORE_INDEX = -100  # the value of tl_lightning.data.batch.IGNORE_INDEX, restated so pure maths imports no data code


def _step_slots(step_ids: Tensor, segment_ids: Tensor | None, num_segments: int | None) -> tuple[Tensor, int]:
    """One slot per (trajectory, step): ``[B, L]`` slot ids and their fixed count, from shapes alone (no host sync).

    A step has at least one token, so step ids are ``< L`` and ``L + 1`` slots per trajectory hold every
    step plus slot 0 for the unsupervised tokens (step -1). Without ``segment_ids`` each row is one
    trajectory; a packed row holds several, told apart by ``segment_ids`` (-1 on padding, put in slot 0
    of trajectory 0, where only unsupervised tokens land).
    """
    b, length = step_ids.shape
    if segment_ids is None:
        segment_ids, num_segments = torch.arange(b, device=step_ids.device).unsqueeze(1), b
    elif num_segments is None:
        raise ValueError("segment_ids needs num_segments (the number of trajectories in the batch)")
    per = length + 1
    return segment_ids.clamp_min(0) * per + (step_ids + 1).clamp_min(0), num_segments * per


def _slot_counts(slot: Tensor, num_slots: int, values: Tensor) -> Tensor:
    """[num_slots] float32: the sum of ``values`` ([B, L]) per slot. A scatter into a fixed-size tensor, so
    unlike ``bincount`` or a boolean gather its size never depends on the data (no device-to-host sync)."""
    out = torch.zeros(num_slots, dtype=torch.float32, device=slot.device)
    return out.scatter_add_(0, slot.reshape(-1), values.reshape(-1).to(torch.float32))


def pkt_weights(
    labels: Tensor,
    key_mask: Tensor,
    step_ids: Tensor,
    error_mask: Tensor,
    use_mae: bool = True,
    use_pkt: bool = True,
    w_max: float = 9.0,
    segment_ids: Tensor | None = None,
    num_segments: int | None = None,
) -> Tensor:
    """Per-token loss weights of TL-Training SFT (docs/method.md#sft-mae-and-pkt). Unshifted, like ``labels``.

    Args:
        labels: [B, L] long, ``IGNORE_INDEX`` on unsupervised tokens.
        key_mask: [B, L] bool, PKT key tokens.
        step_ids: [B, L] long, assistant step index of each supervised token (-1 elsewhere), ``< L``.
        error_mask: [B, L] bool, supervised tokens of erroneous steps.
        use_mae: zero the weight of erroneous steps.
        use_pkt: weight key tokens by ``clip(|NK_s| / |K_s|, 1, w_max)``, counted per (trajectory, step).
        w_max: the upper clip of the key-token weight (9 in the paper).
        segment_ids: optional [B, L] long, the trajectory (``0 .. num_segments - 1``, -1 on padding) of each
            token of a packed batch, whose rows hold several trajectories; None: one trajectory per row.
        num_segments: the number of trajectories in the batch (a Python int: sizes never come from the device).

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
        slot, num_slots = _step_slots(step_ids, segment_ids, num_segments)
        # Even bins count the non-key supervised tokens of a slot, odd bins its key tokens.
        counts = _slot_counts(slot * 2 + key.long(), 2 * num_slots, supervised).view(num_slots, 2)
        ratio = (counts[:, 0] / counts[:, 1].clamp_min(1)).clamp(1.0, float(w_max))
        weights = torch.where(key, ratio[slot], weights)
    if use_mae:
        weights = weights.masked_fill(error_mask & supervised, 0.0)
    return weights


def dropped_step_fraction(
    labels: Tensor, step_ids: Tensor, weights: Tensor, segment_ids: Tensor | None = None, num_segments: int | None = None
) -> Tensor:
    """Share of supervised (trajectory, step) pairs whose tokens all got weight 0 (dropped by MAE); 0-dim.

    Inputs as in :func:`pkt_weights`; 0 for a batch without supervised tokens. No host sync.
    """
    supervised = labels != IGNORE_INDEX
    slot, num_slots = _step_slots(step_ids, segment_ids, num_segments)
    steps = (_slot_counts(slot, num_slots, supervised) > 0).sum()
    kept = (_slot_counts(slot, num_slots, supervised & (weights > 0)) > 0).sum()
    # (steps - kept) / steps: one rounding of an exact integer ratio.
    return (steps - kept).to(torch.float32) / steps.clamp_min(1).to(torch.float32)


def loss_positions(labels: Tensor, weights: Tensor) -> Tensor:
    """[B, L] bool: the input positions whose *next* token carries loss (position i predicts token i + 1).

    These are the only positions where :func:`weighted_masked_nll` needs logits; a model asked for
    logits there alone (see :func:`tl_lightning.models.logits_only_at`) returns [N, V] with
    ``N = positions.sum()`` rows in row-major order, instead of [B, L, V]. Training batches carry the
    same positions as a flat index computed at collate time (``TrajectoryBatch.loss_index``).
    """
    positions = torch.zeros_like(labels, dtype=torch.bool)
    positions[:, :-1] = (weights[:, 1:] > 0) & (labels[:, 1:] != IGNORE_INDEX)
    return positions


class HiddenAtLossPositions(NamedTuple):
    """The LM head's input at the N loss positions, for a loss that applies the head itself, in chunks.

    - ``hidden``     [N, H]: the final hidden states at the loss positions, row-major.
    - ``head``       ``[n, H] -> [n, V]``: the output embedding (plus any post-head step, e.g. soft-capping).
    - ``chunk_size`` rows per chunk (see :func:`chunked_nll`).
    """

    hidden: Tensor
    head: Callable[[Tensor], Tensor]
    chunk_size: int


def _nll(head: Callable[[Tensor], Tensor], hidden: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(head(hidden).float(), targets, reduction="none")


def chunked_nll(hidden: Tensor, head: Callable[[Tensor], Tensor], targets: Tensor, chunk_size: int) -> Tensor:
    """[N] float32 NLL of ``head(hidden)`` against ``targets`` ([N] long), ``chunk_size`` rows at a time.

    Each chunk runs under activation checkpointing: its [chunk, V] logits, their float32 copy and the
    softmax autograd would keep are freed at once and rebuilt one chunk at a time in the backward pass.
    So no [N, V] tensor exists, at the price of one more head matmul per row. ``N <= chunk_size`` is
    one plain, un-checkpointed chunk.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if hidden.shape[0] <= chunk_size:
        return _nll(head, hidden, targets)
    parts = [
        checkpoint(_nll, head, h, t, use_reentrant=False)
        for h, t in zip(hidden.split(chunk_size), targets.split(chunk_size), strict=True)
    ]
    return torch.cat(parts)


def weighted_masked_nll(
    logits: Tensor | HiddenAtLossPositions,
    labels: Tensor,
    weights: Tensor,
    key_mask: Tensor | None = None,
    normalizer: Tensor | float | None = None,
    positions: Tensor | None = None,
    index: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum(w * nll) / sum(w)`` over the supervised tokens, with the causal shift done here.

    Args:
        logits: [B, L, V] model outputs; or [N, V]: only the rows at the N loss positions
            (``loss_positions(labels, weights)``) in row-major order; or :class:`HiddenAtLossPositions`
            (the head's input there, for a chunked loss). Any float dtype; the NLL is computed in float32.
        labels: [B, L] long, unshifted (position i holds token i), ``IGNORE_INDEX`` where unsupervised.
        weights: [B, L] float, unshifted, from :func:`pkt_weights`. Weights on ``IGNORE_INDEX`` labels are ignored.
        key_mask: optional [B, L] bool, only used for the key / non-key statistics.
        normalizer: the denominator instead of the local ``sum(w)``; data-parallel training passes
            ``global_sum(w) / world_size`` so that averaging gradients over ranks gives the global
            weighted mean exactly.
        positions: ``loss_positions(labels, weights)`` when the caller already has it.
        index: [N] long, the loss positions as flat indices into [B, L] (row * L + column), ascending;
            with it nothing here depends on a device value's size (no host sync). A packed batch must
            pass it: its positions exclude the last token of each trajectory, whose next token is the
            next trajectory's first.

    With [B, L, V] logits only the N loss rows are gathered before the cross-entropy, so the only extra
    logits-sized memory is [N, V] (float32), never another [B, L, V] copy; with [N, V] logits the model
    never builds [B, L, V]; with :class:`HiddenAtLossPositions` no [N, V] tensor is built at all.
    A batch whose weights sum to 0 gives a loss of exactly 0 that is still attached to the graph.

    Returns:
        ``(loss, stats)`` where stats are detached scalars: ``nll`` (unweighted mean NLL of the
        trained tokens), ``key_nll`` / ``nonkey_nll`` (0 when there are none), ``num_tokens``,
        ``num_key_tokens``, ``weight_sum``.
    """
    if labels.dim() != 2 or weights.shape != labels.shape:
        raise ValueError(f"expected labels and weights [B, L], got {tuple(labels.shape)}, {tuple(weights.shape)}")
    if index is None:
        positions = loss_positions(labels, weights) if positions is None else positions
        index = positions.reshape(-1).nonzero().squeeze(1)
    n = index.numel()
    # Position i predicts token i + 1: flat index + 1 is the next token of the same row (the last
    # column is never a loss position).
    targets = labels.reshape(-1).index_select(0, index + 1)
    if isinstance(logits, HiddenAtLossPositions):
        if logits.hidden.shape[0] != n:
            raise ValueError(f"expected hidden states [N, H] with N = {n} loss positions, got {tuple(logits.hidden.shape)}")
        nll = chunked_nll(logits.hidden, logits.head, targets, logits.chunk_size)
    else:
        if logits.dim() == 3 and logits.shape[:2] == labels.shape:
            logits = logits.reshape(-1, logits.shape[-1]).index_select(0, index)
        elif logits.dim() != 2 or logits.shape[0] != n:
            raise ValueError(
                f"expected logits [B, L, V] = [{labels.shape[0]}, {labels.shape[1]}, V] or [N, V] with N = "
                f"{n} loss positions, got {tuple(logits.shape)}"
            )
        nll = F.cross_entropy(logits.float(), targets, reduction="none")
    w_sel = weights.reshape(-1).index_select(0, index + 1).to(nll.dtype)
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
            is_key = key_mask.reshape(-1).index_select(0, index + 1)
        else:
            is_key = torch.zeros_like(targets, dtype=torch.bool)
        n_key = is_key.sum()
        n_nonkey = (~is_key).sum()
        stats = {
            "nll": nll_d.sum() / max(n, 1),
            "key_nll": (nll_d * is_key).sum() / n_key.clamp_min(1),
            "nonkey_nll": (nll_d * ~is_key).sum() / n_nonkey.clamp_min(1),
            "num_tokens": torch.tensor(float(n), device=nll.device),
            "num_key_tokens": n_key.to(nll.dtype),
            "weight_sum": weight_sum.detach(),
        }
    return loss, stats
