"""Batched generation that stops at the end of a turn, and log-probs of the generated tokens.

Used by PPO rollouts and by the evaluation test stage::

    out = generate(model, tokenizer, prompts, max_new_tokens=64, stop_token_ids=[eot_id])
    out.texts            # what the model said this turn, stop token excluded
    out.response_mask    # [B, T]: 1 up to and including the stop token

Prompts are left-padded so every row's response starts at the same column ``P``; generation
uses HF ``model.generate`` (KV cache on by default; ``use_cache=False`` exists so the benchmark can
measure what the cache buys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from tl_lightning.tokenization import tokenize_with_offsets

__all__ = [
    "GenerationOutput", "finish_output", "generate", "left_padded", "pad_id", "position_ids_from_mask", "response_mask_from_stops",
    "sequence_logprobs", "stop_rules", "tokenize_prompts",
]


@dataclass
class GenerationOutput:
    """The result of :func:`generate` for B prompts, padded to P prompt and T response columns.

    - ``sequences``: [B, P+T] token ids, prompt left-padded, response right-padded.
    - ``prompt_mask``: [B, P] 1 on real prompt tokens (0 on left padding).
    - ``response_mask``: [B, T] 1 on generated tokens up to and including the stop token.
    - ``stopped``: [B] bool, True where the row ended on a stop token (False: hit ``max_new_tokens``).
    - ``texts``: the decoded responses without the stop token.
    - ``logprobs``: [B, T] float32 or None, the log-prob each response token had in the distribution it was
      sampled from (temperature, top-k and top-p applied; 0 beyond ``response_mask``). Only when asked for
      (``return_logprobs``) or from a rollout engine: the sampler's side of the sampler-trainer mismatch.
    """

    sequences: Tensor
    prompt_mask: Tensor
    response_mask: Tensor
    stopped: Tensor
    texts: list[str]
    logprobs: Tensor | None = None

    @property
    def prompt_length(self) -> int:
        """P: the column where every response starts."""
        return self.prompt_mask.shape[1]

    @property
    def responses(self) -> Tensor:
        """[B, T] the generated ids (padding beyond ``response_mask``)."""
        return self.sequences[:, self.prompt_length :]

    @property
    def attention_mask(self) -> Tensor:
        """[B, P+T] 1 on real tokens of prompt and response."""
        return torch.cat([self.prompt_mask, self.response_mask.to(self.prompt_mask.dtype)], dim=1)

    @property
    def response_lengths(self) -> Tensor:
        """[B] number of valid response tokens (stop token included)."""
        return self.response_mask.sum(dim=1)


def response_mask_from_stops(responses: Tensor, stop_token_ids: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Mask [B, T] of tokens up to and including the first stop token of each row, and ``stopped`` [B].

    Everything after the first stop token is HF's padding (which may be the same id as the stop
    token, e.g. LLaMA pads with eos), so only the first one counts.
    """
    if not stop_token_ids:
        return torch.ones_like(responses, dtype=torch.long), torch.zeros(responses.shape[0], dtype=torch.bool)
    is_stop = torch.isin(responses, torch.tensor(list(stop_token_ids), device=responses.device)).long()
    stops_before = is_stop.cumsum(dim=1) - is_stop
    return (stops_before == 0).long(), is_stop.any(dim=1)


def _stop_ids(tokenizer: PreTrainedTokenizerBase, stop_token_ids: Sequence[int] | None, stop_strings) -> list[int]:
    ids = list(stop_token_ids) if stop_token_ids is not None else []
    # A stop "string" that is one token of the vocabulary (e.g. "<|im_end|>") is better handled as an id:
    # the mask then ends exactly on it. Multi-token strings go to HF's string stopping criteria.
    for s in stop_strings or ():
        tid = tokenizer.convert_tokens_to_ids(s)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in ids:
            ids.append(tid)
    if not ids and stop_token_ids is None and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def stop_rules(
    tokenizer: PreTrainedTokenizerBase, stop_token_ids: Sequence[int] | None, stop_strings: Sequence[str] | None
) -> tuple[list[int], list[str]]:
    """The stop ids (``stop_token_ids``, the one-token ``stop_strings``, else eos) and the multi-token stop
    strings, as :func:`generate` applies them; every rollout engine stops by these same rules."""
    ids = _stop_ids(tokenizer, stop_token_ids, stop_strings)
    return ids, [s for s in (stop_strings or ()) if tokenizer.convert_tokens_to_ids(s) not in ids]


