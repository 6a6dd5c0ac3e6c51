"""Training order that survives a checkpoint: exact mid-epoch resume, on one process or under DDP.

Lightning restores the model, optimizer, scheduler and step counters from a checkpoint, but not the
position inside an epoch: a plain DataLoader restarts the epoch, and its shuffle comes from the global
RNG, which the checkpoint does not hold. Two small pieces make a resumed run see exactly the batches
the uninterrupted run would have seen:

- :class:`EpochRandomSampler` / :class:`EpochLengthGroupedSampler`: the epoch's order is a pure
  function of ``(seed, epoch)``, and each shards it over the ranks itself. Both are
  ``DistributedSampler`` s, so Lightning calls their ``set_epoch`` at every epoch start (resumed or
  not) and never wraps them in a sampler of its own, whose extra shuffle would undo length grouping.
- :class:`ResumableDataLoader`: reports in ``state_dict()`` the epoch and how many of its batches were
  consumed; Lightning saves that in the checkpoint and hands it back through ``load_state_dict``, and
  the resumed epoch skips those batches.

Why not torchdata's ``StatefulDataLoader``: it restores its position when its iterator is created, which Lightning
does before it calls ``set_epoch``, so a run resumed inside any epoch but the first replays the first epoch's
order. Swapped in here, it passed a SIGKILL resume inside epoch 0 and failed one inside epoch 1 (from step 12 on,
every loss differed); tests/test_resume.py now kills its runs inside the second epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler
from transformers.trainer_pt_utils import LengthGroupedSampler

__all__ = ["EpochLengthGroupedSampler", "EpochRandomSampler", "ResumableDataLoader"]


class EpochRandomSampler(DistributedSampler):
    """A permutation drawn from ``torch.Generator().manual_seed(seed + epoch)``, then sharded: rank ``r``
    of ``W`` takes positions ``r, r + W, ...`` (the order is padded by repeating its start to a multiple
    of ``W``, as ``DistributedSampler`` does). With ``W = 1`` this is the whole permutation.

    ``set_epoch`` must be called before each pass (Lightning does); without it every pass is epoch 0.

    Args:
        data_source: anything with ``len``.
        seed: base seed.
        num_replicas, rank: the data-parallel world size and this process's rank.
    """

    def __init__(self, data_source: Sequence[Any], seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(data_source, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def global_order(self, generator: torch.Generator) -> list[int]:
        """The epoch's order over the whole data set, before sharding."""
        return torch.randperm(len(self.dataset), generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.global_order(torch.Generator().manual_seed(self.seed + self.epoch))
        while len(order) < self.total_size:  # pad (a data set smaller than the world repeats more than once)
            order += order[: self.total_size - len(order)]
        return iter(order[self.rank : self.total_size : self.num_replicas])


class EpochLengthGroupedSampler(EpochRandomSampler):
    """transformers' ``LengthGroupedSampler`` (random mega-batches of 50 batches, sorted by length
    inside), with its randomness drawn from ``(seed, epoch)``.

    Under DDP the groups are formed for the global batch (``batch_size * num_replicas``) and dealt out
    by stride, so each rank's batch comes from one group of similar lengths.

    Args:
        lengths: one length per sample.
        batch_size: the per-rank batch size.
        seed: base seed.
        num_replicas, rank: the data-parallel world size and this process's rank.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(list(lengths), seed=seed, num_replicas=num_replicas, rank=rank)
        self.lengths, self.batch_size = list(lengths), batch_size

    def global_order(self, generator: torch.Generator) -> list[int]:
        grouped = LengthGroupedSampler(self.batch_size * self.num_replicas, lengths=self.lengths, generator=generator)
        return list(grouped)


class ResumableDataLoader(DataLoader):
    """A DataLoader that resumes mid-epoch: ``state_dict()`` holds the epoch and the batches consumed in it.

    Lightning fetches a sized loader's batches one at a time (no look-ahead), so the batches produced
    in the current epoch are the batches trained on. The skip is applied only to the epoch the count was
    saved in (a checkpoint at an epoch's last batch, or at the last batch ``limit_train_batches``
    allows, means the next epoch starts from its beginning). Skipping replays the sampler and the
    collate of the skipped batches (cheap for in-memory tensors), never the model.

    Nothing is drawn before the first ``next()``: Lightning creates the iterator before it calls
    ``set_epoch``, and an order drawn earlier would be the wrong epoch's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._produced = 0
        self._resume: dict[str, int] | None = None

    def _epoch(self) -> int | None:
        return getattr(self.sampler, "epoch", None)

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        resume, self._resume = self._resume, None
        skip = 0
        if resume is not None and resume.get("epoch", self._epoch()) == self._epoch():
            skip = resume["batches_consumed"] if resume["batches_consumed"] < len(self) else 0
        iterator = super().__iter__()
        for _ in range(skip):
            next(iterator, None)
        self._produced = skip
        for batch in iterator:
            self._produced += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        state = {"batches_consumed": self._produced}
        if self._epoch() is not None:
            state["epoch"] = self._epoch()
        return state

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume = {k: int(v) for k, v in state_dict.items()}
