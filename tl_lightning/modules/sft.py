"""TLSFTModule: supervised fine-tuning with the TL-Training objective (MAE + PKT, docs/method.md#sft-mae-and-pkt).

    python -m tl_lightning fit --config configs/quickstart.yaml
    python -m tl_lightning fit --config configs/paper/sft_codellama7b.yaml --config configs/experiments/sft_pkt.yaml

The module is thin: it unpacks a :class:`~tl_lightning.data.batch.TrajectoryBatch`, calls the pure
functions of :mod:`tl_lightning.losses` and logs. The four paper ablations are the flags
``use_mae`` / ``use_pkt`` on the same encoded data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torchmetrics import MeanMetric
from transformers import PreTrainedTokenizerBase

from tl_lightning.attention import VARLEN_SDPA, model_inputs
from tl_lightning.checkpoints import TokenizerCheckpointMixin, export_hf_model, shard_for_strategy
from tl_lightning.data.batch import TrajectoryBatch
from tl_lightning.losses import HiddenAtLossPositions, dropped_step_fraction, pkt_weights, weighted_masked_nll
from tl_lightning.models import (
    TINY_MODEL,
    check_model_source,
    default_tokenizer,
    hidden_states_at,
    load_causal_lm,
    logits_only_at,
)
from tl_lightning.ranges import check_ranges, choose
from tl_lightning.tokenization import check_tokenizer_source, resolve_tokenizer

__all__ = ["TLSFTModule"]

#: lr_schedule -> the transformers function that builds it, by name: importing them at module level pulls in
#: transformers.trainer_utils (and peft, when installed), ~0.8 s of every CLI start that names this module.
_SCHEDULES = {
    "cosine": "get_cosine_schedule_with_warmup",
    "linear": "get_linear_schedule_with_warmup",
    "constant": "get_constant_schedule_with_warmup",
}


def _schedule(name: str, optimizer: torch.optim.Optimizer, warmup: int, total: int) -> Any:
    import transformers

    build = getattr(transformers, _SCHEDULES[name])
    return build(optimizer, warmup) if name == "constant" else build(optimizer, warmup, total)


class TLSFTModule(TokenizerCheckpointMixin, LightningModule):
    """Causal-LM SFT on tool-use trajectories with MAE (drop erroneous steps) and PKT (weight key tokens).

    Args:
        model: ``"tl-tiny"`` (random init), a shipped pretrained name (``models.SHIPPED_MODELS``) or any HF
            causal LM name / local path (see :func:`~tl_lightning.models.load_causal_lm`).
        tokenizer: the data's tokenizer (the CLI links the datamodule's), a name/path, or ``None``.
        use_mae: give erroneous steps zero weight (MAE).
        use_pkt: weight key tokens by ``clip(|NK_s|/|K_s|, 1, w_max)`` (PKT).
        w_max: PKT's clip (9 in the paper).
        lr, weight_decay, betas: AdamW settings (paper: lr 1e-6).
        lr_schedule: ``cosine`` (paper), ``linear`` or ``constant``, after a linear warmup.
        warmup_ratio: warmup as a fraction of the total optimizer steps (paper: 1%).
        optimizer: optional optimizer factory (LightningCLI ``class_path``) replacing AdamW.
        selective_logits: run the LM head only at the positions that carry loss ([N, V] logits instead
            of [B, L, V]; see :func:`~tl_lightning.models.logits_only_at`). Same loss, less time and memory;
            turn off for a model whose output embedding cannot take a forward pre-hook.
        loss_chunk_size: when a batch has more loss positions than this, the head and cross-entropy run this
            many rows at a time under activation checkpointing (:func:`~tl_lightning.losses.chunked_nll`), so no
            [N, V] logits exist at once; ``None``/0: never chunk. Not under FSDP1, which reshards the head's
            weight after the forward. Chunking never saved time on CPU (LLaMA 256x4, vocab 32k, 760 positions:
            chunks of 128-512 rows took 1.04-1.12x the unchunked step), it caps memory: 1024 keeps each chunk's
            float32 logits under 0.6 GiB at a 152k vocabulary, and leaves every quick-start batch (~230 positions)
            in one plain pass (benchmarks/bench_sft_step.py --chunks).
        attn_implementation: ``"sdpa_varlen"`` (default; :mod:`tl_lightning.attention`): each trajectory of a
            row attends causally on its own from the batch's ``segment_lengths``, with no mask: sdpa's result, without
            the dense block-diagonal mask a packed row costs under ``"sdpa"``. ``"flash_attention_2"`` on CUDA with
            flash-attn; ``"sdpa"``/``"eager"``: transformers' own masks.
        dtype, gradient_checkpointing, lora, tiny_config: passed to ``load_causal_lm``, as is attn_implementation.

    Out-of-range settings (``w_max=-3``, ``lr=0``, ``warmup_ratio=1``...) are a ``ValueError`` at
    construction, as is a model or tokenizer that is neither a path nor a shipped or hub name.
    """

    #: Read by Lightning's ThroughputMonitor (configs/callbacks/sft.yaml logs tokens/s with it); no FLOP count is
    #: measured, so it logs no MFU.
    flops_per_batch: int | None = None

    def __init__(
        self,
        model: str = TINY_MODEL,
        tokenizer: PreTrainedTokenizerBase | str | None = None,
        use_mae: bool = True,
        use_pkt: bool = True,
        w_max: float = 9.0,
        lr: float = 1e-6,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        lr_schedule: Literal["cosine", "linear", "constant"] = "cosine",
        warmup_ratio: float = 0.01,
        optimizer: OptimizerCallable | None = None,
        selective_logits: bool = True,
        loss_chunk_size: int | None = 1024,
        dtype: str | None = None,
        gradient_checkpointing: bool = False,
        lora: dict[str, Any] | None = None,
        tiny_config: dict[str, Any] | None = None,
        attn_implementation: str | None = VARLEN_SDPA,
    ) -> None:
        check_ranges("TLSFTModule: ", locals())
        choose(_SCHEDULES, lr_schedule, "TLSFTModule: lr_schedule")
        if str(model).endswith(".ckpt"):
            raise ValueError(
                f"TLSFTModule: model {model!r} is a Lightning checkpoint; resume it with --ckpt_path, or export it "
                "to a Hugging Face directory (HFExportCallback) and start from that"
            )
        check_model_source(model)
        check_tokenizer_source(tokenizer)
        super().__init__()
        # The tokenizer object is not a hyperparameter: checkpoints carry its files instead.
        self.save_hyperparameters(ignore=["tokenizer", "optimizer"])
        self.tokenizer = resolve_tokenizer(tokenizer, default=default_tokenizer(model))
        self.model = load_causal_lm(
            model,
            tokenizer=self.tokenizer,
            dtype=dtype,
            gradient_checkpointing=gradient_checkpointing,
            lora=lora,
            tiny_config=tiny_config,
            attn_implementation=attn_implementation,
        )
        self.optimizer_factory = optimizer
        self.val_loss = MeanMetric()
        self.val_key_nll = MeanMetric()
        self.val_nonkey_nll = MeanMetric()

    # ------------------------------------------------------------------ forward + loss
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **model_kwargs: Any,
    ) -> torch.Tensor:
        """[B, L] ids -> [B, L, V] logits, or [N, V] at the ``positions`` only ([B, L] bool, or a flat [N]
        index). Packed rows pass ``position_ids`` and no ``attention_mask`` (see ``TrajectoryBatch``);
        ``model_kwargs`` go to the model (the segment lengths of :func:`~tl_lightning.attention.model_inputs`)."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                  "use_cache": False, **model_kwargs}
        if positions is None:
            return self.model(**kwargs).logits
        with logits_only_at(self.model, positions):
            return self.model(**kwargs).logits

    def _loss(
        self, batch: TrajectoryBatch, weights: torch.Tensor, normalizer: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hp = self.hparams
        index = batch.loss_index(drop_errors=hp.use_mae)
        inputs = model_inputs(self.model, batch)
        if not hp.selective_logits:
            logits = self(**inputs)
        elif hp.loss_chunk_size and index.numel() > hp.loss_chunk_size:
            with hidden_states_at(self.model, index) as captured:
                self.model(**inputs, use_cache=False)
            logits = HiddenAtLossPositions(captured["hidden"], captured["head"], hp.loss_chunk_size)
        else:
            logits = self(**inputs, positions=index)
        return weighted_masked_nll(
            logits, batch.labels, weights, key_mask=batch.key_mask, normalizer=normalizer, index=index
        )

    def _weights(self, batch: TrajectoryBatch) -> torch.Tensor:
        hp = self.hparams
        return pkt_weights(
            batch.labels, batch.key_mask, batch.step_ids, batch.error_mask,
            use_mae=hp.use_mae, use_pkt=hp.use_pkt, w_max=hp.w_max,
            segment_ids=batch.segment_ids, num_segments=batch.num_segments,
        )

    def _world_size(self) -> int:
        return self._trainer.world_size if self._trainer is not None else 1

    def _global_normalizer(self, batch: TrajectoryBatch, weights: torch.Tensor) -> torch.Tensor | None:
        """``global sum(w) / world_size``: with it, DDP's gradient average is the global weighted mean.
        One all-reduce of one scalar per step, issued without waiting on the host."""
        world = self._world_size()
        if world <= 1:
            return None
        # The local sum(w) of the loss: the weights of the tokens at the loss positions' next index.
        local = weights.reshape(-1).index_select(0, batch.loss_index(self.hparams.use_mae) + 1).sum().detach()
        return self.trainer.strategy.reduce(local, reduce_op="sum") / world

    def training_step(self, batch: TrajectoryBatch, batch_idx: int) -> torch.Tensor:
        """No host sync: sizes come from the batch's Python ints and collate-time indices, and every
        logged value is a device tensor Lightning reads later (tests/modules/test_sft_host_syncs.py)."""
        weights = self._weights(batch)
        loss, stats = self._loss(batch, weights, normalizer=self._global_normalizer(batch, weights))
        bs = batch.num_segments
        self.log("train/loss", loss, prog_bar=True, sync_dist=True, batch_size=bs)
        self.log("train/key_nll", stats["key_nll"], batch_size=bs)
        self.log("train/nonkey_nll", stats["nonkey_nll"], batch_size=bs)
        dropped = dropped_step_fraction(batch.labels, batch.step_ids, weights, batch.segment_ids, batch.num_segments)
        self.log("train/masked_step_frac", dropped, batch_size=bs)
        return loss

    def validation_step(self, batch: TrajectoryBatch, batch_idx: int) -> None:
        loss, stats = self._loss(batch, self._weights(batch))
        # Weighted by sum(w), so val/loss is the objective over the whole held-out set, not a mean of batch means.
        self.val_loss.update(loss, weight=stats["weight_sum"])
        self.val_key_nll.update(stats["key_nll"], weight=stats["num_key_tokens"])
        self.val_nonkey_nll.update(stats["nonkey_nll"], weight=stats["num_tokens"] - stats["num_key_tokens"])
        self.log("val/loss", self.val_loss, prog_bar=True, batch_size=batch.num_segments)
        self.log("val/key_nll", self.val_key_nll, batch_size=batch.num_segments)
        self.log("val/nonkey_nll", self.val_nonkey_nll, batch_size=batch.num_segments)

    def setup(self, stage: str) -> None:
        # The datamodule has encoded its data by now (its setup runs first); data that MAE masks entirely would
        # train on nothing (loss 0, no gradient) and validate to NaN, yet the run would end "completed".
        reports = getattr(getattr(self._trainer, "datamodule", None), "reports", None) or {}
        for split in ("train", "val") if stage == "fit" else ():
            report = reports.get(split)
            problem = report.nothing_to_train(self.hparams.use_mae) if hasattr(report, "nothing_to_train") else None
            if problem:
                raise ValueError(f"{split} data {problem}")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_factory is not None:
            opt = self.optimizer_factory(params)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = math.ceil(hp.warmup_ratio * total)
        scheduler = _schedule(hp.lr_schedule, opt, warmup, total)  # the name was checked in __init__
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ distribution + export
    def configure_model(self) -> None:
        shard_for_strategy(self)

    def export_hf(self, directory: str | Path) -> Path:
        """Write ``model`` + ``tokenizer`` so that ``AutoModelForCausalLM.from_pretrained(directory)`` loads them."""
        return export_hf_model(self.model, self.tokenizer, directory)
