"""TLPPOModule: PPO (or a critic-free GRPO-family estimator) from an SFT model with the tool-error reward (IRM).

    python -m tl_lightning fit --config configs/ppo_quickstart.yaml
    python -m tl_lightning fit --config configs/grpo_quickstart.yaml       # advantage: grpo, G=8, no critic
    python -m tl_lightning fit --config configs/paper/ppo_codellama7b.yaml

One training step is one PPO iteration on a batch of prompts (DESIGN.md §1, DeepSpeed-Chat's
settings): greedy rollout with the KV cache -> IRM reward of the parsed call, clipped to ±5 and
added at the last generated token, plus ``-kl_coef * (logp - logp_ref)`` on every token -> GAE
(gamma 1, lambda 0.95) -> whitened advantages -> ``ppo_epochs`` x minibatches of clipped policy and
value updates, with separate actor and critic optimizers. A critic-free ``advantage`` (grpo, dr_grpo,
rloo, reinforce_pp) builds no critic at all (no value model, no critic optimizer, no value loss): G
sampled responses per prompt are scored and the baseline comes from the rewards. The module is thin:
rollout container, reward adapters, advantages and GRPO-family losses are the pure helpers of
:mod:`tl_lightning.rl`, PPO's in :mod:`tl_lightning.losses`; the actor loads through ``load_pretrained``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor
from torchmetrics import MeanMetric
from transformers import PreTrainedTokenizerBase

from tl_lightning.checkpoints import TokenizerCheckpointMixin, export_hf_model, load_pretrained
from tl_lightning.data.prompts import PromptRecord
from tl_lightning.generation import generate, sequence_logprobs
from tl_lightning.losses import masked_mean, ppo_value_loss
from tl_lightning.models import TINY_MODEL, check_model_source
from tl_lightning.rewards import IRMValues
from tl_lightning.rl import (
    CRITIC_FREE,
    GROUP_ESTIMATORS,
    REWARD_CATEGORIES,
    Rollout,
    check_groups,
    check_ppo_ranges,
    check_rl_settings,
    compute_advantages,
    critic_free_advantages,
    default_loss_agg,
    gold_reward,
    policy_loss,
    sandbox_reward,
    score_texts,
)
from tl_lightning.tokenization import check_tokenizer_source
from tl_lightning.value_model import ValueHead, ValueModel, response_slice

__all__ = ["TLPPOModule"]


class TLPPOModule(TokenizerCheckpointMixin, LightningModule):
    """PPO with IRM rewards (or sandbox-feedback rewards) and a KL penalty to the frozen initial actor.

    Args:
        actor: a ``TLSFTModule`` / ``TLPPOModule`` checkpoint (``.ckpt``), an HF export directory, a hub
            name, or ``"tl-tiny"`` (see :func:`~tl_lightning.checkpoints.load_pretrained`).
        tokenizer: the data's tokenizer (the CLI links the datamodule's), a name/path, or None.
        critic: ``"separate"`` (a copy of the actor's backbone + value head; the paper) or ``"shared"``
            (a value head on the actor's last hidden state, trained through one combined loss).
            Ignored by critic-free estimators, which build none.
        advantage: ``gae`` (PPO with the critic; the paper), ``grpo``, ``dr_grpo``, ``rloo`` (group baselines over
            ``group_size`` samples per prompt, >= 2, each prompt G times in a row in the data) or ``reinforce_pp``.
        loss_agg: ``token_mean`` | ``seq_mean_token_mean`` | ``seq_mean_token_sum_norm`` (None: the
            estimator's own, :func:`~tl_lightning.rl.default_loss_agg`).
        ratio_level: ``token`` (PPO) or ``sequence`` (GSPO). clip_high: the upper clip (None: ``clip_policy``,
            the lower one); above it is DAPO's clip-higher.
        kl_mode: ``reward`` (k1 penalty in the reward, the paper) or ``loss`` (``kl_coef * k3`` in the loss).
        sampling_seed: seeds each rollout's sampling from (seed, rank, step), so reruns sample alike.
        reward_source: ``"gold"`` (IRM table against the gold calls) or ``"sandbox"`` (execute the
            call and map its feedback category through ``category_rewards``).
        irm_values: overrides of the IRM table (keys of :class:`~tl_lightning.rewards.IRMValues`).
        category_rewards: overrides of :data:`~tl_lightning.rewards.SANDBOX_REWARDS` (sandbox source).
        sandbox_seed, sandbox_instability_rate: the sandbox's settings (sandbox source).
        reward_clip, kl_coef, gamma, lam, clip_policy, clip_value: the PPO settings of DESIGN.md §1
            (5, 0.4, 1.0, 0.95, 0.2, 0.2).
        ppo_epochs, num_minibatches: optimisation passes over each rollout batch and its split.
        whiten_advantages: normalise advantages over the batch's valid tokens.
        vf_coef: weight of the value loss in the combined loss (``critic="shared"`` only).
        actor_lr, critic_lr, weight_decay, betas: AdamW settings (paper: 2e-6 and 1e-6).
        max_grad_norm: gradient clipping of each optimizer's parameters (None: off).
        max_new_tokens, do_sample, temperature, top_p, top_k, use_cache: rollout generation
            (greedy by default, as in the paper). Validation is always greedy.
        dtype, gradient_checkpointing, tiny_config: passed to ``load_pretrained``.

    Out-of-range settings (``gamma=2``, ``clip_policy=0``, ``actor_lr=-1``...) are a ``ValueError`` at
    construction, as is an actor or tokenizer that is neither a path nor a shipped or hub name.
    """

    def __init__(
        self,
        actor: str = TINY_MODEL,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        critic: Literal["separate", "shared"] = "separate",
        reward_source: Literal["gold", "sandbox"] = "gold",
        irm_values: dict[str, float] | None = None,
        category_rewards: dict[str, float] | None = None,
        sandbox_seed: int = 0,
        sandbox_instability_rate: float = 0.0,
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
        advantage: Literal["gae", "grpo", "dr_grpo", "rloo", "reinforce_pp"] = "gae",
        group_size: int = 1,
        loss_agg: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"] | None = None,
        ratio_level: Literal["token", "sequence"] = "token",
        clip_high: float | None = None,
        kl_mode: Literal["reward", "loss"] = "reward",
        sampling_seed: int | None = None,
    ) -> None:
        check_rl_settings(advantage, group_size, loss_agg, ratio_level, kl_mode, do_sample, clip_high)
        check_ppo_ranges(locals())
        check_model_source(actor, what="actor")
        check_tokenizer_source(tokenizer)
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.automatic_optimization = False
        loaded = load_pretrained(
            actor, dtype=dtype, tokenizer=tokenizer, gradient_checkpointing=gradient_checkpointing, tiny_config=tiny_config
        )
        self.actor, self.tokenizer = loaded.model, loaded.tokenizer
        self.reference = copy.deepcopy(self.actor).eval().requires_grad_(False)
        self.critic = self.value_head = None
        if advantage in CRITIC_FREE:
            pass  # the baseline comes from the rewards: no value model, no critic optimizer, no value loss
        elif critic == "separate":
            self.critic = ValueModel.from_causal_lm(self.actor)
        else:
            self.value_head = ValueHead(self.actor.config.hidden_size)
        self.irm = IRMValues.from_dict(irm_values or {})
        self._sandbox = None
        self.categories = REWARD_CATEGORIES[reward_source]
        self.val_reward, self.val_correct = MeanMetric(), MeanMetric()
        self.loss_norm = max_new_tokens  # Dr. GRPO's constant: the most tokens one sample can generate
        self.val_frac = torch.nn.ModuleDict({c: MeanMetric() for c in self.categories})

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # Prompt records are text, tokenized at rollout time; Lightning's walk of nested dataclasses
        # would also trip over the frozen Tool objects.
        return batch

    # ------------------------------------------------------------------ rollout + reward
    @property
    def stop_token_ids(self) -> list[int]:
        return [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []

    def _stop_for(self, records: Sequence[PromptRecord]) -> tuple[list[int], list[str]]:
        ids, strings = set(self.stop_token_ids), []
        for eot in {r.end_of_turn for r in records}:
            tid = self.tokenizer.convert_tokens_to_ids(eot)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
            else:
                strings.append(eot)
        return sorted(ids), strings

    def _policy_and_values(self, sequences: Tensor, attention_mask: Tensor, start: int, temperature: float) -> tuple[Tensor, Tensor]:
        """Log-probs [B, T] of the response tokens and critic values [B, T] (0 without a critic), in the actor's current mode."""
        if self.value_head is None:
            logprobs = sequence_logprobs(self.actor, sequences, attention_mask, start, temperature=temperature)
            values = self.critic(sequences, attention_mask, start) if self.critic is not None else torch.zeros_like(logprobs)
            return logprobs, values
        # Shared backbone: the value head reads the hidden states of the same forward pass.
        logprobs, hidden = sequence_logprobs(
            self.actor, sequences, attention_mask, start, temperature=temperature, return_hidden=True
        )
        return logprobs, self.value_head(response_slice(hidden, start))

    @torch.no_grad()
    def rollout(self, records: Sequence[PromptRecord], greedy: bool = False) -> Rollout:
        """Generate one response per prompt and score it under the policy, reference and critic."""
        hp = self.hparams
        sample = hp.do_sample and not greedy
        stop_ids, stop_strings = self._stop_for(records)
        out = generate(
            self.actor, self.tokenizer, [r.text for r in records], max_new_tokens=hp.max_new_tokens,
            do_sample=sample, temperature=hp.temperature, top_p=hp.top_p, top_k=hp.top_k,
            stop_token_ids=stop_ids, stop_strings=stop_strings or None, use_cache=hp.use_cache, seed=self._rollout_seed(),
        )
        attn, start = out.attention_mask, out.prompt_length
        temperature = hp.temperature if sample else 1.0
        was_training = self.actor.training
        self.actor.eval()
        try:
            logprobs, values = self._policy_and_values(out.sequences, attn, start, temperature)
        finally:
            self.actor.train(was_training)
        ref_logprobs = sequence_logprobs(self.reference, out.sequences, attn, start, temperature=temperature)
        mask = out.response_mask.to(logprobs.dtype)
        return Rollout(out.sequences, attn, mask, logprobs * mask, ref_logprobs * mask, values.float() * mask, out.texts)

    def _rollout_seed(self) -> int | None:
        # ranks sample differently, and every step differently, yet a rerun samples the same
        seed = self.hparams.sampling_seed
        return None if seed is None else hash((seed, self.global_rank, self.global_step)) % 2**31

    @property
    def sandbox(self):
        if self._sandbox is None:
            from tl_lightning.tools.sandbox import Sandbox

            self._sandbox = Sandbox(seed=self.hparams.sandbox_seed, instability_rate=self.hparams.sandbox_instability_rate)
        return self._sandbox

    def reward_fn(self, text: str, record: PromptRecord) -> tuple[float, str]:
        if self.hparams.reward_source == "sandbox":
            return sandbox_reward(text, record, self.sandbox, self.hparams.category_rewards)
        return gold_reward(text, record, self.irm)

    # ------------------------------------------------------------------ optimisation
    def _ppo_update(self, batch: Rollout, advantages: Tensor, returns: Tensor) -> dict[str, Tensor]:
        """One minibatch update of the actor (and the critic, if any); returns detached stats."""
        hp = self.hparams
        opts = self.optimizers()
        actor_opt, critic_opt = opts if isinstance(opts, list) else (opts, None)
        mask, start = batch.response_mask, batch.response_start
        # A shared backbone gives logits and values in one forward pass (and one combined loss below).
        logprobs, entropy, *hidden = sequence_logprobs(
            self.actor, batch.sequences, batch.attention_mask, start,
            temperature=self._train_temperature, return_entropy=True, return_hidden=self.value_head is not None,
        )
        values = self.value_head(response_slice(hidden[0], start)) if hidden else None
        pg_loss, pg_stats = policy_loss(
            logprobs, batch.logprobs, advantages, mask, hp.clip_policy, hp.clip_high,
            hp.loss_agg or default_loss_agg(hp.advantage), hp.ratio_level, batch.ref_logprobs,
            hp.kl_coef if hp.kl_mode == "loss" else 0.0, norm=self.loss_norm,
        )
        stats = {"policy_loss": pg_loss.detach(), "entropy": masked_mean(entropy.detach(), mask), **pg_stats}
        if values is None:  # no critic, or a separate one: the actor steps on its own loss
            self._step(actor_opt, pg_loss, self.actor.parameters())
            if critic_opt is None:
                return stats
            values = self.critic(batch.sequences, batch.attention_mask, start)
            vf_loss, vf_stats = ppo_value_loss(values.float(), batch.values, returns, mask, hp.clip_value)
            self._step(critic_opt, vf_loss, self.critic.parameters())
        else:
            vf_loss, vf_stats = ppo_value_loss(values.float(), batch.values, returns, mask, hp.clip_value)
            actor_opt.zero_grad()
            critic_opt.zero_grad()
            self.manual_backward(pg_loss + hp.vf_coef * vf_loss)
            for opt in (actor_opt, critic_opt):
                if hp.max_grad_norm is not None:
                    self.clip_gradients(opt, gradient_clip_val=hp.max_grad_norm, gradient_clip_algorithm="norm")
                opt.step()
        return {**stats, "value_loss": vf_loss.detach(), **vf_stats}

    def _step(self, opt, loss: Tensor, params) -> None:
        opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.max_grad_norm is not None:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")
        opt.step()

    @property
    def _train_temperature(self) -> float:
        return self.hparams.temperature if self.hparams.do_sample else 1.0

    def training_step(self, batch: list[PromptRecord], batch_idx: int) -> None:
        hp = self.hparams
        t0 = time.perf_counter()
        self._check_groups([r.id for r in batch])
        rollout = self.rollout(batch)
        t1 = time.perf_counter()
        scores, categories = score_texts(rollout.texts, batch, self.reward_fn)
        t2 = time.perf_counter()
        scores = scores.to(self.device)
        if hp.advantage != "gae" and hp.reward_clip is not None:
            scores = scores.clamp(-hp.reward_clip, hp.reward_clip)

        def gae() -> tuple[Tensor, Tensor]:
            _, advantages, returns = compute_advantages(
                rollout, scores, self._reward_kl_coef, hp.reward_clip, hp.gamma, hp.lam, hp.whiten_advantages
            )
            return advantages, returns

        stats, returns = self._update(rollout, scores, gae)
        t3 = time.perf_counter()
        self._log_step(rollout, scores, categories, stats, returns, (t1 - t0, t2 - t1, t3 - t2))

    @property
    def _reward_kl_coef(self) -> float:
        """The KL coefficient inside the reward (0 when ``kl_mode: loss`` puts the KL in the loss instead)."""
        return self.hparams.kl_coef if self.hparams.kl_mode == "reward" else 0.0

    def _check_groups(self, ids: list[str]) -> None:
        if self.hparams.advantage in GROUP_ESTIMATORS:
            check_groups(ids, self.hparams.group_size)

    def _update(
        self, rollout: Rollout, scores: Tensor, gae: Callable[[], tuple[Tensor, Tensor]]
    ) -> tuple[dict[str, list[Tensor]], Tensor]:
        """Advantages (``gae()`` with the critic, else from one ``scores`` [B] per sample), then the updates;
        returns the stats and the value targets (the advantages when there is no critic to regress)."""
        hp = self.hparams
        if hp.advantage == "gae":
            advantages, returns = gae()
            step_stats = {}
        else:
            advantages, step_stats = critic_free_advantages(
                hp.advantage, rollout, scores, hp.group_size, self._reward_kl_coef, gamma=hp.gamma
            )
            returns = advantages
        return self._optimise(rollout, advantages, returns, {k: [v] for k, v in step_stats.items()}), returns

    def _optimise(self, rollout: Rollout, advantages: Tensor, returns: Tensor, stats: dict[str, list[Tensor]]) -> dict[str, list[Tensor]]:
        """``ppo_epochs`` passes of ``num_minibatches`` shuffled minibatch updates; appends their stats."""
        n = rollout.sequences.shape[0]
        for _ in range(self.hparams.ppo_epochs):
            for index in torch.randperm(n, device=self.device).tensor_split(max(1, min(self.hparams.num_minibatches, n))):
                for k, v in self._ppo_update(rollout.select(index), advantages[index], returns[index]).items():
                    stats.setdefault(k, []).append(v)
        return stats

    def _log_step(self, rollout: Rollout, scores: Tensor, categories: list[str], stats, returns: Tensor, times) -> None:
        n, mask = len(categories), rollout.response_mask
        seq_kl = ((rollout.logprobs - rollout.ref_logprobs) * mask).sum(dim=1).mean()
        logs = {
            "train/reward": scores.mean(),
            "train/kl": seq_kl,
            "train/response_length": mask.sum(dim=1).mean(),
            **{f"time/{k}_s": torch.tensor(v) for k, v in zip(("rollout", "score", "train"), times, strict=True)},
        }
        if self.critic is not None or self.value_head is not None:
            logs.update({"train/return": masked_mean(returns, mask), "train/value": masked_mean(rollout.values, mask)})
        logs.update({f"train/{k}": torch.stack(v).mean() for k, v in stats.items()})
        logs.update({f"train/frac_{c}": torch.tensor(categories.count(c) / n) for c in self.categories})
        self.log_dict({k: v.float().to(self.device) for k, v in logs.items()}, on_step=True, batch_size=n)
        self.log("train/reward_step", scores.mean().to(self.device), prog_bar=True, on_step=True, batch_size=n)

    def validation_step(self, batch: list[PromptRecord], batch_idx: int) -> None:
        """Greedy rollouts on held-out prompts: mean reward and share of fully correct calls."""
        hp = self.hparams
        stop_ids, stop_strings = self._stop_for(batch)
        out = generate(
            self.actor, self.tokenizer, [r.text for r in batch], max_new_tokens=hp.max_new_tokens,
            stop_token_ids=stop_ids, stop_strings=stop_strings or None, use_cache=hp.use_cache,
        )
        scores, categories = score_texts(out.texts, batch, self.reward_fn)
        correct = torch.tensor([c in ("correct", "all_right") for c in categories], dtype=torch.float32)
        self.val_reward.update(scores.to(self.device))
        self.val_correct.update(correct.to(self.device))
        self.log("val/reward", self.val_reward, prog_bar=True, batch_size=len(batch))
        self.log("val/correct", self.val_correct, batch_size=len(batch))
        for c, metric in self.val_frac.items():
            metric.update(torch.tensor([float(x == c) for x in categories], device=self.device))
            self.log(f"val/frac_{c}", metric, batch_size=len(batch))

    def configure_optimizers(self):
        hp = self.hparams
        actor_opt = torch.optim.AdamW(self.actor.parameters(), lr=hp.actor_lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        if self.critic is None and self.value_head is None:
            return actor_opt
        critic = self.critic if self.critic is not None else self.value_head
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=hp.critic_lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        return [actor_opt, critic_opt]

    # ------------------------------------------------------------------ checkpoints + export
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # The reference is the initial actor, rebuilt from ``actor`` at construction: not worth a second copy.
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("reference.")}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for k, v in self.reference.state_dict().items():
            state.setdefault(f"reference.{k}", v)

    def export_hf(self, directory: str | Path) -> Path:
        """Write the actor + tokenizer in Hugging Face format."""
        return export_hf_model(self.actor, self.tokenizer, directory)
