"""The one rollout container of RL, the generation seam, and the scoring of a rollout under the models.

Single-step PPO/GRPO and multi-turn episodes build the same :class:`Rollout`: the ids the policy sampled
(never re-tokenised), where the environment's rewards fall, and the log-probs and values the update needs::

    policy = engine_policy(HFEngine(actor, tokenizer), SamplingSettings(max_new_tokens=48, do_sample=True, stop_strings=("</s>",)))
    out = policy(prompt_ids, seed)                       # GenerationOutput: [B, P+T] ids, [B, T] response mask
    rollout = score_rollout(actor, reference, critic, out.sequences, out.attention_mask, out.response_mask,
                            scores_at_last_token(rewards, out.response_mask), out.texts, temperature=1.0)

The generation engine is a :data:`Policy`: prompt token ids in, completion ids and their mask out (and, from
a serving engine, the log-probs it sampled them with). The RL modules build theirs on a rollout engine
(:mod:`~tl_lightning.rl.engines`: Hugging Face ``generate`` or colocated vLLM); anything that honours the
contract slots in without touching scoring, advantages or the update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel

from tl_lightning.generation import GenerationOutput, sequence_logprobs
from tl_lightning.rl.engines import RolloutEngine, SamplingSettings

__all__ = ["Policy", "Rollout", "engine_policy", "policy_forward", "score_rollout", "scores_at_last_token"]

#: ``policy(prompt_ids, seed) -> GenerationOutput``: one continuation (a response, or one turn of an episode)
#: of each row of prompt token ids, stopping at the end of the turn; ``seed`` None samples from the global RNG.
Policy = Callable[[list[list[int]], int | None], GenerationOutput]


@dataclass
class Rollout:
    """B sampled responses or episodes and what the update needs of them, all detached.

    P: the prompt width (left-padded); T: the width of everything after the prompt (right-padded).

    - ``sequences``: [B, P+T] long, prompt + what followed it: a response, or an episode's turns and observations.
    - ``attention_mask``: [B, P+T] long, 1 on every real token (observations included: the policy reads them).
    - ``response_mask``: [B, T] float, 1 on the tokens the policy sampled (stop tokens included), 0 on
      observations and padding: losses, KL and advantages see only these.
    - ``scores``: [B, T] float32, the environment's rewards at the token they are due, 0 elsewhere: a
      response's reward at its last token; an episode's turn rewards at each turn's last sampled token.
    - ``logprobs`` / ``ref_logprobs``: [B, T] float, log-probs of the tokens under the acting policy / the
      frozen reference; 0 off the response mask.
    - ``values``: [B, T] float32, critic values of the states before each token; 0 off the mask and without a critic.
    - ``texts``: B decoded texts (a response; an episode's last turn), for logs.
    - ``sampling_logprobs``: [B, T] float or None, the rollout engine's own log-probs of the sampled tokens
      (the sampler's side of the sampler-trainer mismatch, :func:`~tl_lightning.rl.engines.sampler_mismatch`);
      0 off the mask. None when the engine was not asked for them.
    """

    sequences: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    scores: Tensor
    logprobs: Tensor
    ref_logprobs: Tensor
    values: Tensor
    texts: list[str]
    sampling_logprobs: Tensor | None = None

    @property
    def response_start(self) -> int:
        """P: the column where every response starts."""
        return self.sequences.shape[1] - self.response_mask.shape[1]

    def select(self, index: Tensor) -> Rollout:
        """The rows ``index`` ([b] long), e.g. a minibatch."""
        tensors = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "texts"}
        return Rollout(
            **{k: None if v is None else v[index] for k, v in tensors.items()}, texts=[self.texts[i] for i in index.tolist()]
        )


def engine_policy(engine: RolloutEngine, sampling: SamplingSettings) -> Policy:
    """A :data:`Policy` that generates with a rollout engine (:mod:`~tl_lightning.rl.engines`): ``sampling``
    for every call, the call's seed for the sampling draws (none when greedy)."""

    def policy(prompt_ids: list[list[int]], seed: int | None) -> GenerationOutput:
        return engine.generate(prompt_ids, dataclasses.replace(sampling, seed=seed if sampling.do_sample else None))

    return policy


def scores_at_last_token(scores: Tensor, response_mask: Tensor) -> Tensor:
    """[B] rewards -> [B, T]: each at its row's last masked token (none for an empty row)."""
    positions = torch.arange(response_mask.shape[1], device=response_mask.device).expand_as(response_mask)
    last = (positions * response_mask.long()).amax(dim=1)
    out = torch.zeros(response_mask.shape, dtype=torch.float32, device=response_mask.device)
    has_tokens = (response_mask.sum(dim=1) > 0).to(out.dtype)
    out[torch.arange(out.shape[0], device=out.device), last] = scores.to(out) * has_tokens
    return out


def policy_forward(
    actor: PreTrainedModel, critic: nn.Module | None, sequences: Tensor, attention_mask: Tensor, start: int,
    temperature: float, entropy: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Log-probs [B, T], values [B, T] of a critic that shares the actor's forward pass (else None), and the
    entropy [B, T] (if asked), in the actor's current mode. A separate critic runs on its own, when the caller wants."""
    shared = getattr(critic, "shares_actor", False)
    out = sequence_logprobs(actor, sequences, attention_mask, start, temperature=temperature, return_entropy=entropy,
                            return_hidden=shared)
    out = out if isinstance(out, tuple) else (out,)
    logprobs, ent = out[0], (out[1] if entropy else None)
    values = critic(sequences, attention_mask, start, hidden=out[-1]) if shared else None
    return logprobs, values, ent


@torch.no_grad()
def score_rollout(
    actor: PreTrainedModel, reference: PreTrainedModel, critic: nn.Module | None, sequences: Tensor, attention_mask: Tensor,
    response_mask: Tensor, scores: Tensor, texts: list[str], temperature: float = 1.0, sampling_logprobs: Tensor | None = None,
) -> Rollout:
    """Score sampled ids under the policy (in eval mode, as it acted), the reference and the critic: a :class:`Rollout`.
    ``sampling_logprobs`` [B, T] (the engine's, if it gave them) are kept alongside, masked."""
    start = sequences.shape[1] - response_mask.shape[1]
    was_training = actor.training
    actor.eval()
    try:
        logprobs, values, _ = policy_forward(actor, critic, sequences, attention_mask, start, temperature)
        if values is None:
            values = critic(sequences, attention_mask, start) if critic is not None else torch.zeros_like(logprobs)
    finally:
        actor.train(was_training)
    ref_logprobs = sequence_logprobs(reference, sequences, attention_mask, start, temperature=temperature)
    mask = response_mask.to(logprobs.dtype)
    sampled = None if sampling_logprobs is None else torch.where(mask.bool(), sampling_logprobs.to(mask), 0.0)
    return Rollout(sequences, attention_mask, mask, scores.float() * mask, logprobs * mask, ref_logprobs * mask,
                   values.float() * mask, list(texts), sampled)
