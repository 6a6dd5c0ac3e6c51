"""Training order as a function of (seed, epoch), and the mid-epoch state of the training loader."""

from __future__ import annotations

import torch

from tl_lightning.data.sampling import EpochLengthGroupedSampler, EpochRandomSampler, ResumableDataLoader


def test_epoch_random_sampler_is_a_function_of_seed_and_epoch():
    a, b = EpochRandomSampler(range(20), seed=3), EpochRandomSampler(range(20), seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    torch.manual_seed(123)  # the global RNG plays no part
    first = list(a)
    assert first == list(b) and sorted(first) == list(range(20))
    a.set_epoch(3)
    assert list(a) != first
    # Without set_epoch (a DDP-wrapped sampler) every pass is a new epoch.
    c = EpochRandomSampler(range(20), seed=3)
    assert list(c) != list(c)


def test_epoch_length_grouped_sampler_groups_and_repeats():
    lengths = [5, 50, 6, 48, 7, 52, 4, 49] * 4
    s = EpochLengthGroupedSampler(lengths, batch_size=4, seed=0)
    s.set_epoch(1)
    order = list(s)
    assert sorted(order) == list(range(len(lengths)))
    s.set_epoch(1)
    assert list(s) == order
    # LengthGroupedSampler puts the longest sample first, and sorts by length within mega-batches.
    assert lengths[order[0]] == max(lengths)


def _loader(n=10, batch_size=2):
    sampler = EpochRandomSampler(list(range(n)), seed=0)
    return ResumableDataLoader(list(range(n)), batch_size=batch_size, sampler=sampler), sampler


def test_resumable_loader_counts_consumed_batches_and_skips_them_once():
    loader, sampler = _loader()
    sampler.set_epoch(0)
    it = iter(loader)
    batches = [next(it) for _ in range(2)]
    assert loader.state_dict() == {"batches_consumed": 2}
    rest = list(it)
    assert len(batches) + len(rest) == 5 and loader.state_dict() == {"batches_consumed": 5}

    # A fresh loader told "2 consumed" continues with the third batch of the same epoch, once.
    again, sampler2 = _loader()
    again.load_state_dict({"batches_consumed": 2})
    sampler2.set_epoch(0)
    resumed = list(again)
    assert [b.tolist() for b in resumed] == [b.tolist() for b in rest]
    sampler2.set_epoch(1)
    assert len(list(again)) == 5

    # A whole epoch consumed (checkpoint at its last batch): the next epoch starts from its beginning.
    third, sampler3 = _loader()
    third.load_state_dict({"batches_consumed": 5})
    sampler3.set_epoch(1)
    assert len(list(third)) == 5
