"""TLMultiTurnRLModule: RL on multi-turn sandbox episodes, a reward per call from its real feedback.

    python -m tl_lightning fit --config configs/rl_multiturn_quickstart.yaml

One training step: play the batch's tasks (G episodes per task for a group estimator) in the sandbox for up
to ``max_turns`` turns with :func:`~tl_lightning.rl.episodes.run_episodes`, token-in/token-out; the
environment's rewards fall at each turn's last generated token. Then the same update as single-step RL
(:class:`~tl_lightning.modules.rl_base.RLModule`): the rewards are clipped so that an episode's return stays
within ``±reward_clip``, the KL and the estimator apply as configured, and GAE and REINFORCE++ run across the
episode over generated tokens only (:func:`~tl_lightning.rl.sampled_gae`); a group estimator scores each
episode by its clipped return.

Observation tokens (tool feedback, role headers) are context only: the response mask is 0 on them, so they
get no policy loss, no value loss and no KL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tl_lightning.data.cases import MultiTurnTask
from tl_lightning.data.templates import get_template
from tl_lightning.modules.rl_base import Collected, RLModule
from tl_lightning.ranges import check_ranges
from tl_lightning.rl import Rollout
from tl_lightning.rl.episodes import (
    EpisodeSettings,
    EpisodeTrace,
    episode_logprobs,
    episode_tensors,
    run_episodes,
)

__all__ = ["TLMultiTurnRLModule"]


class TLMultiTurnRLModule(RLModule):
    """Multi-turn episodes against the sandbox (:class:`~tl_lightning.rl.data.TaskDataModule` tasks).

    Args (besides :class:`~tl_lightning.modules.rl_base.RLModule`'s; ``max_new_tokens`` is per turn,
    ``category_rewards`` the per-call table):
        template: the template the SFT model was trained with; it renders the prompt and every observation.
            ``template_kwargs``: its options, as the SFT data had them (e.g. ``{chat_template_kwargs:
            {enable_thinking: false}}`` for Qwen3's ``chat_template``).
        max_turns: model turns per episode (ToolEyes: 9).
        max_context: an episode whose next turn would exceed this many tokens stops there (counted as truncated).
        success_bonus: added at the last generated token when the task's success check passes.
        max_turns_penalty: added there when ``max_turns`` ran out without ``finish``.
        env_seed: the sandbox's seed (tool instability draws).
    """

    time_keys = ("episodes", "score", "train")

    def __init__(
        self, template: str = "python_sig", template_kwargs: dict[str, Any] | None = None, max_turns: int = 9,
        max_context: int = 2048, success_bonus: float = 2.0, max_turns_penalty: float = -1.0, env_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        check_ranges("TLMultiTurnRLModule: ", {"max_turns": max_turns, "max_context": max_context})
        renderer = get_template(template, **(template_kwargs or {}))  # an unknown name or option fails before loading
        super().__init__(**kwargs)
        self.template = renderer
        self.loss_norm = max_turns * self.hparams.max_new_tokens  # an episode's generation budget
        hp = self.hparams
        self.settings = EpisodeSettings(
            max_turns, max_context, hp.max_new_tokens, hp.category_rewards, success_bonus, max_turns_penalty, env_seed
        )

    def play(self, tasks: Sequence[MultiTurnTask], greedy: bool = False) -> list[EpisodeTrace]:
        policy = self.policy(greedy, stop_strings=[self.template.end_of_turn(self.tokenizer)])
        return run_episodes(policy, self.tokenizer, self.template, tasks, self.settings, seed=self._rollout_seed())

    def collect(self, tasks: list[MultiTurnTask]) -> Collected:
        traces = self.play(tasks)
        sequences, attention_mask, response_mask, scores = episode_tensors(traces, self.tokenizer.pad_token_id or 0)
        texts = [t.result.turns[-1].output if t.result.turns else "" for t in traces]
        return Collected(sequences.to(self.device), attention_mask.to(self.device), response_mask, scores, texts, traces,
                         episode_logprobs(traces))

    def train_logs(self, info: list[EpisodeTrace], rollout: Rollout, returns: Tensor) -> dict[str, Tensor]:
        mask = rollout.response_mask
        observed = rollout.attention_mask[:, rollout.response_start :].sum(dim=1) - mask.sum(dim=1)
        return {
            **self._episode_logs("train", info),
            "train/generated_tokens": mask.sum(dim=1).mean(),
            "train/observation_tokens": observed.float().mean(),
        }

    def _episode_logs(self, stage: str, traces: Sequence[EpisodeTrace]) -> dict[str, Tensor]:
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
        return {f"{stage}/{k}": torch.tensor(float(v)) for k, v in logs.items()}

    def validation_step(self, batch: list[MultiTurnTask], batch_idx: int) -> None:
        """Greedy episodes on held-out tasks: success, return and error rates (the ``test`` stage has DE/CE/VA)."""
        logs = self._episode_logs("val", self.play(batch, greedy=True))
        self.log_dict({k: v.to(self.device) for k, v in logs.items()}, on_step=False, on_epoch=True, batch_size=len(batch))
