"""Rollout engines: what generates RL rollouts, token ids in, token ids and sampling log-probs out.

    engine = build_engine("vllm", actor, tokenizer, VLLMSettings(gpu_memory_utilization=0.3))  # once per fit
    out = engine.generate(prompt_ids, SamplingSettings(max_new_tokens=48, do_sample=True, stop_strings=("</s>",)))
    out.responses, out.response_mask, out.logprobs      # GenerationOutput: ids as sampled, the sampler's log-probs
    engine.sync_weights(actor)                          # after optimizer steps: weights in, prefix cache reset

- ``hf`` (:class:`HFEngine`, the default): Hugging Face ``generate`` on the trainer's own module.
- ``vllm`` (:class:`VLLMEngine`): a vLLM engine colocated with the trainer, in-process, on the same device.

Both take prompt token ids (nothing is decoded and re-encoded) and stop by the same rules
(:func:`~tl_lightning.generation.stop_rules`: end-of-turn ids, multi-token stop strings cut afterwards,
``max_new_tokens``), so a module sees the same :class:`~tl_lightning.generation.GenerationOutput` from either.

The policy ratio's old log-probs still come from the trainer's forward pass; the sampler's own log-probs
measure how far the sampler is from the trainer (:func:`sampler_mismatch`) and, optionally, correct for it
(:func:`tis_weights`, truncated importance sampling as in TRL and verl).
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from tl_lightning.generation import GenerationOutput, finish_output, generate, left_padded, pad_id, stop_rules
from tl_lightning.rl.losses import masked_mean

__all__ = [
    "ENGINES", "HFEngine", "RolloutEngine", "RolloutEngineHooks", "SamplingSettings", "VLLMEngine", "VLLMSettings",
    "build_engine", "check_engine_settings", "full_weights", "sampler_mismatch", "tis_weights",
]

ENGINES = ("hf", "vllm")


@dataclass(frozen=True)
class SamplingSettings:
    """One generation request for every prompt of a batch (greedy unless ``do_sample``)."""

    max_new_tokens: int = 128
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: tuple[int, ...] | None = None
    stop_strings: tuple[str, ...] | None = None
    seed: int | None = None
    logprobs: bool = True


class RolloutEngine(Protocol):
    def generate(self, prompt_ids: Sequence[Sequence[int]], sampling: SamplingSettings) -> GenerationOutput: ...

    def sync_weights(self, model: torch.nn.Module) -> float: ...

    def close(self) -> None: ...


class HFEngine:
    """HF ``generate`` on the trainer's module itself: its weights are always current, ``sync_weights`` is free."""

    def __init__(self, model: torch.nn.Module, tokenizer, use_cache: bool = True) -> None:
        self.model, self.tokenizer, self.use_cache = model, tokenizer, use_cache

    def generate(self, prompt_ids: Sequence[Sequence[int]], sampling: SamplingSettings) -> GenerationOutput:
        s = sampling
        return generate(
            self.model, self.tokenizer, [], prompt_ids=prompt_ids, max_new_tokens=s.max_new_tokens, do_sample=s.do_sample,
            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, stop_token_ids=s.stop_token_ids,
            stop_strings=s.stop_strings, use_cache=self.use_cache, seed=s.seed if s.do_sample else None,
            return_logprobs=s.logprobs,
        )

    def sync_weights(self, model: torch.nn.Module) -> float:
        return 0.0

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class VLLMSettings:
    """The colocated vLLM engine (``vllm:`` of the RL modules; docs/vllm.md).

    - ``sync_every``: push the trainer's weights to the engine after every k training steps (each holds
      ``ppo_epochs x num_minibatches`` optimizer steps); k > 1 samples from weights up to k-1 steps old.
    - ``gpu_memory_utilization``: the share of the GPU the engine may take, weights and KV cache (on the CPU
      build: of host memory); the trainer's actor, reference and optimizer states live in the rest.
    - ``kv_cache_memory_bytes``: an exact KV-cache size instead (then ``gpu_memory_utilization`` is unused).
    - ``max_model_len``: the longest prompt + response (None: the actor's ``max_position_embeddings``).
    - ``dtype``: the engine's weights (None: the actor's). ``enforce_eager``: no CUDA graphs (slower, less memory).
    - ``enable_prefix_caching``: reuse KV of shared prompt prefixes (G samples of a prompt, multi-turn contexts).
    - ``seed``: the engine's base seed (each rank adds its rank).
    """

    sync_every: int = 1
    gpu_memory_utilization: float = 0.3
    kv_cache_memory_bytes: int | None = None
    max_model_len: int | None = None
    dtype: str | None = None
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (
            ("sync_every", self.sync_every >= 1, ">= 1"),
            ("gpu_memory_utilization", 0 < self.gpu_memory_utilization <= 1, "in (0, 1]"),
            ("kv_cache_memory_bytes", self.kv_cache_memory_bytes is None or self.kv_cache_memory_bytes > 0, "> 0 or None"),
            ("max_model_len", self.max_model_len is None or self.max_model_len >= 2, ">= 2 or None"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"vllm settings: {name} must be {rule}, got {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> VLLMSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values or {}) - known)
        if unknown:
            raise ValueError(f"vllm settings: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**dict(values or {}))


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The causal LM under a peft wrapper (its config and class name are what vLLM builds)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def full_weights(model: torch.nn.Module) -> dict[str, Tensor]:
    """The model's full weights under Hugging Face checkpoint names, as vLLM's loader reads them.

    Sharded weights (FSDP1, FSDP2) are gathered by ``torch.distributed.checkpoint``'s ``get_model_state_dict``
    with ``full_state_dict=True``: an all-gather that every rank runs, after which each rank holds the full
    tensors (one transient full copy) for its own engine. A peft model is merged first (LoRA folded into the
    base weights, adapter names dropped) and unmerged after.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True)
    if not hasattr(model, "merge_adapter"):
        return get_model_state_dict(model, options=options)
    model.merge_adapter()
    try:
        # peft names: base_model.model.<hf name>, a LoRA-wrapped layer's weight under .base_layer; those are views
        # of parameters that unmerging changes back, so they are copied while merged
        return {
            k.removeprefix("base_model.model.").replace(".base_layer.", "."): v.clone() if ".base_layer." in k else v
            for k, v in get_model_state_dict(model, options=options).items()
            if ".lora_" not in k
        }
    finally:
        model.unmerge_adapter()


class VLLMEngine:
    """vLLM colocated with the trainer: built once per fit from the actor's weights, synced in place after.

    The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so a weight sync hands tensors over
    without copying them through a socket. Under ``torch.distributed`` (DDP, FSDP) it joins the trainer's
    process group as vLLM's ``external_launcher`` with one data-parallel replica per rank: each rank generates
    its own share of the prompts with its own engine. The engine starts from dummy weights and the actor's
    are synced in at once, so nothing is written to disk.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, settings: VLLMSettings | None = None) -> None:
        settings = settings or VLLMSettings()
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError(
                "rollout_engine: vllm needs the vllm package: pip install 'tl_lightning[vllm]' on GPUs (docs/vllm.md)"
            ) from e
        self.tokenizer, self.settings = tokenizer, settings
        lm = _unwrapped(model)
        param = next(lm.parameters())
        self.device = param.device
        config = lm.config.__class__.from_dict(lm.config.to_dict())
        config.architectures = [type(lm).__name__]
        self._config_dir = tempfile.TemporaryDirectory(prefix="tl_lightning_vllm_")
        config.save_pretrained(self._config_dir.name)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        rank, world = _rank_and_world()
        kwargs = dict(
            model=self._config_dir.name, load_format="dummy", skip_tokenizer_init=True,
            dtype=settings.dtype or str(param.dtype).removeprefix("torch."),
            max_model_len=settings.max_model_len or getattr(lm.config, "max_position_embeddings", None),
            gpu_memory_utilization=settings.gpu_memory_utilization, kv_cache_memory_bytes=settings.kv_cache_memory_bytes,
            enforce_eager=settings.enforce_eager, enable_prefix_caching=settings.enable_prefix_caching,
            seed=settings.seed + rank, logprobs_mode="processed_logprobs",  # the log-probs of what was sampled
        )
        if world > 1:
            kwargs.update(distributed_executor_backend="external_launcher", data_parallel_size=world)
        # vLLM seeds python, numpy and torch globally at start-up: keep the trainer's random streams as they were
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            self.llm = LLM(**kwargs)
        random.setstate(py_state)
        np.random.set_state(np_state)
        self.sync_weights(model)

    def generate(self, prompt_ids: Sequence[Sequence[int]], sampling: SamplingSettings) -> GenerationOutput:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        s, rows = sampling, [list(r) for r in prompt_ids]
        stop_ids, long_strings = stop_rules(self.tokenizer, s.stop_token_ids, s.stop_strings)
        params = [
            SamplingParams(
                max_tokens=s.max_new_tokens, temperature=s.temperature if s.do_sample else 0.0,
                top_p=s.top_p if s.do_sample else 1.0, top_k=s.top_k if s.do_sample else 0,
                seed=None if s.seed is None or not s.do_sample else hash((s.seed, i)) % 2**31,
                # the stop ids are exactly generate()'s: the model's own eos stops a row only if it is among them
                stop_token_ids=stop_ids, ignore_eos=True, logprobs=0 if s.logprobs else None, detokenize=False,
            )
            for i in range(len(rows))
        ]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=r) for r in rows], params, use_tqdm=False)
        done = [o.outputs[0] for o in outs]
        width = max(1, max(len(c.token_ids) for c in done))
        responses = torch.full((len(rows), width), pad_id(self.tokenizer), dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        logprobs = torch.zeros(len(rows), width) if s.logprobs else None
        for b, c in enumerate(done):
            n = len(c.token_ids)
            responses[b, :n], mask[b, :n] = torch.tensor(c.token_ids, dtype=torch.long), 1
            if logprobs is not None:
                logprobs[b, :n] = torch.tensor([step[t].logprob for t, step in zip(c.token_ids, c.logprobs, strict=True)])
        by_token = torch.tensor([c.finish_reason == "stop" for c in done])
        prompt, prompt_mask = left_padded(self.tokenizer, rows, None)
        sequences = torch.cat([prompt, responses], dim=1).to(self.device)
        return finish_output(
            self.tokenizer, sequences, prompt_mask.to(self.device), mask.to(self.device), by_token, long_strings,
            logprobs=logprobs,
        )

    def sync_weights(self, model: torch.nn.Module) -> float:
        """Load the model's current weights into the engine in place, then drop the prefix cache (its KV entries
        were computed by the old weights: reused, they would skew every later rollout). Returns the seconds taken."""
        start = time.perf_counter()
        weights = full_weights(model)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(weights.items())})
        self.llm.reset_prefix_cache()
        return time.perf_counter() - start

    def close(self) -> None:
        del self.llm
        self._config_dir.cleanup()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _rank_and_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_engine_settings(rollout_engine: str, vllm: Mapping[str, Any] | None) -> VLLMSettings:
    """The RL modules' engine arguments checked at construction (before any model loads); the vLLM settings."""
    if rollout_engine not in ENGINES:
        raise ValueError(f"rollout_engine must be one of {ENGINES}, got {rollout_engine!r}")
    return VLLMSettings.from_dict(vllm)


