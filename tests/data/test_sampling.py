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
    # Without set_epoch every pass is epoch 0 (as with DistributedSampler): never an order of its own counting.
    c = EpochRandomSampler(range(20), seed=3)
    a.set_epoch(0)
    assert list(c) == list(c) == list(a)


def test_samplers_shard_one_order_over_ranks():
    full = EpochRandomSampler(range(10), seed=1)
    full.set_epoch(2)
    order = list(full)
    shards = []
    for rank in (0, 1, 2):
        s = EpochRandomSampler(range(10), seed=1, num_replicas=3, rank=rank)
        s.set_epoch(2)
        shards.append(list(s))
    assert all(len(x) == 4 == len(s) for x in shards)  # 10 padded to 12 by repeating the order's start
    assert [x for i in range(4) for x in (shards[0][i], shards[1][i], shards[2][i])] == order + order[:2]
    # Length grouping is formed over the global batch (2 ranks x 2): each rank's batch comes from one group.
    lengths = [5, 50, 6, 48, 7, 52, 4, 49] * 4
    g = [EpochLengthGroupedSampler(lengths, batch_size=2, seed=0, num_replicas=2, rank=r) for r in (0, 1)]
    one = EpochLengthGroupedSampler(lengths, batch_size=4, seed=0)
    for s in (*g, one):
        s.set_epoch(1)
    merged = [x for pair in zip(list(g[0]), list(g[1]), strict=True) for x in pair]
    assert merged == list(one)


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
    assert loader.state_dict() == {"batches_consumed": 2, "epoch": 0}
    rest = list(it)
    assert len(batches) + len(rest) == 5 and loader.state_dict() == {"batches_consumed": 5, "epoch": 0}

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

    # A count saved in epoch 0 (e.g. at the last batch limit_train_batches allows) skips nothing in epoch 1.
    fourth, sampler4 = _loader()
    fourth.load_state_dict({"batches_consumed": 2, "epoch": 0})
    sampler4.set_epoch(1)
    assert len(list(fourth)) == 5


def test_resumed_loader_draws_its_order_only_after_set_epoch():
    """Lightning creates the epoch's iterator, then calls set_epoch: nothing may be drawn in between."""
    loader, sampler = _loader()
    sampler.set_epoch(0)
    expected = [b.tolist() for b in loader][2:]
    resumed, sampler2 = _loader()
    resumed.load_state_dict({"batches_consumed": 2, "epoch": 0})
    sampler2.set_epoch(1)  # the sampler's epoch before Lightning restores it
    it = iter(resumed)
    sampler2.set_epoch(0)
    assert [b.tolist() for b in it] == expected
