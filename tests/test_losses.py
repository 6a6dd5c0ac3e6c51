"""SFT objective (MAE + PKT): hand-computed weights and losses, and equality with plain cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tl_lightning.losses import (
    HiddenAtLossPositions,
    chunked_nll,
    dropped_step_fraction,
    loss_positions,
    pkt_weights,
    weighted_masked_nll,
)

I = -100  # noqa: E741  (IGNORE_INDEX, short so the tensors below line up)


def _row():
    """One sequence of 24 tokens with four assistant steps.

    step 0: tokens 2..6   (5 supervised, 1 key)   -> |NK|/|K| = 4/1  -> weight 4
    step 1: tokens 8..10  (3 supervised, 2 keys)  -> 1/2 clipped up  -> weight 1
    step 2: tokens 11..22 (12 supervised, 1 key)  -> 11/1 clipped    -> weight 9 (= w_max)
    step 3: token 23      (1 supervised, erroneous step)
    """
    L = 24
    labels = torch.full((L,), I)
    step = torch.full((L,), -1)
    key = torch.zeros(L, dtype=torch.bool)
    err = torch.zeros(L, dtype=torch.bool)
    for s, (a, b) in enumerate([(2, 7), (8, 11), (11, 23), (23, 24)]):
        labels[a:b] = 5 + s
        step[a:b] = s
    key[[2, 8, 9, 11]] = True
    err[23] = True
    return labels, key, step, err


def test_pkt_weights_hand_computed_clip_at_one_and_at_w_max():
    labels, key, step, err = (t.unsqueeze(0) for t in _row())
    w = pkt_weights(labels, key, step, err, use_mae=True, use_pkt=True, w_max=9.0)[0]
    expected = torch.zeros(24)
    expected[2:7] = 1.0
    expected[2] = 4.0  # 4 non-key / 1 key
    expected[8:11] = 1.0  # 1 non-key / 2 keys = 0.5 -> clipped to 1
    expected[11:23] = 1.0
    expected[11] = 9.0  # 11 / 1 -> clipped to w_max
    expected[23] = 0.0  # MAE
    assert torch.equal(w, expected)


def test_pkt_weights_flags_and_w_max():
    labels, key, step, err = (t.unsqueeze(0) for t in _row())
    sup = (labels != I).float()
    none = pkt_weights(labels, key, step, err, use_mae=False, use_pkt=False)
    assert torch.equal(none, sup)
    mae = pkt_weights(labels, key, step, err, use_mae=True, use_pkt=False)
    assert torch.equal(mae, sup.masked_fill(err, 0.0))
    pkt = pkt_weights(labels, key, step, err, use_mae=False, use_pkt=True, w_max=20.0)[0]
    assert pkt[2] == 4.0 and pkt[8] == 1.0 and pkt[11] == 11.0
    assert pkt[23] == 1.0  # no MAE: the erroneous step (no key tokens) keeps weight 1
    with pytest.raises(ValueError, match="w_max"):
        pkt_weights(labels, key, step, err, w_max=0.5)


def test_pkt_weights_are_per_sequence_and_step_in_a_padded_batch():
    labels, key, step, err = _row()
    # Row 1: same step ids, different counts (step 0 has 2 tokens, 1 key -> weight 1), then padding.
    labels2 = torch.full((24,), I)
    step2 = torch.full((24,), -1)
    key2 = torch.zeros(24, dtype=torch.bool)
    labels2[0:2] = 3
    step2[0:2] = 0
    key2[0] = True
    labels2[4:10] = 4
    step2[4:10] = 2  # step 2 with no key tokens: weight 1 everywhere
    batch = [torch.stack(p) for p in ((labels, labels2), (key, key2), (step, step2), (err, torch.zeros_like(err)))]
    w = pkt_weights(*batch, w_max=9.0)
    assert w[0, 2] == 4.0 and w[0, 11] == 9.0
    assert torch.equal(w[1, 0:2], torch.tensor([1.0, 1.0]))
    assert torch.equal(w[1, 4:10], torch.ones(6))
    assert w[1, 10:].sum() == 0 and w[1, 2:4].sum() == 0


def _logits_with_target_logit(labels, vocab, values):
    """Logits that are 0 everywhere except ``values[i]`` at the target of position i (shifted)."""
    b, L = labels.shape
    logits = torch.zeros(b, L, vocab)
    for bi in range(b):
        for t in range(L - 1):
            if labels[bi, t + 1] != I:
                logits[bi, t, labels[bi, t + 1]] = values[t]
    return logits


def test_weighted_masked_nll_hand_computed():
    V = 8
    labels = torch.tensor([[I, 1, 2, 3, I]])
    weights = torch.tensor([[0.0, 2.0, 1.0, 0.0, 0.0]])  # token 3 dropped (weight 0)
    key = torch.tensor([[False, True, False, False, False]])
    logits = _logits_with_target_logit(labels, V, values=[0.0, 1.0, 2.0, 0.0, 0.0]).requires_grad_()
    loss, stats = weighted_masked_nll(logits, labels, weights, key_mask=key)
    nll1 = math.log(V)  # logit 0 at target: uniform
    nll2 = math.log(math.e + V - 1) - 1.0
    assert loss.item() == pytest.approx((2 * nll1 + 1 * nll2) / 3, rel=1e-6)
    assert stats["key_nll"].item() == pytest.approx(nll1, rel=1e-6)
    assert stats["nonkey_nll"].item() == pytest.approx(nll2, rel=1e-6)
    assert stats["num_tokens"].item() == 2 and stats["weight_sum"].item() == 3.0
    loss.backward()
    assert logits.grad[0, 2].abs().sum() == 0  # the weight-0 token gets no gradient
    assert logits.grad[0, 0].abs().sum() > 0


def test_equals_cross_entropy_when_all_weights_are_one():
    torch.manual_seed(0)
    logits = torch.randn(3, 11, 17, dtype=torch.float64)
    labels = torch.randint(0, 17, (3, 11))
    labels[torch.rand(3, 11) < 0.4] = I
    labels[2] = I  # a row without supervision
    weights = (labels != I).float()
    loss, _ = weighted_masked_nll(logits, labels, weights)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, 17), labels[:, 1:].reshape(-1), ignore_index=I)
    torch.testing.assert_close(loss, ref.float(), rtol=1e-6, atol=1e-7)


def test_mae_zeroing_removes_the_erroneous_step_from_the_loss():
    torch.manual_seed(1)
    labels, key, step, err = (t.unsqueeze(0) for t in _row())
    logits = torch.randn(1, 24, 12)
    lab = labels.clamp_min(0).masked_fill(labels == I, I)
    w = pkt_weights(lab, key, step, err, use_mae=True, use_pkt=False)
    loss, _ = weighted_masked_nll(logits, lab, w)
    kept = lab.masked_fill(err, I)
    ref = F.cross_entropy(logits[0, :-1], kept[0, 1:], ignore_index=I)
    torch.testing.assert_close(loss, ref)


def test_zero_weight_batch_gives_zero_loss_that_backpropagates():
    logits = torch.randn(2, 5, 7, requires_grad=True)
    labels = torch.full((2, 5), I)
    loss, stats = weighted_masked_nll(logits, labels, torch.zeros(2, 5))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    # All-erroneous steps under MAE: supervised labels but zero weights.
    labels[:, 2:] = 3
    w = pkt_weights(labels, torch.zeros(2, 5, dtype=torch.bool), torch.zeros(2, 5, dtype=torch.long),
                    labels != I, use_mae=True)
    loss2, _ = weighted_masked_nll(logits, labels, w)
    assert loss2.item() == 0.0 and loss2.requires_grad


def test_normalizer_gives_global_mean_across_shards():
    """Two data-parallel shards with the global normaliser average to the full-batch loss exactly."""
    torch.manual_seed(2)
    logits = torch.randn(2, 6, 9, dtype=torch.float64)
    labels = torch.randint(0, 9, (2, 6))
    labels[0, :4] = I  # unequal token counts per shard
    w = (labels != I).double() * torch.tensor([[1.0], [3.0]], dtype=torch.float64)
    full, _ = weighted_masked_nll(logits, labels, w)
    total = w[:, 1:].sum()
    shards = [weighted_masked_nll(logits[i : i + 1], labels[i : i + 1], w[i : i + 1], normalizer=total / 2)[0]
              for i in range(2)]
    torch.testing.assert_close((shards[0] + shards[1]) / 2, full.float())


def test_loss_positions_are_the_inputs_that_predict_a_weighted_label():
    labels = torch.tensor([[I, 1, 2, 3, I], [4, I, I, 5, 6]])
    weights = torch.tensor([[0.0, 2.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0, 3.0]])
    expected = torch.tensor([[True, True, False, False, False], [False, False, True, True, False]])
    assert torch.equal(loss_positions(labels, weights), expected)


def test_pre_gathered_logits_give_the_same_loss_stats_and_gradient():
    """[N, V] rows at loss_positions (what a model under logits_only_at returns) == the [B, L, V] path."""
    torch.manual_seed(3)
    labels, key, step, err = (t.unsqueeze(0).repeat(2, 1) for t in _row())
    labels[1, :5] = I
    w = pkt_weights(labels, key, step, err, use_mae=True, use_pkt=True)
    full = torch.randn(2, 24, 13, dtype=torch.float64, requires_grad=True)
    rows = full.detach()[loss_positions(labels, w)].clone().requires_grad_()
    loss_full, stats_full = weighted_masked_nll(full, labels, w, key_mask=key)
    loss_rows, stats_rows = weighted_masked_nll(rows, labels, w, key_mask=key)
    torch.testing.assert_close(loss_rows, loss_full)
    for name in stats_full:
        torch.testing.assert_close(stats_rows[name], stats_full[name])
    loss_full.backward()
    loss_rows.backward()
    torch.testing.assert_close(rows.grad, full.grad[loss_positions(labels, w)])


def test_logits_of_the_wrong_shape_are_a_clear_error():
    labels = torch.tensor([[I, 1, 2, 3, I]])
    w = (labels != I).float()
    with pytest.raises(ValueError, match="3 loss positions"):
        weighted_masked_nll(torch.randn(5, 7), labels, w)
    with pytest.raises(ValueError, match=r"\[B, L, V\]"):
        weighted_masked_nll(torch.randn(1, 4, 7), labels, w)


def test_ignore_index_is_the_data_layers():
    """losses.py restates IGNORE_INDEX to stay import-free; the two must never drift apart."""
    from tl_lightning import losses
    from tl_lightning.data import batch

    assert losses.IGNORE_INDEX == batch.IGNORE_INDEX


def test_pkt_weights_with_segments_count_each_trajectory_of_a_row_apart():
    """Two trajectories back to back in one row, told apart by segment ids: each (trajectory, step) keeps its own
    counts. Identical copies give the weights of two rows; when the second loses step 2's non-key tokens, its key
    weight is 1 (0/1 clipped) and the first's stays 9, where merged (row, step) counts would give both 11/2 = 5.5."""
    labels, key, step, err = _row()
    two_rows = pkt_weights(*(t.unsqueeze(0).repeat(2, 1) for t in (labels, key, step, err)))
    packed = pkt_weights(*(torch.cat([t, t]).unsqueeze(0) for t in (labels, key, step, err)),
                         segment_ids=torch.tensor([[0] * 24 + [1] * 24]), num_segments=2)
    assert torch.equal(packed.view(2, 24), two_rows)
    labels2 = labels.clone()
    labels2[12:23] = I  # the second trajectory's step 2 has only its key token left: its weight clips to 1
    mixed = pkt_weights(*(torch.cat([a, b]).unsqueeze(0) for a, b in zip((labels, key, step, err), (labels2, key, step, err), strict=True)),
                        segment_ids=torch.tensor([[0] * 24 + [1] * 24]), num_segments=2)
    assert mixed[0, 11].item() == 9.0 and mixed[0, 24 + 11].item() == 1.0
    with pytest.raises(ValueError, match="num_segments"):
        pkt_weights(labels.unsqueeze(0), key.unsqueeze(0), step.unsqueeze(0), err.unsqueeze(0), segment_ids=step.unsqueeze(0))


