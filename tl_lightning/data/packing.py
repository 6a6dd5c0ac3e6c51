"""Padding-free packing: whole trajectories packed into rows, batches with a token budget.

    data:
      class_path: tl_lightning.data.datamodule.ToolTrajectoryDataModule
      init_args: {train_path: quickstart, packing: true, max_length: 1536, max_tokens_per_batch: 1536}

A padded batch computes on ``rows x longest`` tokens; a packed one puts several trajectories in a row, each
with ``position_ids`` restarting at 0, so the row is nearly all real tokens. A token never attends to another
trajectory, so every per-token loss equals the trajectory's own (tests/data/test_packing.py): under TLSFTModule's
default ``sdpa_varlen`` attention (:mod:`tl_lightning.attention`) each row is split by the batch's
``segment_lengths`` and each trajectory attends causally on its own, with no mask; under ``sdpa``/``eager``
transformers reads the restarts (with ``attention_mask=None``) and builds a dense block-diagonal causal mask
(exact too, but it costs the whole row's ``L^2`` attention); ``flash_attention_2`` reads them as varlen lengths.

The plan, a pure function of the lengths and the seed:

1. :func:`pack_rows`: a random permutation (``seed``), cut into windows of ``window`` trajectories; inside a
   window, first-fit-decreasing into rows of at most ``row_length`` tokens. A trajectory is never split.
2. :func:`plan_batches`: consecutive rows form a global batch while their tokens fit
   ``tokens_per_batch x num_replicas``; each global batch is dealt to the ranks by tokens
   (longest row to the least-loaded rank). The plan depends on the global budget only, so one process
   with budget ``2T`` trains on exactly the global batches of two DDP processes with budget ``T``.

:class:`PackedBatchSampler` draws the order of the global batches from ``seed + epoch`` (the rows stay
those of ``seed``: the epoch length never changes), which keeps exact mid-epoch resume
(:class:`~tl_lightning.data.sampling.ResumableDataLoader`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler

from tl_lightning.data.batch import EncodedTrajectory, TrajectoryBatch, collate_rows

__all__ = ["PackedBatchSampler", "PackedRows", "collate_packed", "pack_rows", "plan_batches"]

Row = list[int]


def pack_rows(lengths: Sequence[int], row_length: int, generator: torch.Generator | None, window: int = 512) -> list[Row]:
    """Trajectory indices packed into rows of at most ``row_length`` tokens (each index exactly once).

    ``generator=None`` keeps file order (evaluation); otherwise the order is a permutation drawn from it.
    Within each window of ``window`` trajectories, first-fit-decreasing: longest first, each into the first
    row with room (rows of a window are ~full; only the window's last rows are partly empty).
    """
    too_long = [i for i, n in enumerate(lengths) if n > row_length]
    if too_long:
        raise ValueError(f"trajectory {too_long[0]} has {lengths[too_long[0]]} tokens, more than a row's {row_length}")
    n = len(lengths)
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    rows: list[Row] = []
    for start in range(0, n, window):
        chunk = sorted(order[start : start + window], key=lambda i: -lengths[i])
        chunk_rows: list[Row] = []
        free: list[int] = []
        for i in chunk:
            slot = next((r for r, room in enumerate(free) if room >= lengths[i]), None)
            if slot is None:
                chunk_rows.append([])
                free.append(row_length)
                slot = len(free) - 1
            chunk_rows[slot].append(i)
            free[slot] -= lengths[i]
        rows += chunk_rows
    return rows


def _deal(rows: list[Row], lengths: Sequence[int], num_replicas: int) -> list[list[Row]]:
    """Rows of one global batch dealt to ranks: longest row first, each to the rank with the fewest tokens."""
    parts: list[list[Row]] = [[] for _ in range(num_replicas)]
    load = [0] * num_replicas
    for row in sorted(rows, key=lambda r: -sum(lengths[i] for i in r)):
        r = min(range(num_replicas), key=lambda k: (load[k], k))
        parts[r].append(row)
        load[r] += sum(lengths[i] for i in row)
    return parts


def plan_batches(rows: list[Row], lengths: Sequence[int], tokens_per_batch: int, num_replicas: int = 1) -> list[list[list[Row]]]:
    """Global batches, each a list of ``num_replicas`` per-rank lists of rows.

    Rows are taken in order while the global batch's tokens stay within ``tokens_per_batch * num_replicas``.
    A row never holds more than ``tokens_per_batch`` tokens (the caller's row length), so every closed
    global batch has at least ``num_replicas`` rows; the last one may have fewer, and a rank left without
    a row gets the first row of the plan again (as ``DistributedSampler`` repeats samples to even out ranks).
    """
    budget = tokens_per_batch * num_replicas
    batches: list[list[Row]] = []
    current: list[Row] = []
    used = 0
    for row in rows:
        size = sum(lengths[i] for i in row)
        if current and used + size > budget:
            batches.append(current)
            current, used = [], 0
        current.append(row)
        used += size
    if current:
        batches.append(current)
    plan = [_deal(b, lengths, num_replicas) for b in batches]
    for parts in plan:
        for part in parts:
            if not part:
                part.append(rows[0])
    return plan


class PackedRows:
    """A view of an encoded dataset indexed by a list of rows: ``view[[[0, 3], [5]]]`` is
    ``[[ds[0], ds[3]], [ds[5]]]``, what :func:`collate_packed` takes."""

    def __init__(self, dataset: Sequence[EncodedTrajectory]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, rows: list[Row]) -> list[list[EncodedTrajectory]]:
        return [[self.dataset[i] for i in row] for row in rows]


class PackedBatchSampler(DistributedSampler):
    """Yields, per step, this rank's rows (a list of lists of trajectory indices) of the packing plan.

    Use with ``DataLoader(PackedRows(dataset), sampler=this, batch_size=None, collate_fn=collate_packed)``.
    A ``DistributedSampler``, so Lightning calls ``set_epoch`` and never wraps it in a sampler of its own.

    Args:
        lengths: tokens per trajectory.
        row_length: the most tokens in a row (the datamodule's ``max_length``).
        tokens_per_batch: the per-rank token budget (>= ``row_length``: a batch holds at least one full row).
        seed: the rows come from ``seed``, the order of the global batches from ``seed + epoch``.
        shuffle: False keeps file order and the plan's batch order (evaluation).
        num_replicas, rank: the data-parallel world size and this process's rank.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        row_length: int,
        tokens_per_batch: int,
        seed: int = 0,
        shuffle: bool = True,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if tokens_per_batch < row_length:
            raise ValueError(f"max_tokens_per_batch ({tokens_per_batch}) must be >= max_length ({row_length}): "
                             "a batch holds at least one full row")
        super().__init__(list(lengths), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        rows = pack_rows(lengths, row_length, generator)
        self.plan = plan_batches(rows, lengths, tokens_per_batch, num_replicas)

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[list[Row]]:
        order: list[int] = list(range(len(self.plan)))
        if self.shuffle:
            order = torch.randperm(len(self.plan), generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        return iter([self.plan[g][self.rank] for g in order])


def collate_packed(rows: list[list[EncodedTrajectory]], pad_token_id: int, pad_to_multiple_of: int | None = None) -> TrajectoryBatch:
    """Pack rows of trajectories into a :class:`TrajectoryBatch` (:func:`~tl_lightning.data.batch.collate_rows`)."""
    return collate_rows(rows, pad_token_id, pad_to_multiple_of, packed=True)
