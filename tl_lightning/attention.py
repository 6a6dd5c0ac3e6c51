"""``sdpa_varlen``: scaled-dot-product attention run per trajectory, for packed (and padded) rows without a mask.

    model = load_causal_lm("tl-small-base", attn_implementation="sdpa_varlen")    # TLSFTModule's default
    model(input_ids=ids, position_ids=pos, tl_segment_lengths=[[467, 512, 380], [1201]])

A packed row of several trajectories needs block-diagonal causal attention. Under ``sdpa`` transformers
builds it as a dense ``[B, 1, L, L]`` mask from the restarting ``position_ids``, and an explicit mask makes
SDPA do the full ``L^2`` work (no causal block skipping): a 1536-token row of three 500-token trajectories costs
about 2 x 1536^2 / (3 x 500^2) = 6x the attention of the trajectories alone. Varlen flash-attention avoids this on
GPU; this function does the same with plain SDPA on any device: it splits each row into its trajectories (lengths
known at collate time, so no host sync) and runs ``is_causal=True`` SDPA on each, with no mask tensor at all.

Registered with transformers' ``AttentionInterface`` (the attention) and ``AttentionMaskInterface`` (the
mask) under :data:`VARLEN_SDPA` when this module is imported. The contract, so the model stays exact on any input:

- a forward given ``tl_segment_lengths`` and no padding mask: per-segment causal SDPA (a row's padding tail goes
  with its last segment: causally, no real token attends to it);
- a forward given a padding mask (generation, ``attention_mask=...``): the mask function builds sdpa's own mask
  and the attention is :func:`~transformers.integrations.sdpa_attention.sdpa_attention_forward`, unchanged;
- a forward with neither (a direct ``model(input_ids, position_ids=...)`` call): the segments are read from the
  ``position_ids`` restarts, as transformers would (one host sync per layer: pass the lengths to avoid it);
- sliding-window models and mask overlays (``or``/``and`` mask functions) always take sdpa's dense mask.

On CUDA with flash-attn installed, ``flash_attention_2`` (given the same ``position_ids``) is the faster choice.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

__all__ = ["SEGMENTS_KWARG", "VARLEN_SDPA", "model_inputs", "sdpa_varlen_attention", "segments_from_positions",
           "uses_varlen"]

#: The attention implementation name (``config._attn_implementation``, ``load_causal_lm(attn_implementation=...)``).
VARLEN_SDPA = "sdpa_varlen"

#: The forward keyword that carries the segment lengths: ``list[list[int]]``, per row the token count of each
#: trajectory in order (their sum may be less than the row length: the rest is padding). transformers passes
#: unknown keywords down to the attention function; other implementations ignore it. Prefixed so it can never
#: collide with an argument of a model's own forward.
SEGMENTS_KWARG = "tl_segment_lengths"

#: Attention features the per-segment path does not implement: given any, the call goes to sdpa unchanged.
_UNSUPPORTED = ("softcap", "position_bias", "s_aux", "sinks")


def segments_from_positions(position_ids: Tensor, batch_size: int) -> list[list[int]]:
    """Per-row run lengths of ``position_ids`` [B or 1, L]: a new run wherever the position does not go up by 1
    (as ``transformers.masking_utils.find_packed_sequence_indices`` reads them). A host sync: the fallback only."""
    pos = position_ids.expand(batch_size, -1).cpu()
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[:, 1:] = pos[:, 1:] - pos[:, :-1] != 1
    segments = []
    for row in starts:
        edges = [*row.nonzero().squeeze(1).tolist(), row.numel()]
        segments.append([b - a for a, b in zip(edges[:-1], edges[1:], strict=True)])
    return segments


def _per_segment(query: Tensor, key: Tensor, value: Tensor, segments: list[list[int]], dropout: float,
                 scaling: float | None, gqa: bool) -> Tensor:
    """query [B, Hq, L, D], key/value [B, Hkv, L, D] -> [B, L, Hq, Dv]: causal attention inside each segment.

    A row's last segment takes the padding tail with it: the tail comes after every real token of the row, so
    under causal attention no real token sees it (its own outputs carry no loss). A batch of one segment per row
    (a padded batch) is thus a single causal SDPA call, as sdpa makes for a batch without padding; other rows are
    split. Every call gets 4-D [1, H, n, D] inputs: the fused CPU kernel takes only 4-D (3-D falls back to the math
    kernel, ~2x slower); ``split`` rather than indexing, so the backward assembles each input gradient with one
    concatenation instead of one zero-filled full-size tensor per slice."""
    batch, _, length = query.shape[:3]
    if len(segments) != batch:
        raise ValueError(f"{SEGMENTS_KWARG}: {len(segments)} rows of segment lengths for a batch of {batch}")
    if any(sum(lengths) > length or min(lengths, default=0) < 1 for lengths in segments):
        raise ValueError(f"{SEGMENTS_KWARG}: segments {segments} do not fit rows of {length} tokens")

    def causal(q: Tensor, k: Tensor, v: Tensor) -> Tensor:  # [b, H, n, D] -> [b, n, H, Dv], transformers' layout
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling,
                                              enable_gqa=gqa).transpose(1, 2)

    if all(len(lengths) == 1 for lengths in segments):
        return causal(query, key, value)
    rows = []
    for lengths, q, k, v in zip(segments, query.split(1), key.split(1), value.split(1), strict=True):
        sizes = [*lengths[:-1], length - sum(lengths[:-1])]
        parts = [causal(*qkv) for qkv in zip(q.split(sizes, 2), k.split(sizes, 2), v.split(sizes, 2), strict=True)]
        rows.append(torch.cat(parts, 1) if len(parts) > 1 else parts[0])
    return torch.cat(rows) if len(rows) > 1 else rows[0]


def sdpa_varlen_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' attention-function signature: query [B, Hq, L, D], key/value [B, Hkv, S, D] ->
    ([B, L, Hq, Dv], None). Per-segment causal SDPA when the call has no mask, else sdpa as is (module doc)."""
    segments = kwargs.pop(SEGMENTS_KWARG, None)
    causal = kwargs.get("is_causal")
    causal = getattr(module, "is_causal", True) if causal is None else causal
    varlen = (
        attention_mask is None
        and causal
        and query.shape[2] == key.shape[2] > 1  # not decoding against a cache
        and not any(kwargs.get(name) is not None for name in _UNSUPPORTED)
    )
    if varlen and segments is None and kwargs.get("position_ids") is not None:
        segments = segments_from_positions(kwargs["position_ids"], query.shape[0])
    if not varlen or segments is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    window = kwargs.get("sliding_window")
    if window is not None and max(max(s, default=0) for s in segments) > window:
        # The mask function leaves sliding-window models to sdpa_mask, which drops the window only for rows shorter
        # than it; a longer segment here means a caller bypassed that, and plain causal attention would be wrong.
        raise ValueError(f"{VARLEN_SDPA}: a segment is longer than the model's sliding window ({window}); "
                         "pass the attention_mask (sdpa's dense sliding mask) or use flash_attention_2")
    gqa = query.shape[1] != key.shape[1]
    return _per_segment(query, key, value, segments, dropout, scaling, gqa), None


