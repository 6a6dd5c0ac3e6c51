"""Trajectory -> one token sequence with labels, MAE error mask, PKT key-token mask and step ids.

One pass per trajectory: the template renders the whole trajectory once with character spans
(:mod:`tl_lightning.data.templates`), the fast tokenizer tokenizes it once with an offset
mapping, and every token is assigned to a span with ``searchsorted`` (no Python loop over
tokens). The official code instead re-encodes one sample per assistant turn (O(turns²) tokens);
the per-token masks here give the same loss on fewer tokens (docs/method.md#sft-mae-and-pkt, MAE).

Rules (one per segment kind):

- A token is **supervised** iff its character span overlaps a supervised segment (an assistant
  step's calls or the final answer, with the end-of-turn string). Token spans tile the text
  (:func:`token_spans`: whitespace a tokenizer trims from its offsets belongs to its token);
  zero-width tokens (an added BOS) are never supervised. ``labels`` holds its id there, ``IGNORE_INDEX`` elsewhere; ``step_ids`` holds
  the step index (final answer = ``len(traj.steps)``), -1 elsewhere.
- ``error_mask``: supervised tokens of steps whose category is an error (by default every
  category except ``all_right``; ``error_categories`` narrows it). A step with feedback but no
  category is classified from its feedback (:func:`tl_lightning.data.feedback.step_is_error`).
- ``key_mask`` (docs/method.md#sft-mae-and-pkt, PKT): for each supervised call, (a) the token holding the name's
  first character; (b) for every *other* tool name shown by the template that shares a
  non-empty prefix with the called name, the token holding the first differing character of
  the called name; when the called name is a strict prefix of the other name, that is the
  character right after the name, counted only if it lies inside the supervised segment.
  Hallucinated (undefined) names get (a) and (b) too, and so do calls of erroneous steps: the
  loss decides whether MAE zeroes them. ``finish`` counts as a tool name when the template shows
  it (``python_doc``/``react`` add it when missing); in ``chat_template`` the final answer is
  plain text and has no key tokens.
- Truncation: when the sequence exceeds ``max_length`` it is cut right after the last
  supervised segment that fits entirely (a complete step, end-of-turn included), and flagged
  ``truncated``. If not even the first supervised segment fits, :class:`TrajectoryTooLong` is raised.

A chat template that re-renders earlier turns (Qwen3's reasoning, Mistral's system prompt) trains on
several sequences per trajectory, each turn against its own generation-time context
(:meth:`~tl_lightning.data.chat_template.ChatTemplate.render_sequences`): :func:`encode_trajectory_sequences`
and :func:`encode_sequences` give them all, with the same rules per sequence (a later sequence that does
not fit in ``max_length`` ends the trajectory there). :func:`encode_trajectory` keeps to one sequence.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from tl_lightning.data.batch import IGNORE_INDEX, EncodedTrajectory
from tl_lightning.data.feedback import step_is_error
from tl_lightning.data.schema import FeedbackCategory, Trajectory
from tl_lightning.data.template_base import Rendered, Template, TemplateError
from tl_lightning.data.templates import get_template
from tl_lightning.tokenization import require_fast, tokenize_batch_with_offsets, tokenize_with_offsets

__all__ = [
    "EncodeError",
    "TrajectoryTooLong",
    "encode_sequences",
    "encode_trajectories",
    "encode_trajectory",
    "encode_trajectory_sequences",
    "token_spans",
]


class EncodeError(ValueError):
    """A trajectory that cannot be encoded (nothing supervised, or too long)."""


class TrajectoryTooLong(EncodeError):
    """Not even the first supervised step fits in ``max_length`` tokens."""

    def __init__(self, traj_id: str, needed: int, max_length: int):
        self.traj_id, self.needed, self.max_length = traj_id, needed, max_length
        super().__init__(f"trajectory {traj_id}: its first supervised step ends at token {needed} > max_length={max_length}")


def _key_char_positions(rendered: Rendered, seg_start: np.ndarray, seg_end: np.ndarray) -> list[int]:
    """Character positions of PKT key tokens (rules (a) and (b) in the module docstring)."""
    positions: list[int] = []
    for span in rendered.names:
        seg = int(np.searchsorted(seg_end, span.start, side="right"))
        limit = int(seg_end[seg]) if seg < len(seg_end) else span.end
        positions.append(span.start)
        for other in rendered.tool_names:
            if other == span.name:
                continue
            shared = len(os.path.commonprefix([span.name, other]))
            if shared and span.start + shared < limit:
                positions.append(span.start + shared)
    return positions


def encode_trajectory(
    traj: Trajectory,
    tokenizer,
    template: str | Template = "python_doc",
    max_length: int | None = None,
    error_categories: Iterable[FeedbackCategory | str] | None = None,
) -> EncodedTrajectory:
    """Encode ``traj`` as one sequence; every tensor of the result is 1-D, aligned with ``input_ids``.

    Raises :class:`TrajectoryTooLong` when the first supervised step does not fit in
    ``max_length`` and :class:`EncodeError` when nothing is supervised.
    """
    require_fast(tokenizer)
    template = get_template(template)
    cats = None if error_categories is None else frozenset(FeedbackCategory(c) for c in error_categories)
    rendered = _render_checked(traj, tokenizer, template)
    ids, offsets = tokenize_with_offsets(rendered.text, tokenizer)
    return _assemble(traj, rendered, ids, offsets, max_length, cats)


def encode_trajectories(
    trajs: Iterable[Trajectory],
    tokenizer,
    template: str | Template = "python_doc",
    max_length: int | None = None,
    error_categories: Iterable[FeedbackCategory | str] | None = None,
    chunk_size: int = 256,
) -> Iterator[EncodedTrajectory | EncodeError | TemplateError]:
    """:func:`encode_trajectory` over many trajectories, tokenizing ``chunk_size`` texts per call.

    Yields, in order, one result per trajectory: the encoding, or the :class:`EncodeError` /
    :class:`TemplateError` that trajectory raised (so a caller can skip and count it).
    """
    template = get_template(template)
    whole = _encode_chunked(trajs, tokenizer, template, max_length, error_categories, chunk_size,
                            lambda traj: [template.render(traj, tokenizer)])
    for out in whole:
        yield out if isinstance(out, Exception) else out[0]


def encode_trajectory_sequences(
    traj: Trajectory,
    tokenizer,
    template: str | Template = "python_doc",
    max_length: int | None = None,
    error_categories: Iterable[FeedbackCategory | str] | None = None,
) -> list[EncodedTrajectory]:
    """Every sequence that trains on ``traj`` (one, unless the template renders turn by turn), encoded.

    Raises :class:`TrajectoryTooLong` when the first sequence's first supervised step does not fit.
    """
    out = next(encode_sequences([traj], tokenizer, template, max_length, error_categories))
    if isinstance(out, Exception):
        raise out
    return out


def encode_sequences(
    trajs: Iterable[Trajectory],
    tokenizer,
    template: str | Template = "python_doc",
    max_length: int | None = None,
    error_categories: Iterable[FeedbackCategory | str] | None = None,
    chunk_size: int = 256,
) -> Iterator[list[EncodedTrajectory] | EncodeError | TemplateError]:
    """:func:`encode_trajectory_sequences` over many trajectories, tokenizing ``chunk_size`` trajectories' texts
    per call. Yields, in order, per trajectory its sequences or the error it raised."""
    template = get_template(template)
    yield from _encode_chunked(trajs, tokenizer, template, max_length, error_categories, chunk_size,
                               lambda traj: template.render_sequences(traj, tokenizer))


def _encode_chunked(
    trajs: Iterable[Trajectory], tokenizer, template: Template, max_length: int | None,
    error_categories: Iterable[FeedbackCategory | str] | None, chunk_size: int,
    render: Callable[[Trajectory], list[Rendered]],
) -> Iterator[list[EncodedTrajectory] | EncodeError | TemplateError]:
    """Per trajectory, the encodings of the sequences ``render`` gives it (or the error it raised), with
    ``chunk_size`` trajectories' texts tokenized per call."""
    require_fast(tokenizer)
    cats = None if error_categories is None else frozenset(FeedbackCategory(c) for c in error_categories)
    trajs = list(trajs)
    for lo in range(0, len(trajs), chunk_size):
        chunk = trajs[lo : lo + chunk_size]
        rendered: list[list[Rendered] | Exception] = []
        for traj in chunk:
            try:
                _check_readable(traj, tokenizer, template)
                seqs = render(traj)
                if not any(r.supervised for r in seqs):
                    raise EncodeError(f"trajectory {traj.id}: no supervised step (no tool call and no final answer)")
                rendered.append(seqs)
            except (EncodeError, TemplateError) as e:
                rendered.append(e)
        texts = [r.text for seqs in rendered if not isinstance(seqs, Exception) for r in seqs]
        tokens = iter(tokenize_batch_with_offsets(texts, tokenizer))
        for traj, seqs in zip(chunk, rendered, strict=True):
            if isinstance(seqs, Exception):
                yield seqs
                continue
            encoded: list[EncodedTrajectory] = []
            error: EncodeError | None = None
            for r in seqs:
                ids, offsets = next(tokens)
                if error is not None or (encoded and encoded[-1].truncated):
                    continue  # a later sequence never trains when an earlier one was cut
                try:
                    encoded.append(_assemble(traj, r, ids, offsets, max_length, cats))
                except TrajectoryTooLong as e:
                    if not encoded:
                        error = e
                    else:  # its context outgrew max_length: the trajectory ends with the sequences before it
                        encoded[-1].truncated = True
                except EncodeError as e:
                    error = e
            yield error if error is not None else encoded


