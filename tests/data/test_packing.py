"""Padding-free packing: exactness against one-by-one runs (tl-tiny, sdpa, eager, sdpa_varlen), per-trajectory PKT slots,
the packing plan (every trajectory once, rows within max_length, budgets, DDP shards), the packed collate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sft_helpers import TINY, hand_tokenizer, hand_trajectories

from tl_lightning.attention import VARLEN_SDPA, model_inputs
from tl_lightning.data.batch import IGNORE_INDEX, EncodedTrajectory, collate_encoded
from tl_lightning.data.packing import PackedBatchSampler, collate_packed, pack_rows, plan_batches
from tl_lightning.losses import pkt_weights, weighted_masked_nll
from tl_lightning.models import load_causal_lm


def _trajectories(vocab: int = 2000) -> list[EncodedTrajectory]:
    """Five trajectories of different lengths (24-52 tokens), ids inside the vocabulary (tl-tiny's by default)."""
    items = []
    for i, length in enumerate([24, 40, 31, 24, 52]):
        (it,) = hand_trajectories(1, length=length, seed=i, vocab=vocab)
        it.id = f"t{i}"
        items.append(it)
    return items


ROWS = [[0, 1], [2, 3, 4]]  # two packed rows, 64 and 107 tokens


def _weights(batch):
    return pkt_weights(batch.labels, batch.key_mask, batch.step_ids, batch.error_mask,
                       segment_ids=batch.segment_ids, num_segments=batch.num_segments)


def _token_nll(model, batch):
    """Per-token NLL at the batch's loss positions (row-major = trajectory order), and the weights there."""
    logits = model(**model_inputs(model, batch), use_cache=False).logits
    index = batch.clean_target_index
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1])[index], batch.labels.reshape(-1)[index + 1], reduction="none")
    return nll, _weights(batch).reshape(-1)[index + 1]


@pytest.mark.parametrize("attn", ["sdpa", "eager", VARLEN_SDPA])
def test_packed_batch_equals_the_trajectories_run_one_by_one(attn):
    """The acceptance test: per-token losses, PKT weights and the gradient of the weighted loss of a packed batch
    equal those of the same trajectories run one by one (batch of 1, no padding), to 1e-5. sdpa_varlen's reference
    is transformers' own sdpa, so the per-segment attention is checked against it, not against itself."""
    torch.manual_seed(0)
    model = load_causal_lm("tl-tiny", tiny_config={"attn_implementation": attn})
    assert model.config._attn_implementation == attn
    items = _trajectories()
    packed = collate_packed([[items[i] for i in row] for row in ROWS], pad_token_id=0)
    singles = [collate_encoded([it], pad_token_id=0) for it in items]
    assert packed.input_ids.shape == (2, 107) and packed.num_segments == 5

    nll_p, w_p = _token_nll(model, packed)
    total = w_p.sum()  # the packed batch's normaliser; each single run is divided by the same number
    loss, _ = weighted_masked_nll(model(**model_inputs(model, packed), use_cache=False).logits,
                                  packed.labels, _weights(packed), normalizer=total, index=packed.clean_target_index)
    grads_p = torch.autograd.grad(loss, list(model.parameters()))

    model.set_attn_implementation("sdpa" if attn == VARLEN_SDPA else attn)
    one = [_token_nll(model, b) for b in singles]
    torch.testing.assert_close(nll_p, torch.cat([n for n, _ in one]), rtol=0, atol=1e-5)
    torch.testing.assert_close(w_p, torch.cat([w for _, w in one]), rtol=0, atol=0)
    grads_1 = [torch.zeros_like(p) for p in model.parameters()]
    for b in singles:
        logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False).logits
        part, _ = weighted_masked_nll(logits, b.labels, _weights(b), normalizer=total, index=b.clean_target_index)
        for acc, g in zip(grads_1, torch.autograd.grad(part, list(model.parameters())), strict=True):
            acc += g
    for gp, g1 in zip(grads_p, grads_1, strict=True):
        torch.testing.assert_close(gp, g1, rtol=0, atol=1e-5)


@pytest.mark.parametrize("attn", ["sdpa", VARLEN_SDPA])
def test_module_loss_of_a_packed_batch_equals_the_padded_batch(attn):
    """TLSFTModule end to end (slots per trajectory; position_ids and no mask under sdpa, segment lengths under
    sdpa_varlen): the packed loss equals the padded batch's under transformers' sdpa with its padding mask."""
    from lightning.pytorch import seed_everything

    from tl_lightning.modules.sft import TLSFTModule

    items = _trajectories(vocab=300)
    seed_everything(0)
    module = TLSFTModule(tokenizer=hand_tokenizer(), tiny_config=TINY, attn_implementation=attn)
    packed = module.training_step(collate_packed([[items[i] for i in row] for row in ROWS], 0), 0)
    module.model.set_attn_implementation("sdpa")
    padded = module.training_step(collate_encoded(items, 0), 0)
    torch.testing.assert_close(packed, padded, rtol=0, atol=1e-5)