def build_engine(
    name: str, model: torch.nn.Module, tokenizer, vllm: VLLMSettings | None = None, use_cache: bool = True
) -> RolloutEngine:
    """The engine called ``name`` (one of :data:`ENGINES`) for ``model``."""
    if name == "hf":
        return HFEngine(model, tokenizer, use_cache)
    if name == "vllm":
        return VLLMEngine(model, tokenizer, vllm or VLLMSettings())
    raise ValueError(f"rollout_engine must be one of {ENGINES}, got {name!r}")


# ----------------------------------------------------------------------------- sampler-trainer mismatch
def sampler_mismatch(trainer_logprobs: Tensor, sampling_logprobs: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """How far the sampler's log-probs [B, T] are from the trainer's [B, T] on the sampled tokens (mask [B, T]).

    - ``abs_diff``: mean ``|logp_sampler - logp_trainer|``;
    - ``kl``: the k3 estimate of KL(sampler || trainer) from the sampler's own samples,
      ``mean(r - 1 - log r)``, ``r = p_trainer / p_sampler``: >= 0 per token, 0 only where they agree.
    """
    d = (sampling_logprobs - trainer_logprobs).float()
    return {"abs_diff": masked_mean(d.abs(), mask), "kl": masked_mean(torch.expm1(-d) + d, mask)}


def tis_weights(trainer_logprobs: Tensor, sampling_logprobs: Tensor, mask: Tensor, cap: float) -> Tensor:
    """Truncated importance-sampling weights [B, T]: ``min(p_trainer / p_sampler, cap)`` on valid tokens, 0 elsewhere.

    The tokens were drawn by the sampler, the loss is the trainer's: each token's surrogate is reweighted by
    how much likelier the trainer finds it, capped so that a few tokens the sampler found unlikely cannot
    dominate the gradient (TRL's ``vllm_importance_sampling_cap``, verl's ``tis_imp_ratio_cap``). Detached.
    """
    ratio = torch.exp((trainer_logprobs - sampling_logprobs).float()).clamp(max=cap)
    return (ratio * mask).detach()


class RolloutEngineHooks:
    """The RL modules' side of the seam, mixed in before ``LightningModule``. It reads the module's ``actor``,
    ``tokenizer``, ``vllm_settings`` and hparams ``rollout_engine``, ``use_cache``, ``tis_cap``; the module
    generates through :attr:`engine`.

    The engine is built once per fit (``on_fit_start``: after the strategy placed and wrapped the actor),
    synced after every ``sync_every`` training steps and before validation when stale, and closed after the
    fit. Outside a fit (``validate``, ``test``) rollouts use HF on the actor.
    """

    _engine: RolloutEngine | None = None
    _stale_steps: int = 0

    @property
    def engine(self) -> RolloutEngine:
        if self._engine is None:
            self._engine = HFEngine(self.actor, self.tokenizer, self.hparams.use_cache)
        return self._engine

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.hparams.rollout_engine != "hf":
            self._engine = build_engine(self.hparams.rollout_engine, self.actor, self.tokenizer, self.vllm_settings)
        self._stale_steps = 0

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        if self.hparams.rollout_engine == "hf":
            return  # it generates with the actor itself: nothing to sync
        self._stale_steps += 1
        if self._stale_steps >= self.vllm_settings.sync_every:
            self.log("time/sync_s", self._sync(), on_step=True, batch_size=len(batch))

    def on_validation_start(self) -> None:
        super().on_validation_start()
        if self._stale_steps:
            self._sync()

    def on_fit_end(self) -> None:
        super().on_fit_end()
        if self._engine is not None:
            self._engine.close()
        self._engine = None

    def _sync(self) -> float:
        self._stale_steps = 0
        return self.engine.sync_weights(self.actor)

    def sampler_logs(self, logprobs: Tensor, sampling_logprobs: Tensor | None, mask: Tensor) -> dict[str, Tensor]:
        """``sampler_abs_diff`` and ``sampler_kl`` of a rollout (nothing when the engine gave no log-probs)."""
        if sampling_logprobs is None:
            return {}
        return {f"sampler_{k}": v for k, v in sampler_mismatch(logprobs, sampling_logprobs, mask).items()}

    def is_weights(
        self, logprobs: Tensor, sampling_logprobs: Tensor | None, mask: Tensor
    ) -> tuple[Tensor | None, dict[str, Tensor]]:
        """:func:`tis_weights` [B, T] with ``tis_cap`` and their stats (``tis_weight`` mean, ``tis_capped`` share of
        tokens at the cap), or ``(None, {})`` when it is off or the engine gave no log-probs."""
        cap = self.hparams.tis_cap
        if cap is None or sampling_logprobs is None:
            return None, {}
        w = tis_weights(logprobs, sampling_logprobs, mask, cap)
        return w, {"tis_weight": masked_mean(w, mask), "tis_capped": masked_mean((w >= cap).float(), mask)}
