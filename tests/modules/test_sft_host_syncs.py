"""TLSFTModule.training_step issues no device-to-host sync of its own: no ``.item()``, ``.tolist()``, ``nonzero``,
``unique`` or scalar read (``int(t)``, ``float(t)``, ``if t``) on a tensor, padded or packed, chunked loss or not.

On CPU nothing syncs, so the calls are counted instead: ``Tensor.item`` / ``Tensor.tolist`` are patched, and a
``TorchDispatchMode`` sees every aten op the step runs, including the ones Python never calls by name
(a boolean-mask gather runs ``aten::nonzero``; ``int(t)`` and ``if t`` run ``aten::_local_scalar_dense``). Ops
issued from inside transformers (its mask construction checks ``(mask == 0).all()`` on the host) are the
model's, not the step's: they are counted apart and bounded, not forbidden. (On CUDA the same check could use
``torch.cuda.set_sync_debug_mode``; it would flag transformers' own check too, so it is not used here.)
"""

from __future__ import annotations

import traceback
from collections import Counter

import pytest
import torch
from lightning.pytorch import LightningDataModule, Trainer, seed_everything
from sft_helpers import TINY, hand_tokenizer, hand_trajectories
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

import tl_lightning.losses as losses
from tl_lightning.attention import VARLEN_SDPA
from tl_lightning.data.batch import collate_encoded
from tl_lightning.data.packing import collate_packed
from tl_lightning.modules.sft import TLSFTModule

SYNC_OPS = ("_local_scalar_dense", "nonzero", "unique", "_unique", "bincount", "masked_select")


class SyncCounter(TorchDispatchMode):
    """Counts sync-forcing aten ops and Tensor.item/tolist calls, split into the step's and transformers' own."""

    def __init__(self) -> None:
        super().__init__()
        self.step: Counter = Counter()
        self.model: Counter = Counter()

    def _record(self, name: str) -> None:
        # Blame the innermost frame outside torch and this file: a hook of ours that runs inside the model's
        # forward is still ours.
        frames = [f.filename for f in traceback.extract_stack() if "/torch/" not in f.filename and f.filename != __file__]
        (self.model if "/transformers/" in frames[-1] else self.step)[name] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name.startswith(SYNC_OPS):
            self._record(f"aten.{name}")
        elif name.startswith("index") and any(  # a boolean-mask gather or scatter: its size is the mask's count
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()) or ()
        ):
            self._record(f"aten.{name} (boolean mask)")
        return func(*args, **(kwargs or {}))


class Packed(LightningDataModule):
    def __init__(self, packed: bool) -> None:
        super().__init__()
        self.packed, self.tokenizer = packed, hand_tokenizer()

    def train_dataloader(self):
        items = hand_trajectories(12)
        if self.packed:  # rows of 3 and 1 trajectories: uneven, with a padding tail
            rows = [[items[i : i + 3], items[i + 3 : i + 4]] for i in range(0, 12, 4)]
            return DataLoader(rows, batch_size=None, collate_fn=lambda r: collate_packed(r, 0))
        return DataLoader(items, batch_size=4, collate_fn=lambda xs: collate_encoded(xs, 0))


@pytest.mark.parametrize(
    ("packed", "chunk", "attn"),
    [(False, None, VARLEN_SDPA), (True, None, VARLEN_SDPA), (True, 5, VARLEN_SDPA), (True, None, "sdpa")],
    ids=["padded", "packed", "chunked", "packed-sdpa"],
)
def test_training_step_issues_no_host_sync(tmp_path, monkeypatch, packed, chunk, attn):
    """sdpa_varlen (the default) splits rows by collate-time lengths; sdpa reads the packing from position_ids."""
    seed_everything(0)
    module = TLSFTModule(tokenizer=hand_tokenizer(), tiny_config=TINY, loss_chunk_size=chunk, lr=1e-2,
                         attn_implementation=attn)
    counter = SyncCounter()
    original_step = module.training_step
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)

        def patched(self, *a, _name=name, _original=original, **k):
            if counter_active[0]:
                counter._record(f"Tensor.{_name}")
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, patched)
    counter_active = [False]

    def counted_step(batch, batch_idx):
        counter_active[0] = True
        try:
            with counter:
                return original_step(batch, batch_idx)
        finally:
            counter_active[0] = False

    monkeypatch.setattr(module, "training_step", counted_step)
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=3, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
                      limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=Packed(packed))
    assert trainer.global_step == 3
    assert counter.step == Counter(), f"host syncs in training_step: {dict(counter.step)}"
    # The model's own mask construction may read one flag per forward; it never reads more than that.
    assert sum(counter.model.values()) <= 3 * 2, dict(counter.model)


def test_the_counter_sees_every_kind_of_sync():
    counter = SyncCounter()
    x = torch.arange(5.0)
    with counter:
        x[x > 2]
        int(x.sum())
        bool(x.any())
        torch.unique(x)
        (x > 1).nonzero()
        labels = torch.tensor([[-100, 1, 2]])
        losses.loss_positions(labels, torch.ones(1, 3)).reshape(-1).nonzero()
    assert sum(counter.step.values()) == 6 and counter.model == Counter(), dict(counter.step)