def token_spans(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Character spans ``[start, end)`` of tokens that tile the text: each starts where the previous ends.

    Byte-level tokenizers with ``trim_offsets=True`` (GPT-2 style) report a token's offsets without
    its leading whitespace, so a lone-space token gets an empty span (``(11, 11)`` for the space
    at 10) and would drop out of the supervised text. Giving every token the characters since the
    previous token's end restores them; added prefix tokens (BOS) stay empty at position 0.
    """
    end = np.maximum.accumulate(offsets[:, 1]) if len(offsets) else offsets[:, 1]
    start = np.concatenate([np.zeros(1, dtype=end.dtype), end[:-1]]) if len(end) else end
    return start, end


def _check_readable(traj: Trajectory, tokenizer, template: Template) -> None:
    try:  # a tool or call the template cannot write so that its parser reads it back is refused, not trained on
        template.check_readable(template.shown_tools(traj), [c for s in traj.steps for c in s.calls], tokenizer)
    except TemplateError as e:
        raise TemplateError(f"trajectory {traj.id}: {e}") from None


def _render_checked(traj: Trajectory, tokenizer, template: Template) -> Rendered:
    _check_readable(traj, tokenizer, template)
    rendered = template.render(traj, tokenizer)
    if not rendered.supervised:
        raise EncodeError(f"trajectory {traj.id}: no supervised step (no tool call and no final answer)")
    return rendered


def _assemble(
    traj: Trajectory,
    rendered: Rendered,
    ids: np.ndarray,
    offsets: np.ndarray,
    max_length: int | None,
    cats: frozenset[FeedbackCategory] | None,
) -> EncodedTrajectory:
    """Labels and masks of one tokenized rendering (the vectorised core of :func:`encode_trajectory`)."""
    sup = rendered.supervised
    seg_start = np.asarray([s.start for s in sup], dtype=np.int64)
    seg_end = np.asarray([s.end for s in sup], dtype=np.int64)
    seg_step = np.asarray([s.step for s in sup], dtype=np.int64)
    seg_error = np.asarray([s.step < len(traj.steps) and step_is_error(traj.steps[s.step], cats) for s in sup], dtype=bool)

    tok_start, tok_end = token_spans(offsets)

    # Segment of each token: the first supervised segment ending after the token starts; it overlaps iff it starts before the token ends.
    seg = np.searchsorted(seg_end, tok_start, side="right")
    seg_c = np.minimum(seg, len(sup) - 1)
    supervised = (seg < len(sup)) & (seg_start[seg_c] < tok_end) & (tok_end > tok_start)

    labels = np.where(supervised, ids, IGNORE_INDEX)
    step_ids = np.where(supervised, seg_step[seg_c], -1)
    error_mask = supervised & seg_error[seg_c]

    key_mask = np.zeros(len(ids), dtype=bool)
    chars = np.asarray(_key_char_positions(rendered, seg_start, seg_end), dtype=np.int64)
    if chars.size:
        tok = np.searchsorted(tok_end, chars, side="right")  # first token ending after the character
        tok = tok[tok < len(ids)]
        key_mask[tok] = True
        key_mask &= supervised  # a character inside a zero-width or unsupervised token marks nothing

    n, truncated, num_steps = len(ids), False, len(traj.steps)
    if max_length is not None and n > max_length:
        # Token count up to the end of each supervised segment: tokens starting before it ends.
        ends = np.searchsorted(tok_start, seg_end, side="left")
        fits = np.nonzero(ends <= max_length)[0]
        if fits.size == 0:
            raise TrajectoryTooLong(traj.id, int(ends[0]), max_length)
        last = int(fits[-1])
        n, truncated = int(ends[last]), True
        # Steps kept whole: a step split over several segments (one per call) counts once its last one fits.
        partial = last + 1 < len(seg_step) and seg_step[last + 1] == seg_step[last]
        num_steps = int(min(seg_step[last] + (not partial), len(traj.steps)))

    def t(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[:n])).to(dtype)

    return EncodedTrajectory(
        input_ids=t(ids, torch.long),
        labels=t(labels, torch.long),
        error_mask=t(error_mask, torch.bool),
        key_mask=t(key_mask, torch.bool),
        step_ids=t(step_ids, torch.long),
        id=traj.id,
        num_steps=num_steps,
        truncated=truncated,
    )