def _truncate_at_strings(
    tokenizer: PreTrainedTokenizerBase, responses: Tensor, mask: Tensor, strings: list[str]
) -> tuple[Tensor, Tensor]:
    """End each row's mask at the first token whose prefix decodes to text containing a stop string.

    "Prefix contains the string" is monotone in the prefix length, so a binary search needs
    O(log T) decodes per row instead of T.
    """
    mask, stopped = mask.clone(), torch.zeros(responses.shape[0], dtype=torch.bool)
    for b in range(responses.shape[0]):
        n = int(mask[b].sum())
        ids = responses[b, :n].tolist()

        def hit(k: int, ids=ids) -> bool:
            text = tokenizer.decode(ids[:k], skip_special_tokens=False)
            return any(s in text for s in strings)

        if n == 0 or not hit(n):
            continue
        lo, hi = 1, n
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if hit(mid) else (mid + 1, hi)
        mask[b, lo:] = 0
        stopped[b] = True
    return mask, stopped


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def tokenize_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
    """Tokenize as training encodes (:func:`~tl_lightning.tokenization.tokenize_with_offsets`: the
    tokenizer's BOS prefix unless the text already starts with it). A prompt tokenized differently
    from its training text would shift every id the model conditions on."""
    if add_special_tokens:
        return [tokenize_with_offsets(p, tokenizer)[0].tolist() for p in prompts]
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def left_padded(tokenizer: PreTrainedTokenizerBase, rows: Sequence[Sequence[int]], max_prompt_length: int | None) -> tuple[Tensor, Tensor]:
    """Left-pad token-id rows: [B, P] ids and mask."""
    lengths = [len(r) for r in rows]
    if max_prompt_length is not None and max(lengths) > max_prompt_length:
        too_long = [i for i, n in enumerate(lengths) if n > max_prompt_length]
        raise ValueError(f"prompts {too_long} are longer than max_prompt_length={max_prompt_length} tokens")
    if min(lengths) == 0:
        raise ValueError(f"prompt {lengths.index(0)} tokenizes to nothing")
    width = max(lengths)
    ids = torch.full((len(rows), width), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int = 128,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    stop_token_ids: Sequence[int] | None = None,
    stop_strings: Sequence[str] | None = None,
    use_cache: bool = True,
    add_special_tokens: bool = True,
    max_prompt_length: int | None = None,
    skip_special_tokens: bool = True,
    seed: int | None = None,
    prompt_ids: Sequence[Sequence[int]] | None = None,
    return_logprobs: bool = False,
) -> GenerationOutput:
    """Continue each prompt until a stop token/string or ``max_new_tokens``; greedy unless ``do_sample``.

    ``stop_token_ids`` are the end-of-turn ids (default: the tokenizer's eos). ``stop_strings`` that
    are single vocabulary tokens are treated as ids; longer ones stop generation through HF's
    string criteria and end the mask on the token that completes the string. Prompts are tokenized
    exactly as training encodes trajectories (the tokenizer's BOS prefix, unless the text already
    starts with it; ``add_special_tokens=False`` tokenizes the text bare); a prompt longer than
    ``max_prompt_length`` tokens is an error rather than a silent cut of its beginning. ``seed`` makes
    sampling reproducible (the same seed, prompts and weights give the same samples) without touching
    the global random state that dropout and data shuffling draw from.

    ``prompt_ids`` (with ``prompts=[]``) continues token-id rows as they are, never re-tokenised from
    text: a multi-turn rollout's context is the ids the policy sampled plus observation ids.
    ``return_logprobs`` fills ``logprobs`` from HF's processed scores (what the sampler drew from).
    """
    if prompt_ids is not None and prompts:
        raise ValueError("generate(): pass prompts or prompt_ids, not both")
    rows = list(prompt_ids) if prompt_ids is not None else tokenize_prompts(tokenizer, prompts, add_special_tokens)
    if not rows:
        raise ValueError("generate() needs at least one prompt")
    stop_ids, long_strings = stop_rules(tokenizer, stop_token_ids, stop_strings)
    input_ids, prompt_mask = left_padded(tokenizer, rows, max_prompt_length)
    device = next(model.parameters()).device
    input_ids, prompt_mask = input_ids.to(device), prompt_mask.to(device)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None,
        top_k=top_k if do_sample else None,
        eos_token_id=stop_ids or None,
        pad_token_id=pad_id(tokenizer),
        use_cache=use_cache,
        stop_strings=long_strings or None,
        return_dict_in_generate=return_logprobs,
        output_scores=return_logprobs,
    )
    was_training = model.training
    model.eval()  # dropout off while acting; PPO recomputes log-probs in the same mode
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            out = model.generate(
                input_ids=input_ids,
                attention_mask=prompt_mask,
                generation_config=config,
                tokenizer=tokenizer if long_strings else None,
            )
    finally:
        model.train(was_training)
    sequences = out.sequences if return_logprobs else out
    responses = sequences[:, input_ids.shape[1] :]
    logprobs = None
    if return_logprobs:
        # scores[t]: [B, V] logits after the processors and warpers of step t, i.e. what was sampled from;
        # gathered step by step, so no [B, T, V] float32 copy is made
        logprobs = torch.stack([
            F.log_softmax(s.float(), dim=-1).gather(-1, responses[:, t, None]).squeeze(-1) for t, s in enumerate(out.scores)
        ], dim=1)
    response_mask, by_token = response_mask_from_stops(responses, stop_ids)
    return finish_output(
        tokenizer, sequences, prompt_mask, response_mask, by_token, long_strings, skip_special_tokens, logprobs
    )