def test_pkt_slots_stay_per_trajectory_in_a_packed_row():
    """Two trajectories with the same step ids in one row: each step's key weight comes from its own counts
    (as one row per trajectory gives), not from the merged (row, step) counts."""
    def traj(n_nonkey: int) -> EncodedTrajectory:
        n = 2 + n_nonkey
        labels = torch.full((n,), IGNORE_INDEX)
        labels[1:] = 7
        step = torch.full((n,), -1)
        step[1:] = 0
        key = torch.zeros(n, dtype=torch.bool)
        key[1] = True
        return EncodedTrajectory(torch.full((n,), 5), labels, torch.zeros(n, dtype=torch.bool), key, step)

    a, b = traj(2), traj(6)  # key weights 2 and 6; merged they would be 8 / 2 = 4
    batch = collate_packed([[a, b]], pad_token_id=0)
    w = _weights(batch)
    assert w[0, 1].item() == 2.0 and w[0, 5].item() == 6.0


def test_collate_packed_fields():
    items = _trajectories()
    batch = collate_packed([[items[0], items[1]], [items[2]]], pad_token_id=0)
    assert batch.input_ids.shape == (2, 64) and batch.num_tokens == 24 + 40 + 31 and batch.ids == ["t0", "t1", "t2"]
    assert batch.position_ids[0].tolist() == list(range(24)) + list(range(40))
    assert batch.position_ids[1].tolist() == list(range(31)) + list(range(33))  # the padding tail is its own run
    assert batch.segment_ids[1].tolist() == [2] * 31 + [-1] * 33
    assert torch.equal(batch.labels[0, 24:], items[1].labels) and torch.equal(batch.step_ids[0, 24:], items[1].step_ids)
    # No loss position predicts the next trajectory's first token: 23 (last of t0) is never a position.
    assert 23 not in batch.target_index.tolist()
    assert batch.target_index.tolist() == sorted(batch.target_index.tolist())
    with pytest.raises(ValueError, match="empty"):
        collate_packed([[]], pad_token_id=0)


def test_pack_rows_keeps_every_trajectory_whole_within_the_row_length():
    lengths = torch.randint(10, 400, (300,), generator=torch.Generator().manual_seed(0)).tolist()
    rows = pack_rows(lengths, 512, torch.Generator().manual_seed(1), window=64)
    assert sorted(i for r in rows for i in r) == list(range(300))
    assert all(sum(lengths[i] for i in r) <= 512 for r in rows)
    fill = sum(lengths) / (512 * len(rows))
    assert fill > 0.9, fill  # first-fit-decreasing per window: rows are nearly full
    assert rows == pack_rows(lengths, 512, torch.Generator().manual_seed(1), window=64)  # a pure function of the seed
    assert pack_rows(lengths, 512, None)[0][0] == max(range(300), key=lambda i: (lengths[i], -i))  # FFD in file order
    with pytest.raises(ValueError, match="more than a row's 512"):
        pack_rows([600], 512, None)


def test_plan_budget_and_ddp_shards_equal_one_process_with_the_global_budget():
    lengths = torch.randint(10, 400, (200,), generator=torch.Generator().manual_seed(0)).tolist()
    rows = pack_rows(lengths, 512, torch.Generator().manual_seed(0))
    one = plan_batches(rows, lengths, 1024, num_replicas=1)
    assert all(sum(lengths[i] for r in b[0] for i in r) <= 1024 for b in one)
    two = plan_batches(rows, lengths, 512, num_replicas=2)
    one_global = plan_batches(rows, lengths, 1024, num_replicas=1)
    # Two ranks at budget T see, per step, exactly the rows one process at budget 2T sees ...
    flat = lambda parts: sorted(tuple(r) for p in parts for r in p)  # noqa: E731
    assert [flat(b) for b in two[:-1]] == [flat(b) for b in one_global[:-1]]
    assert all(b[0] and b[1] for b in two)
    # ... except that a last global batch of one row gives the idle rank the plan's first row again.
    assert len(one_global[-1][0]) == 1 and flat(two[-1]) == sorted([tuple(one_global[-1][0][0]), tuple(rows[0])])


def test_sampler_orders_batches_by_seed_and_epoch_and_shards():
    lengths = torch.randint(10, 400, (200,), generator=torch.Generator().manual_seed(0)).tolist()
    s = PackedBatchSampler(lengths, 512, 1024, seed=3)
    s.set_epoch(0)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert len(e0) == len(e1) == len(s) and e0 != e1 and sorted(map(str, e0)) == sorted(map(str, e1))
    again = PackedBatchSampler(lengths, 512, 1024, seed=3)
    again.set_epoch(1)
    assert list(again) == e1  # resume: the order is a function of (seed, epoch) alone
    ranks = [PackedBatchSampler(lengths, 512, 512, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    with pytest.raises(ValueError, match="must be >= max_length"):
        PackedBatchSampler(lengths, 512, 256)