def test_dropped_step_fraction_hand_computed():
    """_row() has 4 supervised steps; MAE drops step 3: 1/4. A second row without errors: 1/8 over the batch."""
    labels, key, step, err = _row()
    w = pkt_weights(labels.unsqueeze(0), key.unsqueeze(0), step.unsqueeze(0), err.unsqueeze(0))
    assert dropped_step_fraction(labels.unsqueeze(0), step.unsqueeze(0), w).item() == 0.25
    b = [t.unsqueeze(0).repeat(2, 1) for t in (labels, key, step, err)]
    b[3][1] = False
    w2 = pkt_weights(*b)
    assert dropped_step_fraction(b[0], b[2], w2).item() == 0.125
    empty = torch.full((1, 4), I)
    assert dropped_step_fraction(empty, torch.full((1, 4), -1), torch.zeros(1, 4)).item() == 0.0


def test_index_path_equals_the_positions_path():
    """A flat index (what batches carry from collate time) gives the loss, stats and gradient of the mask."""
    torch.manual_seed(0)
    labels, key, step, err = (t.unsqueeze(0).repeat(2, 1) for t in _row())
    w = pkt_weights(labels, key, step, err)
    logits = torch.randn(2, 24, 11, requires_grad=True)
    index = loss_positions(labels, w).reshape(-1).nonzero().squeeze(1)
    a, sa = weighted_masked_nll(logits, labels, w, key_mask=key)
    b, sb = weighted_masked_nll(logits, labels, w, key_mask=key, index=index)
    assert torch.equal(a, b) and all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(ValueError, match=f"{index.numel()} loss positions"):
        weighted_masked_nll(torch.randn(3, 11), labels, w, index=index)


