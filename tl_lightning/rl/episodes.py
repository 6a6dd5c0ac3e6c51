"""Multi-turn RL episodes in the sandbox, token-in/token-out, with a reward per call.

    traces = run_episodes(policy, tokenizer, template, tasks, EpisodeSettings(max_turns=9))
    sequences, attention_mask, response_mask, scores = episode_tensors(traces, pad_id)   # -> score_rollout
    sampling_logprobs = episode_logprobs(traces)          # the engine's log-probs of the sampled ids, if it gave them

The loop (one :class:`~tl_lightning.evaluation.multiturn.Episode` per task, the evaluation's own rules and
environment): the policy generates a turn for every unfinished episode at once -> its text is parsed and
executed -> the feedback is rendered by the same template as training -> repeat until ``finish``, an
unparseable turn, ``max_turns`` or the context bound.

Token-in/token-out: an episode is one growing list of token ids. The ids the policy sampled (its end-of-turn
token included) are appended as sampled and are what training scores; only the observation (tool feedback
and the next ``Assistant:`` opener, as the template renders them) is tokenised from text, on its own, and
appended as ids with mask 0. Decoding the episode and re-encoding it can give other ids (a sampled
non-canonical split of a word, merges across a turn boundary): that is never done.

Rewards (``EpisodeSettings``): each turn's calls get ``category_rewards[category]`` of their real feedback
(an unparseable turn counts as ``unparseable``), summed at that turn's last generated token; the episode's
last generated token also gets ``success_bonus`` if the task's success check passes, and
``max_turns_penalty`` if ``max_turns`` ran out without ``finish``. Each component is kept for logging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from tl_lightning.data.cases import MultiTurnTask
from tl_lightning.data.template_base import Template
from tl_lightning.evaluation.multiturn import Episode, EpisodeResult
from tl_lightning.generation import tokenize_prompts
from tl_lightning.rl.rewards import turn_reward
from tl_lightning.rl.rollout import Policy

__all__ = ["EpisodeSettings", "EpisodeTrace", "episode_logprobs", "episode_tensors", "observation_text", "run_episodes"]


@dataclass(frozen=True)
class EpisodeSettings:
    """How episodes run and are rewarded (see the module docstring)."""

    max_turns: int = 9
    max_context: int = 2048
    max_new_tokens: int = 64
    category_rewards: dict[str, float] | None = None
    success_bonus: float = 2.0
    max_turns_penalty: float = -1.0
    env_seed: int = 0


@dataclass
class EpisodeTrace:
    """One episode as token ids. ``ids`` is everything after the first prompt, in order.

    - ``prompt_ids``: the first prompt (template-rendered, tokenised once, with BOS).
    - ``ids`` / ``sampled``: the episode's ids and a 0/1 list of the same length, 1 where the policy sampled the id.
    - ``logprobs``: the same length, the sampler's log-prob of each sampled id (0 on observations); None once a
      turn came without them.
    - ``rewards``: ``(index into ids, reward)``, each at a turn's last sampled id.
    - ``components``: the summed rewards by kind (``calls``, ``success``, ``max_turns``).
    """

    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)
    sampled: list[int] = field(default_factory=list)
    logprobs: list[float] | None = field(default_factory=list)
    rewards: list[tuple[int, float]] = field(default_factory=list)
    components: dict[str, float] = field(default_factory=lambda: {"calls": 0.0, "success": 0.0, "max_turns": 0.0})
    truncated: bool = False
    result: EpisodeResult | None = None

    def append(self, ids: Sequence[int], sampled: bool, logprobs: Sequence[float] | None = None) -> None:
        self.ids += list(ids)
        self.sampled += [int(sampled)] * len(ids)
        if self.logprobs is None or (sampled and logprobs is None):
            self.logprobs = None  # one turn without them: the episode has none
        else:
            self.logprobs += list(logprobs) if sampled else [0.0] * len(ids)

    def reward_last_sampled(self, value: float, kind: str) -> None:
        last = max(i for i, s in enumerate(self.sampled) if s)
        self.rewards.append((last, value))
        self.components[kind] += value


def observation_text(template: Template, tokenizer, episode: Episode) -> str:
    """What the template writes after the last assistant turn's end-of-turn: the feedback, then the next opener,
    in the format's own roles (:meth:`~tl_lightning.data.template_base.Template.observation`: a chat template
    writes Qwen's ``<tool_response>``, Llama's ``ipython`` turn, Mistral's ``[TOOL_RESULTS]``...)."""
    return template.observation(episode.trajectory(), tokenizer)


