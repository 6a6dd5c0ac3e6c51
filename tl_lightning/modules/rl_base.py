"""RLModule: what PPO, the GRPO family and multi-turn RL share: the models, the one update path, checkpoints.

A subclass turns a batch into sampled ids and the environment's rewards (:meth:`RLModule.collect`) and logs
what is particular to it; everything between is here, the same for every RL module::

    batch (G copies of each prompt or task for a group estimator)
      -> collect: generation or episodes, rewards          (subclass; through the rollout engine)
      -> score_rollout: log-probs, reference log-probs, values -> Rollout
      -> compute_advantages(advantage, ...): reward clip, KL, estimator
      -> ppo_epochs x num_minibatches clipped updates of the actor (and critic)

So ``reward_clip``, ``kl_mode``/``kl_coef``, the estimator, the loss aggregation and the ratio apply
identically to single-step and multi-turn rollouts. The maths is in :mod:`tl_lightning.rl`; what generates
(Hugging Face ``generate`` or colocated vLLM, ``rollout_engine``) is :mod:`tl_lightning.rl.engines`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from lightning.pytorch import LightningModule
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from tl_lightning.checkpoints import TokenizerCheckpointMixin, export_hf_model, load_pretrained
from tl_lightning.models import TINY_MODEL, check_model_source
from tl_lightning.ranges import check_ranges, choose
from tl_lightning.rl import (
    AGGREGATIONS,
    CRITICS,
    ESTIMATORS,
    KL_MODES,
    RATIOS,
    Advantage,
    CriticKind,
    KLMode,
    LossAgg,
    Policy,
    RatioLevel,
    Rollout,
    compute_advantages,
    engine_policy,
    masked_mean,
    policy_forward,
    policy_loss,
    score_rollout,
    value_loss,
)
from tl_lightning.rl.engines import RolloutEngineHooks, SamplingSettings, check_engine_settings
from tl_lightning.tokenization import check_tokenizer_source

__all__ = ["Collected", "RLModule"]


class Collected(NamedTuple):
    """What :meth:`RLModule.collect` sampled: ``sequences`` [B, P+T], ``attention_mask`` [B, P+T],
    ``response_mask`` [B, T], the environment's ``scores`` [B, T] (see :class:`~tl_lightning.rl.Rollout`), the
    texts, whatever the subclass's :meth:`RLModule.train_logs` needs, and the engine's ``sampling_logprobs``
    [B, T] (None when it was not asked for them)."""

    sequences: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    scores: Tensor
    texts: list[str]
    info: Any
    sampling_logprobs: Tensor | None = None


class RLModule(RolloutEngineHooks, TokenizerCheckpointMixin, LightningModule):
    """The shared part of the RL modules (:class:`~tl_lightning.modules.ppo.TLPPOModule`,
    :class:`~tl_lightning.modules.rl_multiturn.TLMultiTurnRLModule`); not used on its own.

    Args:
        actor: a ``TLSFTModule`` / ``TLPPOModule`` checkpoint (``.ckpt``), an HF export directory, a hub
            name, or ``"tl-tiny"`` (see :func:`~tl_lightning.checkpoints.load_pretrained`).
        tokenizer: the data's tokenizer (the CLI links the datamodule's), a name/path, or None.
        critic: ``separate`` (a copy of the actor's backbone + value head; the paper) or ``shared`` (a value
            head on the actor's last hidden state, trained through one combined loss). Only ``gae`` has a critic.
        category_rewards: overrides of :data:`~tl_lightning.rewards.SANDBOX_REWARDS`, the reward of an executed
            call by its feedback category.
        reward_clip: the environment's rewards are clipped so that each rollout's return stays within ±this
            (:func:`~tl_lightning.rl.losses.clip_return`); None: no clip.
        kl_coef, kl_mode: the KL to the frozen initial actor: ``reward`` (k1 penalty in the per-token reward, the
            paper) or ``loss`` (``kl_coef * k3`` in the policy loss, GRPO's way).
        gamma, lam, clip_policy, clip_value: GAE's discount and lambda, PPO's policy and value clips
            (docs/method.md, "PPO": 1.0, 0.95, 0.2, 0.2).
        ppo_epochs, num_minibatches: optimisation passes over each rollout batch and its split.
        whiten_advantages: normalise GAE advantages over the batch's valid tokens.
        vf_coef: weight of the value loss in the combined loss (``critic: shared`` only).
        actor_lr, critic_lr, weight_decay, betas: AdamW settings (paper: 2e-6 and 1e-6).
        max_grad_norm: gradient clipping of each optimizer's parameters (None: off).
        max_new_tokens, do_sample, temperature, top_p, top_k, use_cache: generation (greedy by default, as in
            the paper; ``max_new_tokens`` is per turn in an episode). Validation is always greedy.
        dtype, gradient_checkpointing, tiny_config: passed to ``load_pretrained``.
        advantage: ``gae`` (PPO with the critic; the paper), ``grpo``, ``dr_grpo``, ``rloo`` (baselines from the
            other samples of the prompt) or ``reinforce_pp`` (:data:`~tl_lightning.rl.ESTIMATORS`).
        group_size: G, samples drawn of each prompt or task of a batch (>= 2 for a group estimator).
        loss_agg: ``token_mean`` | ``seq_mean_token_mean`` | ``seq_mean_token_sum_norm`` (None: the estimator's own).
        ratio_level: ``token`` (PPO) or ``sequence`` (GSPO). clip_high: the upper clip (None: ``clip_policy``);
            above it is DAPO's clip-higher.
        sampling_seed: seeds each rollout's sampling from (seed, rank, step), so reruns sample alike.
        rollout_engine: ``hf`` (Hugging Face ``generate`` on the actor) or ``vllm`` (a colocated vLLM engine,
            synced with the actor; docs/vllm.md). ``vllm``: its settings (:class:`~tl_lightning.rl.engines.VLLMSettings`).
        tis_cap: truncated importance sampling of the sampled tokens, each surrogate times
            ``min(p_trainer / p_sampler, tis_cap)`` (None: off; :func:`~tl_lightning.rl.engines.tis_weights`).

    Out-of-range numbers (:data:`~tl_lightning.ranges.RANGES`), unknown modes and settings that cannot work
    together are a ``ValueError`` at construction, before any model is loaded.
    """

    #: names of the three phases a training step times: collect, score, train
    time_keys = ("rollout", "score", "train")

    def __init__(
        self,
        actor: str = TINY_MODEL,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        critic: CriticKind = "separate",
        category_rewards: dict[str, float] | None = None,
        reward_clip: float | None = 5.0,
        kl_coef: float = 0.4,
        gamma: float = 1.0,
        lam: float = 0.95,
        clip_policy: float = 0.2,
        clip_value: float | None = 0.2,
        ppo_epochs: int = 1,
        num_minibatches: int = 1,
        whiten_advantages: bool = True,
        vf_coef: float = 1.0,
        actor_lr: float = 2e-6,
        critic_lr: float = 1e-6,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.95),
        max_grad_norm: float | None = 1.0,
        max_new_tokens: int = 128,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        use_cache: bool = True,
        dtype: str | None = None,
        gradient_checkpointing: bool = False,
        tiny_config: dict[str, Any] | None = None,
        advantage: Advantage = "gae",
        group_size: int = 1,
        loss_agg: LossAgg | None = None,
        ratio_level: RatioLevel = "token",
        clip_high: float | None = None,
        kl_mode: KLMode = "reward",
        sampling_seed: int | None = None,
        rollout_engine: Literal["hf", "vllm"] = "hf",
        vllm: dict[str, Any] | None = None,
        tis_cap: float | None = None,
    ) -> None:
        name = f"{type(self).__name__}: "
        check_ranges(name, locals())
        self.vllm_settings = check_engine_settings(rollout_engine, vllm)
        estimator = choose(ESTIMATORS, advantage, f"{name}advantage")
        choose(AGGREGATIONS, loss_agg or estimator.loss_agg, f"{name}loss_agg")
        choose(RATIOS, ratio_level, f"{name}ratio_level")
        make_critic = choose(CRITICS, critic, f"{name}critic") if estimator.critic else None
        kl_in_reward, kl_in_loss = choose(KL_MODES, kl_mode, f"{name}kl_mode")(kl_coef)
        if estimator.groups and group_size < 2:
            raise ValueError(f"{name}advantage={advantage!r} compares the samples of one prompt: group_size must be >= 2, got {group_size}")
        if estimator.groups and not do_sample:
            raise ValueError(f"{name}advantage={advantage!r} needs do_sample: true (G greedy samples of one prompt are identical)")
        check_model_source(actor, what="actor")
        check_tokenizer_source(tokenizer)
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.automatic_optimization = False
        self.estimator, self.loss_agg = estimator, loss_agg or estimator.loss_agg
        self.kl_in_reward, self.kl_in_loss = kl_in_reward, kl_in_loss  # the KL coefficient in the reward / in the loss
        loaded = load_pretrained(
            actor, dtype=dtype, tokenizer=tokenizer, gradient_checkpointing=gradient_checkpointing, tiny_config=tiny_config
        )
        self.actor, self.tokenizer = loaded.model, loaded.tokenizer
        self.reference = copy.deepcopy(self.actor).eval().requires_grad_(False)
        # Critic-free estimators take their baseline from the rewards: no value model, optimizer or value loss.
        self.critic = make_critic(self.actor) if make_critic is not None else None
        self.loss_norm = max_new_tokens  # Dr. GRPO's constant: the most tokens one sample can generate

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Prompt records and tasks are text, tokenized at rollout time; Lightning's walk of nested dataclasses
        # would also trip over the frozen Tool objects.
        return batch

    # ------------------------------------------------------------------ the step
    def collect(self, batch: list[Any]) -> Collected:
        """Sample the batch (``group_size`` copies of each item, in a row) through :meth:`policy`."""
        raise NotImplementedError

    def policy(self, greedy: bool, stop_token_ids: Sequence[int] | None = None, stop_strings: Sequence[str] | None = None) -> Policy:
        """The :data:`~tl_lightning.rl.Policy` the subclass collects with: the rollout engine with the module's
        generation settings, greedy for validation (``greedy``) or when ``do_sample`` is off."""
        hp = self.hparams
        # The sampler's log-probs feed the mismatch logs and TIS. HF derives them from every step's scores, held
        # as B x T x V: it is asked only for TIS; vLLM's come at no cost. Greedy validation trains on nothing.
        logprobs = not greedy and (hp.rollout_engine != "hf" or hp.tis_cap is not None)
        sampling = SamplingSettings(
            hp.max_new_tokens, hp.do_sample and not greedy, hp.temperature, hp.top_p, hp.top_k,
            None if stop_token_ids is None else tuple(stop_token_ids), tuple(stop_strings or ()) or None, logprobs=logprobs,
        )
        return engine_policy(self.engine, sampling)

    def score(self, c: Collected, temperature: float) -> Rollout:
        """The collected samples scored under the actor (at ``temperature``), the reference and the critic, all
        detached, with the collected rewards and sampler log-probs moved to the module's device."""
        return score_rollout(
            self.actor, self.reference, self.critic, c.sequences, c.attention_mask, c.response_mask.to(self.device),
            c.scores.to(self.device), c.texts, temperature=temperature,
            sampling_logprobs=None if c.sampling_logprobs is None else c.sampling_logprobs.to(self.device),
        )

    def train_logs(self, info: Any, rollout: Rollout, returns: Tensor) -> dict[str, Tensor]:
        """The subclass's own ``train/...`` values for a step (0-dim tensors)."""
        raise NotImplementedError

    def training_step(self, batch: list[Any], batch_idx: int) -> None:
        t0 = time.perf_counter()
        g = self.hparams.group_size
        items = [x for x in batch for _ in range(g)] if g > 1 else list(batch)  # each group's G samples in a row
        c = self.collect(items)
        t1 = time.perf_counter()
        rollout = self.score(c, self._train_temperature)
        t2 = time.perf_counter()
        stats, returns = self.update(rollout)
        t3 = time.perf_counter()
        mask = rollout.response_mask
        logs = {
            "train/kl": ((rollout.logprobs - rollout.ref_logprobs) * mask).sum(dim=1).mean(),
            **self.train_logs(c.info, rollout, returns),
            **{f"train/{k}": v for k, v in self.sampler_logs(rollout.logprobs, rollout.sampling_logprobs, mask).items()},
            **{f"train/{k}": torch.stack(v).mean() for k, v in stats.items()},
            **{f"time/{k}_s": torch.tensor(v) for k, v in zip(self.time_keys, (t1 - t0, t2 - t1, t3 - t2), strict=True)},
        }
        self.log_dict({k: v.float().to(self.device) for k, v in logs.items()}, on_step=True, batch_size=len(items))

    def update(self, rollout: Rollout) -> tuple[dict[str, list[Tensor]], Tensor]:
        """Advantages by the configured estimator, then ``ppo_epochs`` passes of ``num_minibatches`` shuffled
        minibatch updates. Returns the stats (lists of 0-dim tensors) and the value targets [B, T]."""
        hp = self.hparams
        out = compute_advantages(
            hp.advantage, rollout, group_size=hp.group_size, kl_coef=self.kl_in_reward, reward_clip=hp.reward_clip,
            gamma=hp.gamma, lam=hp.lam, whiten=hp.whiten_advantages,
        )
        stats = {k: [v] for k, v in out.stats.items()}
        n = rollout.sequences.shape[0]
        for _ in range(hp.ppo_epochs):
            for index in torch.randperm(n, device=self.device).tensor_split(max(1, min(hp.num_minibatches, n))):
                for k, v in self._minibatch_update(rollout.select(index), out.advantages[index], out.returns[index]).items():
                    stats.setdefault(k, []).append(v)
        return stats, out.returns

    def _minibatch_update(self, batch: Rollout, advantages: Tensor, returns: Tensor) -> dict[str, Tensor]:
        """One minibatch update of the actor (and the critic, if any); returns detached stats."""
        hp = self.hparams
        opts = self.optimizers()
        actor_opt, critic_opt = opts if isinstance(opts, list) else (opts, None)
        mask, start = batch.response_mask, batch.response_start
        # A shared critic's values come from the same forward pass (and train through one combined loss below).
        logprobs, values, entropy = policy_forward(
            self.actor, self.critic, batch.sequences, batch.attention_mask, start, self._train_temperature, entropy=True
        )
        # TIS weighs by the trainer's log-probs at collection (batch.logprobs), not the moving current ones
        is_weights, is_stats = self.is_weights(batch.logprobs, batch.sampling_logprobs, mask)
        pg_loss, pg_stats = policy_loss(
            logprobs, batch.logprobs, advantages, mask, hp.clip_policy, hp.clip_high, self.loss_agg, hp.ratio_level,
            batch.ref_logprobs, self.kl_in_loss, norm=self.loss_norm, is_weights=is_weights,
        )
        stats = {"policy_loss": pg_loss.detach(), "entropy": masked_mean(entropy.detach(), mask), **pg_stats, **is_stats}
        if values is None:  # no critic, or a separate one: the actor steps on its own loss
            self._step(actor_opt, pg_loss)
            if self.critic is None:
                return stats
            values = self.critic(batch.sequences, batch.attention_mask, start)
            vf_loss, vf_stats = value_loss(values.float(), batch.values, returns, mask, hp.clip_value)
            self._step(critic_opt, vf_loss)
        else:
            vf_loss, vf_stats = value_loss(values.float(), batch.values, returns, mask, hp.clip_value)
            actor_opt.zero_grad()
            critic_opt.zero_grad()
            self.manual_backward(pg_loss + hp.vf_coef * vf_loss)
            for opt in (actor_opt, critic_opt):
                self._clip(opt)
                opt.step()
        return {**stats, "value_loss": vf_loss.detach(), **vf_stats}

    def _step(self, opt, loss: Tensor) -> None:
        opt.zero_grad()
        self.manual_backward(loss)
        self._clip(opt)
        opt.step()

    def _clip(self, opt) -> None:
        if self.hparams.max_grad_norm is not None:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")

    @property
    def _train_temperature(self) -> float:
        return self.hparams.temperature if self.hparams.do_sample else 1.0

    def _rollout_seed(self) -> int | None:
        # ranks sample differently, and every step differently, yet a rerun samples the same
        seed = self.hparams.sampling_seed
        return None if seed is None else hash((seed, self.global_rank, self.global_step)) % 2**31

    def configure_optimizers(self):
        hp = self.hparams
        actor_opt = torch.optim.AdamW(self.actor.parameters(), lr=hp.actor_lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        if self.critic is None:
            return actor_opt
        critic_opt = torch.optim.AdamW(self.critic.parameters(), lr=hp.critic_lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        return [actor_opt, critic_opt]

    # ------------------------------------------------------------------ checkpoints + export
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # The reference is the initial actor, rebuilt from ``actor`` at construction: not worth a second copy.
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("reference.")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("value_head.")]:  # a shared critic's name before it became `critic`
            state["critic." + key.removeprefix("value_head.")] = state.pop(key)
        for k, v in self.reference.state_dict().items():
            state.setdefault(f"reference.{k}", v)

    def export_hf(self, directory: str | Path) -> Path:
        """Write the actor + tokenizer in Hugging Face format."""
        return export_hf_model(self.actor, self.tokenizer, directory)