@pytest.mark.parametrize("chunk", [1, 7, 16, 1000])
def test_chunked_nll_equals_the_unchunked_loss_and_gradient(chunk):
    """float32: head + CE in checkpointed chunks == one [N, V] pass, loss and gradients (hidden, head) to 1e-6."""
    torch.manual_seed(0)
    labels, key, step, err = (t.unsqueeze(0).repeat(3, 1) for t in _row())
    w = pkt_weights(labels, key, step, err)
    n = int(loss_positions(labels, w).sum())
    head = torch.nn.Linear(16, 300, bias=False)
    hidden = torch.randn(n, 16, requires_grad=True)
    full, stats_full = weighted_masked_nll(head(hidden), labels, w, key_mask=key)
    g_full = torch.autograd.grad(full, [hidden, head.weight])
    chunked, stats_chunked = weighted_masked_nll(HiddenAtLossPositions(hidden, head, chunk), labels, w, key_mask=key)
    g_chunked = torch.autograd.grad(chunked, [hidden, head.weight])
    torch.testing.assert_close(chunked, full, rtol=0, atol=1e-6)
    for a, b in zip(g_chunked, g_full, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(stats_chunked["nll"], stats_full["nll"], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        chunked_nll(hidden, head, torch.zeros(n, dtype=torch.long), 0)
    with pytest.raises(ValueError, match=f"N = {n} loss positions"):
        weighted_masked_nll(HiddenAtLossPositions(hidden[:-1], head, chunk), labels, w)
