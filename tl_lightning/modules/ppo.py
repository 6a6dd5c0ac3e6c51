"""TLPPOModule: PPO from an SFT model with the tool-error reward (IRM) and a KL penalty to the SFT reference.

    python -m tl_lightning fit --config configs/ppo_quickstart.yaml
    python -m tl_lightning fit --config configs/paper/ppo_codellama7b.yaml

One training step is one PPO iteration on a batch of prompts (DESIGN.md §1, DeepSpeed-Chat's
settings): greedy rollout with the KV cache -> IRM reward of the parsed call, clipped to ±5 and
added at the last generated token, plus ``-kl_coef * (logp - logp_ref)`` on every token -> GAE
(gamma 1, lambda 0.95) -> whitened advantages -> ``ppo_epochs`` x minibatches of clipped policy and
value updates, with separate actor and critic optimizers. The module is thin: rollout, scoring
and advantages are the pure helpers below, the maths is in :mod:`tl_lightning.losses`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor
from torchmetrics import MeanMetric
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tl_lightning.data.prompts import PromptRecord
from tl_lightning.data.schema import FeedbackCategory
from tl_lightning.generation import generate, position_ids_from_mask, sequence_logprobs
from tl_lightning.losses import (
    gae,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    token_rewards,
)
from tl_lightning.models import TINY_MODEL, load_causal_lm, resolve_tokenizer
from tl_lightning.checkpoints import TokenizerCheckpointMixin, export_hf_model, tokenizer_from_state
from tl_lightning.rewards import IRMValues, RewardCategory, category_reward, tool_call_reward
from tl_lightning.tools.calls import parse_calls
from tl_lightning.value_model import ValueHead, ValueModel, response_slice

__all__ = ["Rollout", "TLPPOModule", "compute_advantages", "gold_reward", "load_actor", "sandbox_reward", "score_texts"]

#: Outcomes logged every step (as the share of responses), so the logged keys never change: the IRM
#: outcomes for gold rewards, the feedback categories (plus unparseable output) for sandbox rewards.
REWARD_CATEGORIES = {
    "gold": [c.value for c in RewardCategory],
    "sandbox": ["unparseable"] + [c.value for c in FeedbackCategory],
}


# ============================================================================ pure helpers
@dataclass
class Rollout:
    """B generated responses and what PPO needs of them, all detached. P: prompt width, T: response width.

    - ``sequences``: [B, P+T] prompt (left-padded) + response (right-padded) ids.
    - ``attention_mask``: [B, P+T] 1 on real tokens.
    - ``response_mask``: [B, T] float, 1 on generated tokens up to and including the stop token.
    - ``logprobs`` / ``ref_logprobs``: [B, T] log-probs of the response tokens under the acting
      policy / the frozen reference.
    - ``values``: [B, T] critic values of the states before each response token.
    - ``texts``: the decoded responses (stop token excluded).
    """

    sequences: Tensor
    attention_mask: Tensor
    response_mask: Tensor
    logprobs: Tensor
    ref_logprobs: Tensor
    values: Tensor
    texts: list[str]

    @property
    def response_start(self) -> int:
        return self.sequences.shape[1] - self.response_mask.shape[1]

    def select(self, index: Tensor) -> Rollout:
        """The rows ``index`` (a minibatch)."""
        rows = index.tolist()
        return Rollout(
            **{f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "texts"},
            texts=[self.texts[i] for i in rows],
        )


def gold_reward(text: str, record: PromptRecord, values: IRMValues) -> tuple[float, str]:
    """IRM reward of a generated step against the record's gold calls (DESIGN.md §1 table)."""
    reward, category = tool_call_reward(parse_calls(text, record.call_format), record.gold, record.tools, values)
    return reward, category.value


def sandbox_reward(text: str, record: PromptRecord, sandbox: Any, table: dict[str, float] | None = None) -> tuple[float, str]:
    """Reward from really executing the generated calls: the category of the feedback, via a table.

    The sandbox is reset to the record's initial state (``context.meta["initial_state"]`` if any) and
    the context's earlier steps are replayed, so the call runs in the state the trajectory reached.
    The step's category is the first error among its calls' feedback (A's ``step_category``).
    """
    from tl_lightning.data.feedback import step_category

    parsed = parse_calls(text, record.call_format)
    if not parsed.ok:
        return category_reward(None, table), "unparseable"
    sandbox.reset(record.context.meta.get("initial_state"))
    for step in record.context.steps:
        for call in step.calls:
            sandbox.execute(call)
    feedback = [sandbox.execute(call) for call in parsed.calls]
    category = step_category(feedback)
    return category_reward(category, table), category.value