def _varlen_mask(**kwargs: Any) -> Tensor | None:
    """The mask function of :data:`VARLEN_SDPA`: no mask for a row without padding (plain causal or packed: the
    attention splits it), else exactly sdpa's (padding, sliding windows, mask overlays)."""
    if kwargs.get("attention_mask") is None and kwargs.get("local_size") is None and not kwargs.get("use_vmap"):
        return None
    return sdpa_mask(**kwargs)


def uses_varlen(model: nn.Module) -> bool:
    """Whether ``model`` (an HF model, or a peft/FSDP wrapper forwarding ``config``) attends with :data:`VARLEN_SDPA`."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == VARLEN_SDPA


def model_inputs(model: nn.Module, batch: Any) -> dict[str, Any]:
    """The forward keywords for a :class:`~tl_lightning.data.batch.TrajectoryBatch` (duck-typed: ``input_ids``,
    ``attention_mask``, ``position_ids`` and ``segment_lengths``).

    Under :data:`VARLEN_SDPA` every batch, padded or packed, goes without a mask and with its segment lengths (right
    padding is a row's tail, so a padded row is one segment). Otherwise packed rows pass ``position_ids`` and no
    mask (transformers builds the block-diagonal mask from the restarts), padded rows their ``attention_mask``.
    """
    inputs = {"input_ids": batch.input_ids, "position_ids": batch.position_ids}
    if uses_varlen(model) and batch.segment_lengths:
        inputs[SEGMENTS_KWARG] = batch.segment_lengths
    else:
        inputs["attention_mask"] = batch.attention_mask if batch.position_ids is None else None
    return inputs


AttentionInterface.register(VARLEN_SDPA, sdpa_varlen_attention)
AttentionMaskInterface.register(VARLEN_SDPA, _varlen_mask)
