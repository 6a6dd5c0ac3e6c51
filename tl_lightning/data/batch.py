"""Typed containers for encoded trajectories and batches, and the padded collate.

Lightning moves dataclasses of tensors to the device field by field, so these go through
``transfer_batch_to_device`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["EncodedTrajectory", "TrajectoryBatch", "collate_encoded", "target_indices", "tokens_in", "trajectories_in", "IGNORE_INDEX"]

#: Label value of tokens that get no loss (the Hugging Face convention; models shift labels themselves).
IGNORE_INDEX = -100


@dataclass
class EncodedTrajectory:
    """One trajectory as one token sequence. Every tensor field is 1-D of length L (= number of tokens).

    - ``input_ids``  [L] long: token ids of the full rendered trajectory.
    - ``labels``     [L] long: the token id on supervised assistant tokens, ``IGNORE_INDEX`` elsewhere.
      NOT shifted: position i holds the id of token i; the loss shifts.
    - ``error_mask`` [L] bool: supervised tokens of steps whose feedback is an error (what MAE drops).
    - ``key_mask``   [L] bool: PKT key tokens (first token of a called tool name, and first
      differing token against every prefix-sharing tool name).
    - ``step_ids``   [L] long: assistant step index on supervised tokens (the final answer is
      ``num_steps``), -1 elsewhere.
    """

    input_ids: Tensor
    labels: Tensor
    error_mask: Tensor
    key_mask: Tensor
    step_ids: Tensor
    id: str = ""
    num_steps: int = 0
    truncated: bool = False

    def __len__(self) -> int:
        return int(self.input_ids.numel())


@dataclass
class TrajectoryBatch:
    """A batch of encoded trajectories: right-padded rows of one trajectory each, or packed rows of several
    (:func:`tl_lightning.data.packing.collate_packed`). Every [B, L] tensor has L the longest row.

    - ``input_ids``      [B, L] long, padded with the tokenizer's pad id.
    - ``attention_mask`` [B, L] long, 1 on real tokens, 0 on padding.
    - ``labels``         [B, L] long, ``IGNORE_INDEX`` on unsupervised tokens and padding.
    - ``error_mask``     [B, L] bool, False on padding.
    - ``key_mask``       [B, L] bool, False on padding.
    - ``step_ids``       [B, L] long, -1 on unsupervised tokens and padding.
    - ``segment_ids``    [B, L] long, the trajectory of each token (``0 .. num_segments - 1``), -1 on padding.
    - ``target_index``   [N] long, ascending flat indices (row * L + column) of the positions whose next
      token is supervised and in the same trajectory: where the loss reads logits (position i predicts i + 1).
    - ``clean_target_index`` [M] long, the subset whose next token is not in an erroneous step (MAE's positions).
    - ``num_segments``   number of trajectories; ``num_tokens``: number of real (non-pad) tokens. Plain ints,
      computed at collate time, so a training step reads sizes without a device-to-host sync.
    - ``position_ids``   [B, L] long on packed batches (restarting at 0 at every trajectory, and for the
      padding tail), None on padded ones. The model gets them instead of ``attention_mask``; from the
      restarts transformers builds a block-diagonal causal mask, so no token sees another trajectory.
    - ``segment_lengths`` per row, the token counts of its trajectories in order (a padded row: one); the rest of
      the row is padding. Plain ints from collate time: the ``sdpa_varlen`` attention
      (:mod:`tl_lightning.attention`) splits rows by them without a mask and without a host sync.
    - ``ids``            trajectory ids, in segment order.
    """

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    error_mask: Tensor
    key_mask: Tensor
    step_ids: Tensor
    segment_ids: Tensor
    target_index: Tensor
    clean_target_index: Tensor
    num_segments: int
    num_tokens: int
    position_ids: Tensor | None = None
    ids: list[str] = field(default_factory=list)
    segment_lengths: list[list[int]] = field(default_factory=list)

    def loss_index(self, drop_errors: bool) -> Tensor:
        """The loss positions as a flat index: :func:`tl_lightning.losses.loss_positions` of the weights
        ``pkt_weights(..., use_mae=drop_errors)`` give, without the sync that computing them on device costs."""
        return self.clean_target_index if drop_errors else self.target_index

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def trajectories_in(batch: TrajectoryBatch) -> int:
    """The trajectories of a batch: Lightning's ``ThroughputMonitor`` counts them as its samples."""
    return batch.num_segments


def tokens_in(batch: TrajectoryBatch) -> int:
    """The real (non-pad) tokens of a batch: ``ThroughputMonitor``'s items, so it logs tokens/s."""
    return batch.num_tokens


def target_indices(labels: Tensor, error_mask: Tensor, segment_ids: Tensor) -> tuple[Tensor, Tensor]:
    """``(target_index, clean_target_index)`` of a [B, L] batch (see :class:`TrajectoryBatch`); CPU, at collate time."""
    nxt = torch.zeros_like(labels, dtype=torch.bool)
    nxt[:, :-1] = (labels[:, 1:] != IGNORE_INDEX) & (segment_ids[:, 1:] == segment_ids[:, :-1])
    clean = nxt.clone()
    clean[:, :-1] &= ~error_mask[:, 1:]
    return nxt.reshape(-1).nonzero().squeeze(1), clean.reshape(-1).nonzero().squeeze(1)


def collate_encoded(items: list[EncodedTrajectory], pad_token_id: int, pad_to_multiple_of: int | None = None) -> TrajectoryBatch:
    """Right-pad a list of :class:`EncodedTrajectory` into a :class:`TrajectoryBatch`, one trajectory per row."""
    if not items:
        raise ValueError("cannot collate an empty list of trajectories")
    return collate_rows([[it] for it in items], pad_token_id, pad_to_multiple_of, packed=False)


def collate_rows(
    rows: list[list[EncodedTrajectory]], pad_token_id: int, pad_to_multiple_of: int | None = None, packed: bool = True
) -> TrajectoryBatch:
    """Lay rows of trajectories into a :class:`TrajectoryBatch`: each row's trajectories back to back, rows
    right-padded to the longest (rounded up to ``pad_to_multiple_of``); segment ``k`` is the batch's k-th
    trajectory. ``packed`` adds ``position_ids`` restarting at 0 for each trajectory (the padding tail is one more
    run from 0, so it forms its own segment and attends only to itself; it carries no loss); unpacked batches
    leave positions to the model, which derives them from the attention mask."""
    if not rows or not all(rows):
        raise ValueError("cannot collate an empty row or an empty list of rows")
    length = max(sum(len(t) for t in row) for row in rows)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    b = len(rows)
    input_ids = torch.full((b, length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((b, length), dtype=torch.long)
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
    error_mask = torch.zeros((b, length), dtype=torch.bool)
    key_mask = torch.zeros((b, length), dtype=torch.bool)
    step_ids = torch.full((b, length), -1, dtype=torch.long)
    segment_ids = torch.full((b, length), -1, dtype=torch.long)
    position_ids = torch.zeros((b, length), dtype=torch.long)
    segment, ids = 0, []
    for r, row in enumerate(rows):
        start = 0
        for it in row:
            end = start + len(it)
            input_ids[r, start:end] = it.input_ids
            attention_mask[r, start:end] = 1
            labels[r, start:end] = it.labels
            error_mask[r, start:end] = it.error_mask
            key_mask[r, start:end] = it.key_mask
            step_ids[r, start:end] = it.step_ids
            segment_ids[r, start:end] = segment
            position_ids[r, start:end] = torch.arange(len(it))
            segment, start = segment + 1, end
            ids.append(it.id)
        position_ids[r, start:] = torch.arange(length - start)
    segment_lengths = [[len(it) for it in row] for row in rows]
    target_index, clean_target_index = target_indices(labels, error_mask, segment_ids)
    return TrajectoryBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        error_mask=error_mask,
        key_mask=key_mask,
        step_ids=step_ids,
        segment_ids=segment_ids,
        target_index=target_index,
        clean_target_index=clean_target_index,
        num_segments=segment,
        num_tokens=int(attention_mask.sum()),
        position_ids=position_ids if packed else None,
        ids=ids,
        segment_lengths=segment_lengths,
    )
