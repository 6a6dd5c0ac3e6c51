"""Test helpers for the SFT module and CLI: a hand-built datamodule of TrajectoryBatches, tiny model sizes,
a callback that stalls a run so a test can kill it, a module whose loss turns NaN at a chosen step.

Importable by ``class_path: sft_helpers.HandBuiltDataModule`` (pytest puts ``tests/`` on ``sys.path``;
subprocess tests add it to ``PYTHONPATH``).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningDataModule
from torch.utils.data import DataLoader, DistributedSampler

from tl_lightning.data.batch import IGNORE_INDEX, EncodedTrajectory, collate_encoded
from tl_lightning.modules.sft import TLSFTModule

#: A 2-layer, 32-wide LLaMA: fast enough for multi-process tests on 2 cores.
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
        "intermediate_size": 64}

_CORPUS = ['get_weather_forecast(city="Paris") get_weather_history(date="2024-01-02") finish(answer="ok")</s>'] * 20


def hand_tokenizer():
    from tl_lightning.tokenization import train_bpe_tokenizer

    return train_bpe_tokenizer(_CORPUS, vocab_size=300)


def hand_trajectories(n: int, length: int = 24, seed: int = 0, vocab: int = 300) -> list[EncodedTrajectory]:
    """``n`` fixed random sequences: a 6-token prompt, step 0 (erroneous), step 1, and a final answer."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        ids = torch.randint(10, vocab, (length,), generator=g)
        labels = torch.full((length,), IGNORE_INDEX)
        step_ids = torch.full((length,), -1)
        key = torch.zeros(length, dtype=torch.bool)
        err = torch.zeros(length, dtype=torch.bool)
        for s, (a, b) in enumerate([(6, 10), (12, 18), (20, length)]):
            labels[a:b] = ids[a:b]
            step_ids[a:b] = s
            key[a] = True
        err[6:10] = True
        items.append(EncodedTrajectory(ids, labels, err, key, step_ids, id=f"t{i}", num_steps=2))
    return items


class HandBuiltDataModule(LightningDataModule):
    """Serves :func:`hand_trajectories` in a fixed order (no shuffling), with a ``.tokenizer``.

    Lightning always shuffles training data when it adds its own DistributedSampler; with
    ``Trainer(use_distributed_sampler=False)`` this module shards in file order instead, so a multi-process
    run sees the same global batches as one process.
    """

    def __init__(self, num_train: int = 16, num_val: int = 4, batch_size: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.tokenizer = hand_tokenizer()
        self.batch_size = batch_size
        self.train_items = hand_trajectories(num_train, seed=seed)
        self.val_items = hand_trajectories(num_val, seed=seed + 1)

    def _loader(self, items):
        pad = self.tokenizer.pad_token_id
        sampler = None
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1 and not trainer._accelerator_connector.use_distributed_sampler:
            # Rank r gets items r, r + W, ...: the first global batch is items 0..B*W-1, as in one process.
            sampler = DistributedSampler(items, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False)
        return DataLoader(items, batch_size=self.batch_size, shuffle=False, sampler=sampler,
                          collate_fn=lambda xs: collate_encoded(xs, pad))

    def train_dataloader(self):
        return self._loader(self.train_items)

    def val_dataloader(self):
        return self._loader(self.val_items)


class StallAfterStep(Callback):
    """Writes ``marker`` (rank zero) after optimizer step ``step`` and then hangs every rank, so a test can
    SIGKILL the run at a known point: mid-epoch, after a checkpoint, before the run ends."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, marker

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            if trainer.global_rank == 0:
                Path(self.marker).write_text(str(self.step))
            time.sleep(600)


class NaNLossFromStep(TLSFTModule):
    """TLSFTModule whose training loss turns NaN from optimizer step ``nan_from`` on (0-based, as metrics.csv)."""

    def __init__(self, *args, nan_from: int = 3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.nan_from = nan_from

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step >= self.nan_from else loss


class FrozenPartSFT(TLSFTModule):
    """TLSFTModule with a frozen part kept in eval mode, as the RL modules keep their reference model."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.frozen = torch.nn.Linear(2, 2).eval().requires_grad_(False)