def run_episodes(
    policy: Policy, tokenizer, template: Template, tasks: Sequence[MultiTurnTask], settings: EpisodeSettings,
    seed: int | None = None,
) -> list[EpisodeTrace]:
    """Play every task to its end, in a batch whose finished episodes drop out; one trace per task."""
    episodes = [
        Episode(dataclasses.replace(t, max_turns=settings.max_turns), call_format=template.call_format_for(tokenizer), seed=settings.env_seed)
        for t in tasks
    ]
    prompts = tokenize_prompts(tokenizer, [template.render_prompt(e.trajectory(), tokenizer) for e in episodes])
    traces = [EpisodeTrace(prompt_ids=p) for p in prompts]
    turn = 0
    while active := [i for i, e in enumerate(episodes) if not e.done and not traces[i].truncated]:
        step_seed = None if seed is None else seed * 1000 + turn
        out = policy([traces[i].prompt_ids + traces[i].ids for i in active], step_seed)
        for row, i in enumerate(active):
            trace, episode = traces[i], episodes[i]
            n = int(out.response_mask[row].sum())
            logprobs = None if out.logprobs is None else out.logprobs[row, :n].tolist()
            trace.append(out.responses[row, :n].tolist(), sampled=True, logprobs=logprobs)  # the stop token included: it is trained
            record = episode.step(out.texts[row])
            trace.reward_last_sampled(turn_reward(record.categories, settings.category_rewards), "calls")
            if episode.done:
                continue
            obs = tokenizer(observation_text(template, tokenizer, episode), add_special_tokens=False)["input_ids"]
            if len(trace.prompt_ids) + len(trace.ids) + len(obs) + settings.max_new_tokens > settings.max_context:
                trace.truncated = True  # the next turn would not fit: stop here, no bonus and no penalty
                continue
            trace.append(obs, sampled=False)
        turn += 1
    for trace, episode in zip(traces, episodes, strict=True):
        trace.result = episode.result()
        if trace.result.success:
            trace.reward_last_sampled(settings.success_bonus, "success")
        if not episode.finished and not episode.ended_on_error and not trace.truncated:
            trace.reward_last_sampled(settings.max_turns_penalty, "max_turns")
    return traces


def episode_tensors(traces: Sequence[EpisodeTrace], pad_id: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The traces as the ids of a :class:`~tl_lightning.rl.rollout.Rollout`, exactly as sampled (never re-tokenised).

    P: the longest first prompt, T: the longest rest of an episode. Returns ``sequences`` [B, P+T] long (first
    prompt left-padded, then the episode's ids right-padded), ``attention_mask`` [B, P+T] long (1 on every real
    token, observations included), ``response_mask`` [B, T] float (1 only on ids the policy sampled) and
    ``scores`` [B, T] float (the environment's rewards at the turns' last sampled tokens, 0 elsewhere).
    """
    p = max(len(t.prompt_ids) for t in traces)
    n = max(len(t.ids) for t in traces)
    seq = torch.full((len(traces), p + n), pad_id, dtype=torch.long)
    attn = torch.zeros_like(seq)
    mask = torch.zeros(len(traces), n)
    scores = torch.zeros(len(traces), n)
    for b, t in enumerate(traces):
        seq[b, p - len(t.prompt_ids) : p] = torch.tensor(t.prompt_ids)
        seq[b, p : p + len(t.ids)] = torch.tensor(t.ids, dtype=torch.long)
        attn[b, p - len(t.prompt_ids) : p + len(t.ids)] = 1
        mask[b, : len(t.ids)] = torch.tensor(t.sampled, dtype=torch.float32)
        for index, reward in t.rewards:
            scores[b, index] += reward
    return seq, attn, mask, scores


def episode_logprobs(traces: Sequence[EpisodeTrace]) -> Tensor | None:
    """[B, T] float, the sampler's log-probs of the sampled ids, aligned with :func:`episode_tensors`'s
    ``response_mask`` (0 on observations and padding); None unless every trace has them."""
    if any(t.logprobs is None for t in traces):
        return None
    out = torch.zeros(len(traces), max(len(t.ids) for t in traces))
    for b, t in enumerate(traces):
        out[b, : len(t.logprobs)] = torch.tensor(t.logprobs, dtype=torch.float32)
    return out
