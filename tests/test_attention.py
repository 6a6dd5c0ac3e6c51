"""``sdpa_varlen`` (tl_lightning/attention.py) against transformers' own sdpa on every kind of input: packed rows with
collate-time segment lengths or with position_ids alone, right-padded rows, left padding and generation (which must
take sdpa's mask unchanged), grouped-query heads; and it never builds a mask for a packed row."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from sft_helpers import hand_trajectories

import tl_lightning.attention as attention
from tl_lightning.attention import SEGMENTS_KWARG, VARLEN_SDPA, model_inputs, segments_from_positions
from tl_lightning.data.batch import collate_encoded
from tl_lightning.data.packing import collate_packed
from tl_lightning.models import load_causal_lm

#: Grouped-query attention (4 query heads share 2 key/value heads), so the enable_gqa path is covered too.
GQA = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
       "intermediate_size": 64}


def _model(attn: str = VARLEN_SDPA, device: str = "cpu"):
    torch.manual_seed(0)
    return load_causal_lm("tl-tiny", tiny_config=GQA, attn_implementation=attn).to(device)


def _items():
    return [hand_trajectories(1, length=n, seed=i, vocab=2000)[0] for i, n in enumerate([24, 40, 31, 21])]


def _to(batch, device: str):
    return dataclasses.replace(batch, **{k: v.to(device) for k, v in vars(batch).items() if torch.is_tensor(v)})


def _real(logits, batch):
    """[B, L, V] logits -> [T, V] at the real tokens, in trajectory order (row-major)."""
    return logits.reshape(-1, logits.shape[-1])[batch.attention_mask.reshape(-1).bool()]


def test_segments_from_positions():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 0, 1, 2]])
    assert segments_from_positions(pos, 2) == [[3, 2, 4], [6, 3]]
    assert segments_from_positions(torch.arange(5)[None], 3) == [[5]] * 3  # unsqueezed, not expanded


CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")])


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_packed_and_padded_rows_equal_sdpa_with_its_masks(device):
    model = _model(device=device)
    items = _items()
    packed = _to(collate_packed([[items[0], items[1]], [items[2], items[3]]], pad_token_id=0), device)
    padded = _to(collate_encoded(items, pad_token_id=0), device)
    assert packed.segment_lengths == [[24, 40], [31, 21]] and padded.segment_lengths == [[24], [40], [31], [21]]
    with torch.no_grad():
        ours_packed = model(**model_inputs(model, packed), use_cache=False).logits
        # No lengths given: read from the position_ids (use_cache=False, or transformers ignores the packing).
        ours_derived = model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).logits
        ours_padded = model(**model_inputs(model, padded), use_cache=False).logits
        model.set_attn_implementation("sdpa")
        ref_packed = model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).logits
        ref_padded = model(input_ids=padded.input_ids, attention_mask=padded.attention_mask, use_cache=False).logits
    close = functools.partial(torch.testing.assert_close, rtol=0, atol=1e-5 if device == "cpu" else 1e-4)
    close(_real(ours_packed, packed), _real(ref_packed, packed))
    close(_real(ours_padded, padded), _real(ref_padded, padded))
    close(_real(ours_packed, packed), _real(ref_padded, padded))
    # Read from the position_ids, the padding tail is one more segment (as transformers' mask has it): all positions.
    close(ours_derived, ref_packed)


def test_gradients_of_a_packed_row_equal_sdpa_with_and_without_checkpointing():
    """Also under activation checkpointing: the recomputed layers get the same segment lengths."""
    items = _items()
    packed = collate_packed([[items[0], items[1], items[2]]], pad_token_id=0)
    grads = {}
    for attn, checkpointing in ((VARLEN_SDPA, False), (VARLEN_SDPA, True), ("sdpa", False)):
        torch.manual_seed(0)
        model = load_causal_lm("tl-tiny", tiny_config=GQA, attn_implementation=attn,
                               gradient_checkpointing=checkpointing)
        logits = model(**model_inputs(model, packed), use_cache=False).logits
        (_real(logits, packed).logsumexp(-1).sum()).backward()
        grads[attn, checkpointing] = [p.grad for p in model.parameters()]
    for ref in (grads[VARLEN_SDPA, True], grads["sdpa", False]):
        for ours, other in zip(grads[VARLEN_SDPA, False], ref, strict=True):
            torch.testing.assert_close(ours, other, rtol=0, atol=1e-5)


def test_a_padding_mask_takes_sdpa_unchanged_left_padding_and_generation():
    ids = torch.randint(10, 2000, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding, as generation pads
    ours, ref = _model(), _model("sdpa")
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids, attention_mask=mask).logits,
                                   ref(input_ids=ids, attention_mask=mask).logits, rtol=0, atol=1e-5)
    kw = {"attention_mask": mask, "max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(ours.generate(ids, **kw), ref.generate(ids, **kw))


def test_no_mask_is_built_for_packed_rows(monkeypatch):
    """The point of sdpa_varlen: a packed row never costs a dense [B, 1, L, L] mask."""
    def no_dense_mask(**kwargs):
        raise AssertionError("sdpa_varlen built a dense mask")

    monkeypatch.setattr(attention, "sdpa_mask", no_dense_mask)
    model = _model()
    items = _items()
    batch = collate_packed([items[:3], items[3:]], pad_token_id=0)
    model(**model_inputs(model, batch), use_cache=False).logits.sum().backward()


def test_segments_must_fit_their_rows():
    model = _model()
    ids = torch.randint(10, 2000, (2, 10))
    with pytest.raises(ValueError, match="do not fit rows of 10 tokens"):
        model(input_ids=ids, **{SEGMENTS_KWARG: [[6, 5], [10]]})
    with pytest.raises(ValueError, match="2 rows"):
        model(input_ids=ids[:1], **{SEGMENTS_KWARG: [[5], [5]]})
