"""Runs TLSFTModule on the hand-built data under a given strategy; rank 0 writes the per-step losses as JSON.

    python tests/sft_dist_runner.py --strategy ddp --devices 2 --batch-size 2 --max-steps 3 --out losses.json

Used by tests/test_distributed_sft.py in a subprocess, because Lightning's CPU DDP / FSDP2 launch
re-executes the script once per process.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sft_helpers (tests/ is not a package)

import torch  # noqa: E402
from lightning.pytorch import Callback, Trainer, seed_everything  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402
from sft_helpers import TINY, HandBuiltDataModule  # noqa: E402

from tl_lightning.modules.sft import TLSFTModule  # noqa: E402


class RecordLoss(Callback):
    """The global loss of every step: each rank's loss is already scaled by the global normaliser, so the
    mean over ranks is the loss of the whole global batch."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = trainer.strategy.reduce(outputs["loss"].detach().clone(), reduce_op="mean")
        self.losses[trainer.global_step] = float(loss)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--strategy", default="auto")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=3)
    p.add_argument("--num-train", type=int, default=16)
    p.add_argument("--ckpt-every", type=int, default=0)
    p.add_argument("--resume", default=None)
    p.add_argument("--root", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    seed_everything(0)
    strategy = args.strategy
    if strategy == "fsdp2":
        from lightning.pytorch.strategies import ModelParallelStrategy

        strategy = ModelParallelStrategy(data_parallel_size=args.devices, tensor_parallel_size=1)
    recorder = RecordLoss()
    callbacks = [recorder]
    if args.ckpt_every:
        callbacks.append(ModelCheckpoint(dirpath=Path(args.root) / "ckpt", every_n_train_steps=args.ckpt_every,
                                         save_top_k=-1, filename="{step}"))
    trainer = Trainer(accelerator="cpu", devices=args.devices, strategy=strategy, max_steps=args.max_steps,
                      logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                      enable_checkpointing=bool(args.ckpt_every), default_root_dir=args.root,
                      limit_val_batches=0, num_sanity_val_steps=0, use_distributed_sampler=False)
    data = HandBuiltDataModule(num_train=args.num_train, batch_size=args.batch_size)
    module = TLSFTModule(tiny_config=TINY, tokenizer=data.tokenizer,
                         lr=1e-2, lr_schedule="constant", warmup_ratio=0.0)
    trainer.fit(module, datamodule=data, ckpt_path=args.resume)
    if trainer.global_rank == 0:
        Path(args.out).write_text(json.dumps(recorder.losses))


if __name__ == "__main__":
    main()