def score_texts(
    texts: Sequence[str], records: Sequence[PromptRecord], reward_fn: Callable[[str, PromptRecord], tuple[float, str]]
) -> tuple[Tensor, list[str]]:
    """Scores [B] (float32) and outcome categories of the responses."""
    if len(texts) != len(records):
        raise ValueError(f"{len(texts)} responses for {len(records)} prompts")
    pairs = [reward_fn(t, r) for t, r in zip(texts, records, strict=True)]
    return torch.tensor([p[0] for p in pairs], dtype=torch.float32), [p[1] for p in pairs]


def compute_advantages(
    rollout: Rollout, scores: Tensor, kl_coef: float, reward_clip: float | None, gamma: float, lam: float, whiten: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-token rewards, advantages and returns, each [B, T] (DeepSpeed-Chat's recipe).

    Advantages are whitened over the valid tokens of the batch (when ``whiten`` and there are at
    least two); returns stay in reward units: they are the critic's regression targets.
    """
    mask = rollout.response_mask
    rewards = token_rewards(scores.to(rollout.logprobs), rollout.logprobs, rollout.ref_logprobs, mask, kl_coef, reward_clip)
    advantages, returns = gae(rewards, rollout.values, mask, gamma, lam)
    if whiten and mask.sum() >= 2:
        advantages = masked_whiten(advantages, mask)
    return rewards, advantages, returns


# ============================================================================ model loading
def load_actor(
    actor: str, tokenizer: PreTrainedTokenizerBase | str | None, **kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The actor and its tokenizer from a ``TLSFTModule`` ``.ckpt``, an HF export / path, or ``"tl-tiny"``.

    A ``.ckpt`` is rebuilt from its hyperparameters (model name, tiny config, LoRA) and its
    ``model.*`` weights; its stored tokenizer is used unless one is given.
    """
    if str(actor).endswith(".ckpt"):
        ckpt = torch.load(actor, map_location="cpu", weights_only=False)
        hp = ckpt.get("hyper_parameters", {})
        if "model" not in hp:
            raise ValueError(f"{actor}: not a TLSFTModule checkpoint (no 'model' hyperparameter)")
        if tokenizer is None and "tokenizer" in ckpt:
            tokenizer = tokenizer_from_state(ckpt["tokenizer"])
        tok = resolve_tokenizer(tokenizer, default=hp["model"])
        for key in ("tiny_config", "lora"):
            kwargs.setdefault(key, hp.get(key))
        model = load_causal_lm(hp["model"], tokenizer=tok, **kwargs)
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state)
        return model.train(), tok
    tok = resolve_tokenizer(tokenizer, default=str(actor))
    return load_causal_lm(str(actor), tokenizer=tok, **kwargs), tok


# ============================================================================ module
class TLPPOModule(TokenizerCheckpointMixin, LightningModule):
    """PPO with IRM rewards (or sandbox-feedback rewards) and a KL penalty to the frozen initial actor.

    Args:
        actor: a ``TLSFTModule`` checkpoint (``.ckpt``), an HF export directory, a hub name, or ``"tl-tiny"``.
        tokenizer: the data's tokenizer (the CLI links the datamodule's), a name/path, or None.
        critic: ``"separate"`` (a copy of the actor's backbone + value head; the paper) or ``"shared"``
            (a value head on the actor's last hidden state, trained through one combined loss).
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
        dtype, gradient_checkpointing, tiny_config: passed to ``load_causal_lm``.
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.automatic_optimization = False
        kwargs = {"dtype": dtype, "gradient_checkpointing": gradient_checkpointing}
        if tiny_config is not None:
            kwargs["tiny_config"] = tiny_config
        self.actor, self.tokenizer = load_actor(actor, tokenizer, **kwargs)
        self.reference = copy.deepcopy(self.actor).eval().requires_grad_(False)
        if critic == "separate":
            self.critic = ValueModel.from_causal_lm(self.actor)
            self.value_head = None
        elif critic == "shared":
            self.critic = None
            self.value_head = ValueHead(self.actor.config.hidden_size)
        else:
            raise ValueError(f"critic must be 'separate' or 'shared', got {critic!r}")
        self.irm = IRMValues.from_dict(irm_values or {})
        if reward_source not in ("gold", "sandbox"):
            raise ValueError(f"reward_source must be 'gold' or 'sandbox', got {reward_source!r}")
        self._sandbox = None
        self.categories = REWARD_CATEGORIES[reward_source]
        self.val_reward = MeanMetric()
        self.val_correct = MeanMetric()
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

    def _values(self, sequences: Tensor, attention_mask: Tensor, start: int) -> Tensor:
        if self.critic is not None:
            return self.critic(sequences, attention_mask, start)
        out = self.actor(
            input_ids=sequences, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask),
            use_cache=False, output_hidden_states=True, logits_to_keep=1,
        )
        return self.value_head(response_slice(out.hidden_states[-1], start))

    @torch.no_grad()
    def rollout(self, records: Sequence[PromptRecord], greedy: bool = False) -> Rollout:
        """Generate one response per prompt and score it under the policy, reference and critic."""
        hp = self.hparams
        sample = hp.do_sample and not greedy
        stop_ids, stop_strings = self._stop_for(records)
        out = generate(
            self.actor, self.tokenizer, [r.text for r in records], max_new_tokens=hp.max_new_tokens,
            do_sample=sample, temperature=hp.temperature, top_p=hp.top_p, top_k=hp.top_k,
            stop_token_ids=stop_ids, stop_strings=stop_strings or None, use_cache=hp.use_cache,
        )
        attn, start = out.attention_mask, out.prompt_length
        temperature = hp.temperature if sample else 1.0
        was_training = self.actor.training
        self.actor.eval()
        try:
            logprobs = sequence_logprobs(self.actor, out.sequences, attn, start, temperature=temperature)
            values = self._values(out.sequences, attn, start)
        finally:
            self.actor.train(was_training)
        ref_logprobs = sequence_logprobs(self.reference, out.sequences, attn, start, temperature=temperature)
        mask = out.response_mask.to(logprobs.dtype)
        return Rollout(out.sequences, attn, mask, logprobs * mask, ref_logprobs * mask, values.float() * mask, out.texts)

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
        """One minibatch update of actor and critic; returns detached stats."""
        hp = self.hparams
        actor_opt, critic_opt = self.optimizers()
        mask, start = batch.response_mask, batch.response_start
        if self.critic is None:  # shared backbone: one forward for logits and values, one combined loss
            out = self.actor(
                input_ids=batch.sequences, attention_mask=batch.attention_mask,
                position_ids=position_ids_from_mask(batch.attention_mask), use_cache=False,
                output_hidden_states=True, logits_to_keep=mask.shape[1] + 1,
            )
            logp_all = torch.log_softmax(out.logits[:, :-1].float() / self._train_temperature, dim=-1)
            logprobs = logp_all.gather(-1, batch.sequences[:, start:].unsqueeze(-1)).squeeze(-1)
            entropy = -(logp_all.exp() * logp_all).sum(-1)
            values = self.value_head(response_slice(out.hidden_states[-1], start))
        else:
            logprobs, entropy = sequence_logprobs(
                self.actor, batch.sequences, batch.attention_mask, start,
                temperature=self._train_temperature, return_entropy=True,
            )
            values = None
        pg_loss, pg_stats = ppo_policy_loss(logprobs, batch.logprobs, advantages, mask, hp.clip_policy)
        if values is None:
            self._step(actor_opt, pg_loss, self.actor.parameters())
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
        return {
            "policy_loss": pg_loss.detach(), "value_loss": vf_loss.detach(),
            "entropy": masked_mean(entropy.detach(), mask), **pg_stats, **vf_stats,
        }

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
        rollout = self.rollout(batch)
        t1 = time.perf_counter()
        scores, categories = score_texts(rollout.texts, batch, self.reward_fn)
        t2 = time.perf_counter()
        _, advantages, returns = compute_advantages(
            rollout, scores.to(self.device), hp.kl_coef, hp.reward_clip, hp.gamma, hp.lam, hp.whiten_advantages
        )
        stats: dict[str, list[Tensor]] = {}
        n = len(batch)
        splits = max(1, min(hp.num_minibatches, n))
        for _ in range(hp.ppo_epochs):
            for index in torch.randperm(n, device=self.device).tensor_split(splits):
                mb = rollout.select(index)
                for k, v in self._ppo_update(mb, advantages[index], returns[index]).items():
                    stats.setdefault(k, []).append(v)
        t3 = time.perf_counter()
        self._log_step(rollout, scores, categories, stats, returns, (t1 - t0, t2 - t1, t3 - t2))

    def _log_step(self, rollout: Rollout, scores: Tensor, categories: list[str], stats, returns: Tensor, times) -> None:
        n, mask = len(categories), rollout.response_mask
        seq_kl = ((rollout.logprobs - rollout.ref_logprobs) * mask).sum(dim=1).mean()
        logs = {
            "train/reward": scores.mean(),
            "train/kl": seq_kl,
            "train/response_length": mask.sum(dim=1).mean(),
            "train/return": masked_mean(returns, mask),
            "train/value": masked_mean(rollout.values, mask),
            "time/rollout_s": torch.tensor(times[0]),
            "time/score_s": torch.tensor(times[1]),
            "time/train_s": torch.tensor(times[2]),
        }
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
        critic_params = self.critic.parameters() if self.critic is not None else self.value_head.parameters()
        actor_opt = torch.optim.AdamW(self.actor.parameters(), lr=hp.actor_lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        critic_opt = torch.optim.AdamW(critic_params, lr=hp.critic_lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
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