def finish_output(
    tokenizer: PreTrainedTokenizerBase, sequences: Tensor, prompt_mask: Tensor, response_mask: Tensor, by_token: Tensor,
    long_strings: Sequence[str], skip_special_tokens: bool = True, logprobs: Tensor | None = None,
) -> GenerationOutput:
    """The :class:`GenerationOutput` of generated ``sequences`` [B, P+T] whose ``response_mask`` [B, T] ends on
    each row's first stop token (``by_token`` [B]: the row has one): multi-token stop strings cut the rows
    shorter, and the texts are decoded. Shared by every rollout engine, so they apply the same stop rules."""
    device = sequences.device
    responses = sequences[:, prompt_mask.shape[1] :]
    stopped = by_token.cpu()
    if long_strings:
        response_mask, by_string = _truncate_at_strings(tokenizer, responses, response_mask, list(long_strings))
        # a string completed before the first stop token ends the row there instead
        by_token = by_token.cpu() & ~by_string
        stopped = stopped | by_string
    response_mask = response_mask.to(device)
    texts = []
    for b in range(responses.shape[0]):
        n = int(response_mask[b].sum()) - int(by_token[b])
        text = tokenizer.decode(responses[b, :n], skip_special_tokens=skip_special_tokens)
        for s in long_strings:  # a completed stop string is not part of the answer
            text = text.split(s)[0] if s in text else text
        texts.append(text)
    if logprobs is not None:  # where, not a product: a padding position may hold -inf (top-k/top-p cut it)
        logprobs = torch.where(response_mask.bool(), logprobs.float().to(device), 0.0)
    return GenerationOutput(sequences, prompt_mask, response_mask, stopped.to(device), texts, logprobs)


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids that start at 0 on each row's first real token, as ``generate`` uses with left padding."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def sequence_logprobs(
    model: PreTrainedModel,
    sequences: Tensor,
    attention_mask: Tensor,
    response_start: int,
    temperature: float = 1.0,
    return_entropy: bool = False,
    return_hidden: bool = False,
) -> Tensor | tuple[Tensor, ...]:
    """``log p(token)`` of every response token: [B, T] with ``T = L - response_start``.

    Only the logits that predict response tokens are materialised (``logits_to_keep=T+1``), so a
    full [B, L, V] float32 copy is never made. Position ids follow the left padding exactly as
    ``generate`` did, so an unchanged model reproduces the rollout's log-probs.

    Extras, appended in this order to make a tuple ``(logprobs, ...)``:

    - ``return_entropy``: the per-token entropy [B, T] of the predictive distribution;
    - ``return_hidden``: the last layer's hidden states [B, L, H] of the same forward pass (a value
      head on a shared backbone reads them, so one forward gives both policy and values).
    """
    num_response = sequences.shape[1] - response_start
    if num_response <= 0:
        raise ValueError(f"response_start={response_start} leaves no response tokens in length {sequences.shape[1]}")
    out = model(
        input_ids=sequences,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        output_hidden_states=return_hidden,
        logits_to_keep=num_response + 1,
    )
    logits = out.logits[:, :-1].float()  # position p predicts token p+1
    if temperature != 1.0:
        logits = logits / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    targets = sequences[:, response_start:]
    logprobs = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    extras: list[Tensor] = []
    if return_entropy:
        extras.append(-(logp_all.exp() * logp_all).sum(dim=-1))
    if return_hidden:
        extras.append(out.hidden_states[-1])
    return (logprobs, *extras) if extras else logprobs
