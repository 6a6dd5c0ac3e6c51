"""TLMultiTurnRLModule: RL on multi-turn sandbox episodes, a reward per call from its real feedback.

    python -m tl_lightning fit --config configs/rl_multiturn_quickstart.yaml

One training step: play the batch's tasks (G episodes per task for a group estimator) in the sandbox for up
to ``max_turns`` turns with :func:`~tl_lightning.rl_episodes.run_episodes`, token-in/token-out -> score the
sampled ids under the policy, the frozen reference (and the critic for ``gae``) -> advantages:

- ``gae``: per-token rewards = the k1 KL penalty on generated tokens + the environment's rewards at each
  turn's last generated token; :func:`~tl_lightning.rl.episode_gae` runs across the whole episode over
  generated tokens only;
- ``grpo`` / ``dr_grpo`` / ``rloo``: the episode return (sum of its rewards) is the score of the sample.

Observation tokens (tool feedback, role headers) are context only: the response mask is 0 on them, so they
get no policy loss, no value loss and no KL. Everything else (optimisation, checkpoints, export, the
critic-free path) is :class:`~tl_lightning.modules.ppo.TLPPOModule`'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tl_lightning.data.cases import MultiTurnTask
from tl_lightning.data.templates import get_template
from tl_lightning.generation import GenerationOutput, generate, sequence_logprobs
from tl_lightning.losses import kl_penalty, masked_whiten
from tl_lightning.modules.ppo import TLPPOModule
from tl_lightning.rl import Rollout, episode_gae
from tl_lightning.rl_episodes import EpisodeSettings, EpisodeTrace, episode_batch, run_episodes

__all__ = ["TLMultiTurnRLModule"]


class TLMultiTurnRLModule(TLPPOModule):
    """Multi-turn episodes against the sandbox (:class:`~tl_lightning.data.prompts.TaskDataModule` tasks).

    Args (besides :class:`TLPPOModule`'s; ``max_new_tokens`` is per turn, ``category_rewards`` the per-call table):
        template: the template the SFT model was trained with; it renders the prompt and every observation.
        max_turns: model turns per episode (ToolEyes: 9).
        max_context: an episode whose next turn would exceed this many tokens stops there (counted as truncated).
        success_bonus: added at the last generated token when the task's success check passes.
        max_turns_penalty: added there when ``max_turns`` ran out without ``finish``.
        env_seed: the sandbox's seed (tool instability draws).
    """

    def __init__(
        self, template: str = "python_sig", max_turns: int = 9, max_context: int = 2048, success_bonus: float = 2.0,
        max_turns_penalty: float = -1.0, env_seed: int = 0, **kwargs: Any,
    ) -> None:
        if kwargs.get("advantage") == "reinforce_pp":
            raise ValueError("TLMultiTurnRLModule: advantage must be gae, grpo, dr_grpo or rloo (reinforce_pp is single-step here)")
        if max_turns < 1 or max_context < 2:
            raise ValueError(f"TLMultiTurnRLModule: max_turns must be >= 1 and max_context >= 2, got {max_turns}, {max_context}")
        super().__init__(reward_source="sandbox", **kwargs)  # a call is rewarded by its real feedback
        self.template = get_template(template)
        self.loss_norm = max_turns * self.hparams.max_new_tokens  # an episode's generation budget
        hp = self.hparams
        self.settings = EpisodeSettings(
            max_turns, max_context, hp.max_new_tokens, hp.category_rewards, success_bonus, max_turns_penalty, env_seed
        )

    def _policy(self, greedy: bool):
        hp, eot = self.hparams, self.template.end_of_turn(self.tokenizer)
        sample = hp.do_sample and not greedy

        def policy(prompt_ids: list[list[int]], seed: int | None) -> GenerationOutput:
            return generate(
                self.actor, self.tokenizer, [], prompt_ids=prompt_ids, max_new_tokens=hp.max_new_tokens, do_sample=sample,
                temperature=hp.temperature, top_p=hp.top_p, top_k=hp.top_k, stop_strings=[eot], use_cache=hp.use_cache,
                seed=seed if sample else None,
            )

        return policy

    def play(self, tasks: Sequence[MultiTurnTask], greedy: bool = False) -> list[EpisodeTrace]:
        return run_episodes(self._policy(greedy), self.tokenizer, self.template, tasks, self.settings, seed=self._rollout_seed())

    @torch.no_grad()
    def episode_rollout(self, traces: Sequence[EpisodeTrace]) -> tuple[Rollout, Tensor]:
        """The traces as a :class:`Rollout` (log-probs, reference log-probs, values on sampled tokens) and the
        environment's per-token rewards [B, T]."""
        batch = episode_batch(traces, self.tokenizer.pad_token_id or 0)
        seq, attn = batch.sequences.to(self.device), batch.attention_mask.to(self.device)
        mask, start = batch.response_mask.to(self.device), batch.sequences.shape[1] - batch.response_mask.shape[1]
        temperature = self._train_temperature
        was_training = self.actor.training
        self.actor.eval()
        try:
            logprobs, values = self._policy_and_values(seq, attn, start, temperature)
        finally:
            self.actor.train(was_training)
        ref = sequence_logprobs(self.reference, seq, attn, start, temperature=temperature)
        texts = [t.result.turns[-1].output if t.result.turns else "" for t in traces]
        rollout = Rollout(seq, attn, mask, logprobs * mask, ref * mask, values.float() * mask, texts)
        return rollout, batch.token_scores.to(self.device)

    def training_step(self, batch: list[MultiTurnTask], batch_idx: int) -> None:
        hp = self.hparams
        t0 = time.perf_counter()
        self._check_groups([t.id for t in batch])
        traces = self.play(batch)
        t1 = time.perf_counter()
        rollout, token_scores = self.episode_rollout(traces)
        t2 = time.perf_counter()

        def gae() -> tuple[Tensor, Tensor]:
            mask = rollout.response_mask
            rewards = kl_penalty(rollout.logprobs, rollout.ref_logprobs, mask, self._reward_kl_coef) + token_scores
            advantages, returns = episode_gae(rewards, rollout.values, mask, hp.gamma, hp.lam)
            if hp.whiten_advantages and mask.sum() >= 2:
                advantages = masked_whiten(advantages, mask)
            return advantages, returns

        stats, _ = self._update(rollout, token_scores.sum(dim=1), gae)
        self._log_episodes("train", traces, rollout, stats, (t1 - t0, t2 - t1, time.perf_counter() - t2))

    def _log_episodes(self, stage: str, traces: Sequence[EpisodeTrace], rollout: Rollout | None, stats, times=None) -> None:
        n = len(traces)
        results = [t.result for t in traces]
        calls = sum(r.n_calls for r in results)
        logs = {
            "return": sum(sum(t.components.values()) for t in traces) / n,
            **{f"reward_{k}": sum(t.components[k] for t in traces) / n for k in ("calls", "success", "max_turns")},
            "success": sum(bool(r.success) for r in results) / n,
            "finished": sum(r.finished for r in results) / n,
            "turns": sum(len(r.turns) for r in results) / n,
            "truncated": sum(t.truncated for t in traces) / n,
            "de_rate": sum(r.n_de for r in results) / max(calls, 1),
            "ce_rate": sum(r.n_ce for r in results) / max(calls, 1),
        }
        out = {f"{stage}/{k}": torch.tensor(float(v)) for k, v in logs.items()}
        if rollout is not None:
            mask = rollout.response_mask
            out[f"{stage}/kl"] = ((rollout.logprobs - rollout.ref_logprobs) * mask).sum(dim=1).mean()
            out[f"{stage}/generated_tokens"] = mask.sum(dim=1).mean()
            out[f"{stage}/observation_tokens"] = (rollout.attention_mask[:, rollout.response_start :].sum(dim=1) - mask.sum(dim=1)).float().mean()
        out.update({f"{stage}/{k}": torch.stack(v).mean() for k, v in (stats or {}).items()})
        if times is not None:
            out.update({f"time/{k}_s": torch.tensor(v) for k, v in zip(("episodes", "score", "train"), times, strict=True)})
        self.log_dict({k: v.float().to(self.device) for k, v in out.items()}, on_step=stage == "train", on_epoch=stage != "train", batch_size=n)

    def validation_step(self, batch: list[MultiTurnTask], batch_idx: int) -> None:
        """Greedy episodes on held-out tasks: success, return and error rates (the ``test`` stage has DE/CE/VA)."""
        self._log_episodes("val", self.play(batch, greedy=True), None, None)
