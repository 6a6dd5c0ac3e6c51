"""Training order that survives a checkpoint: exact mid-epoch resume.

Lightning restores the model, optimizer, scheduler and step counters from a checkpoint, but not the
position inside an epoch: a plain DataLoader restarts the epoch, and its shuffle comes from the global
RNG, which the checkpoint does not hold. Two small pieces make a resumed run see exactly the batches
the uninterrupted run would have seen:

- :class:`EpochRandomSampler` / :class:`EpochLengthGroupedSampler`: the epoch's order is a pure
  function of ``(seed, epoch)``. Lightning calls ``set_epoch`` on a loader's sampler at every epoch
  start, resumed or not.
- :class:`ResumableDataLoader`: reports in ``state_dict()`` how many batches of the current epoch were
  consumed; Lightning saves that in the checkpoint and hands it back through ``load_state_dict``,
  and the next epoch iterator skips those batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler
from transformers.trainer_pt_utils import LengthGroupedSampler

__all__ = ["EpochLengthGroupedSampler", "EpochRandomSampler", "ResumableDataLoader"]


class _EpochSeeded:
    """The generator of epoch ``e`` is seeded with ``seed + e``. Lightning calls ``set_epoch`` on the
    loader's sampler at every epoch start, resumed or not; a sampler wrapped for DDP is not told the
    epoch, so it then counts its own passes (every epoch still gets a new order)."""

    def _init_epochs(self, seed: int) -> None:
        self.seed, self.epoch, self._epoch_was_set = seed, 0, False

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._epoch_was_set = epoch, True

    def _epoch_generator(self) -> torch.Generator:
        if not self._epoch_was_set:
            self.epoch += 1
        self._epoch_was_set = False
        return torch.Generator().manual_seed(self.seed + self.epoch)


class EpochRandomSampler(_EpochSeeded, RandomSampler):
    """A permutation that depends only on ``(seed, epoch)``.

    Still a ``RandomSampler``, so under DDP Lightning swaps in its ``DistributedSampler`` (seeded by the
    run's seed and the epoch: also exact on resume).
    """

    def __init__(self, data_source: Sequence[Any], seed: int = 0) -> None:
        super().__init__(data_source)
        self._init_epochs(seed)

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(len(self.data_source), generator=self._epoch_generator()).tolist())


class EpochLengthGroupedSampler(_EpochSeeded, Sampler[int]):
    """transformers' ``LengthGroupedSampler`` (random mega-batches of 50 batches, sorted by length
    inside), with its randomness drawn from ``(seed, epoch)``.

    Args:
        lengths: one length per sample.
        batch_size: the loader's batch size.
        seed: base seed.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0) -> None:
        self.lengths, self.batch_size = list(lengths), batch_size
        self._init_epochs(seed)

    def __iter__(self) -> Iterator[int]:
        generator = self._epoch_generator()
        return iter(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=generator))

    def __len__(self) -> int:
        return len(self.lengths)


class ResumableDataLoader(DataLoader):
    """A DataLoader that resumes mid-epoch: ``state_dict()`` counts the batches the trainer consumed.

    Lightning fetches a sized loader's batches one at a time (no look-ahead), so the batches produced
    in the current epoch are the batches trained on. A saved count of a whole epoch (a checkpoint at
    its last batch) means the next epoch starts from its beginning. Skipping replays the sampler and
    the collate of the skipped batches (cheap for in-memory tensors), never the model.

    One case it cannot see: with ``limit_train_batches`` shorter than the loader, a checkpoint taken
    at the epoch's last allowed batch makes the resumed run skip that many batches of the next epoch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._produced = 0
        self._skip = 0

    def __iter__(self) -> Iterator[Any]:
        skip, self._skip = self._skip, 0
        if skip >= len(self):  # the checkpoint closed an epoch
            skip = 0
        iterator = super().__iter__()
        for _ in range(skip):
            next(iterator, None)
        self._produced = skip
        return self._counting(iterator)

    def _counting(self, iterator: Iterator[Any]) -> Iterator[Any]:
        for batch in iterator:
            self._produced += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"batches_consumed": self._produced}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._skip = int(state_dict.get("batches_consumed", 0))
