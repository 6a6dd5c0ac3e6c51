"""Training-step time and memory of TLSFTModule (MAE + PKT) vs plain HF causal-LM cross-entropy.

    python benchmarks/bench_sft_step.py                         # tl-tiny on a quick-start batch, CPU
    python benchmarks/bench_sft_step.py --batch-size 8 --steps 20 --device cuda --model /models/CodeLlama-7b-hf

Three copies of the same model (each with its own AdamW) train on the same batch, timed interleaved
step by step in one process, so machine load hits every arm alike; ratios of medians are printed
(target <= 1.05). One step = forward + loss + backward + optimizer step.
- TL arm:       what TLSFTModule.training_step does: ``pkt_weights``, the model under ``logits_only_at``
                (LM head at the loss positions only, [N, V] logits) and ``weighted_masked_nll``.
- TL-full arm:  the same loss on the model's full [B, L, V] logits (``selective_logits: false``).
- HF arm:       ``model(input_ids, attention_mask=..., labels=labels).loss`` (HF's shifted token-mean CE).
Memory: on CUDA, ``torch.cuda.max_memory_allocated`` per arm (reset before each step). On CPU torch
keeps no allocator statistics, so the bytes of the tensors autograd saves for the backward pass
(the activations, counted once per storage through ``saved_tensors_hooks``) are measured instead.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from tl_lightning.data.batch import TrajectoryBatch
from tl_lightning.losses import loss_positions, pkt_weights, weighted_masked_nll
from tl_lightning.models import load_causal_lm, logits_only_at
from tl_lightning.tokenization import load_tokenizer


def quickstart_batch(tokenizer, batch_size: int, max_length: int) -> TrajectoryBatch:
    from tl_lightning.data.datamodule import ToolTrajectoryDataModule

    dm = ToolTrajectoryDataModule(train_path="quickstart", tokenizer=tokenizer, max_length=max_length, batch_size=batch_size)
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    return next(iter(dm.train_dataloader()))


def tl_step(model, opt, b: TrajectoryBatch, selective: bool = True) -> float:
    w = pkt_weights(b.labels, b.key_mask, b.step_ids, b.error_mask, use_mae=True, use_pkt=True, w_max=9.0)
    if selective:
        with logits_only_at(model, loss_positions(b.labels, w)):
            logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False).logits
    else:
        logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False).logits
    loss, _ = weighted_masked_nll(logits, b.labels, w, key_mask=b.key_mask)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def hf_step(model, opt, b: TrajectoryBatch) -> float:
    loss = model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels, use_cache=False).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


ARMS = {"tl": tl_step, "tl_full": lambda *a: tl_step(*a, selective=False), "hf": hf_step}


class SavedTensorBytes(torch.autograd.graph.saved_tensors_hooks):
    """Counts the bytes autograd keeps for backward (one count per storage): the step's activation memory."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}
        super().__init__(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return t

    @property
    def nbytes(self) -> int:
        return sum(self.storages.values())




def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def setup(args):
    device = torch.device(args.device)
    tok = load_tokenizer(args.tokenizer or args.model)
    batch = quickstart_batch(tok, args.batch_size, args.max_length)
    batch = TrajectoryBatch(**{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in vars(batch).items()})
    torch.manual_seed(0)
    model = load_causal_lm(args.model, tokenizer=tok, dtype=args.dtype).to(device)
    return device, batch, model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tl-tiny")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--dtype", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=1536)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()

    device, batch, model = setup(args)
    models = {"tl": model, "tl_full": copy.deepcopy(model), "hf": copy.deepcopy(model)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    times = {k: [] for k in models}
    peaks, saved = {}, {}
    arms = list(models)
    for i in range(args.warmup + args.steps):
        for arm in arms[i % len(arms):] + arms[: i % len(arms)]:  # rotate who goes first
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            t = time.perf_counter()
            ARMS[arm](models[arm], opts[arm], batch)
            _sync(device)
            if i >= args.warmup:
                times[arm].append(time.perf_counter() - t)
            if device.type == "cuda":
                peaks[arm] = max(peaks.get(arm, 0), torch.cuda.max_memory_allocated())
    for arm in arms:  # one extra, untimed step per arm with the saved-tensor counter on
        counter = SavedTensorBytes()
        with counter:
            ARMS[arm](models[arm], opts[arm], batch)
        saved[arm] = counter.nbytes
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {args.model} on {device}, batch {tuple(batch.input_ids.shape)} ({batch.num_tokens} real tokens, "
          f"{int((batch.labels != -100).sum())} supervised), {args.steps} interleaved steps per arm")
    print(f"median step   TL: {med['tl'] * 1e3:.1f} ms   TL-full: {med['tl_full'] * 1e3:.1f} ms   "
          f"HF CE: {med['hf'] * 1e3:.1f} ms")
    print(f"step ratio    TL / HF {med['tl'] / med['hf']:.3f} (target <= 1.05)   "
          f"TL-full / HF {med['tl_full'] / med['hf']:.3f}")
    if device.type == "cuda":
        print(f"peak memory   TL: {peaks['tl'] / 2**20:.1f} MiB   TL-full: {peaks['tl_full'] / 2**20:.1f} MiB   "
              f"HF: {peaks['hf'] / 2**20:.1f} MiB   TL / HF {peaks['tl'] / peaks['hf']:.3f}   "
              f"TL-full / HF {peaks['tl_full'] / peaks['hf']:.3f}  (torch.cuda.max_memory_allocated)")
    print(f"saved for backward   TL: {saved['tl'] / 2**20:.1f} MiB   TL-full: {saved['tl_full'] / 2**20:.1f} MiB   "
          f"HF: {saved['hf'] / 2**20:.1f} MiB   TL / HF {saved['tl'] / saved['hf']:.3f}   "
          f"TL-full / HF {saved['tl_full'] / saved['hf']:.3f}")


if __name__ == "__main__":
    main()
