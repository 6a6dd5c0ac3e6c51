"""Typed containers for encoded trajectories and padded batches.

Lightning moves dataclasses of tensors to the device field by field, so these go through
``transfer_batch_to_device`` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["EncodedTrajectory", "TrajectoryBatch", "collate_encoded", "IGNORE_INDEX"]

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
    """A right-padded batch of encoded trajectories. Every tensor is [B, L] with L the longest sequence.

    - ``input_ids``      [B, L] long, padded with the tokenizer's pad id.
    - ``attention_mask`` [B, L] long, 1 on real tokens, 0 on padding.
    - ``labels``         [B, L] long, ``IGNORE_INDEX`` on unsupervised tokens and padding.
    - ``error_mask``     [B, L] bool, False on padding.
    - ``key_mask``       [B, L] bool, False on padding.
    - ``step_ids``       [B, L] long, -1 on unsupervised tokens and padding.
    - ``ids``            list of B trajectory ids.
    """

    input_ids: Tensor
    attention_mask: Tensor
    labels: Tensor
    error_mask: Tensor
    key_mask: Tensor
    step_ids: Tensor
    ids: list[str] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def collate_encoded(items: list[EncodedTrajectory], pad_token_id: int, pad_to_multiple_of: int | None = None) -> TrajectoryBatch:
    """Right-pad a list of :class:`EncodedTrajectory` into a :class:`TrajectoryBatch`."""
    if not items:
        raise ValueError("cannot collate an empty list of trajectories")
    length = max(len(it) for it in items)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    b = len(items)
    input_ids = torch.full((b, length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((b, length), dtype=torch.long)
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
    error_mask = torch.zeros((b, length), dtype=torch.bool)
    key_mask = torch.zeros((b, length), dtype=torch.bool)
    step_ids = torch.full((b, length), -1, dtype=torch.long)
    for i, it in enumerate(items):
        n = len(it)
        input_ids[i, :n] = it.input_ids
        attention_mask[i, :n] = 1
        labels[i, :n] = it.labels
        error_mask[i, :n] = it.error_mask
        key_mask[i, :n] = it.key_mask
        step_ids[i, :n] = it.step_ids
    return TrajectoryBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        error_mask=error_mask,
        key_mask=key_mask,
        step_ids=step_ids,
        ids=[it.id for it in items],
    )
