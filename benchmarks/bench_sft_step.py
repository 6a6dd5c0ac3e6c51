"""Training-step time and peak memory of TLSFTModule (MAE + PKT) vs plain HF causal-LM cross-entropy.

    python benchmarks/bench_sft_step.py                         # tl-tiny on a quick-start batch, CPU
    python benchmarks/bench_sft_step.py --batch-size 8 --steps 20 --device cuda --model /models/CodeLlama-7b-hf

Both arms train the same model (two identical copies, each with its own AdamW) on the same batch, timed
interleaved step by step in one process, so machine load hits both alike; the ratio of medians is printed
(target <= 1.05). One step = forward + loss + backward + optimizer step.
- TL arm:  ``pkt_weights`` + ``model(...).logits`` + ``weighted_masked_nll`` (what TLSFTModule.training_step does).
- HF arm:  ``model(input_ids, attention_mask=..., labels=labels).loss`` (HF's shifted token-mean CE).
Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` per arm (reset before each step). On CPU torch
keeps no allocator statistics (and peak RSS does not move at this size), so only the loss-side float32
tensors each arm adds are printed, computed from the shapes: a stated estimate, not a measurement.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from tl_lightning.data.batch import TrajectoryBatch
from tl_lightning.losses import pkt_weights, weighted_masked_nll
from tl_lightning.models import load_causal_lm
from tl_lightning.tokenization import load_tokenizer


def quickstart_batch(tokenizer, batch_size: int, max_length: int) -> TrajectoryBatch:
    from tl_lightning.data.datamodule import ToolTrajectoryDataModule

    dm = ToolTrajectoryDataModule(train_path="quickstart", tokenizer=tokenizer, max_length=max_length, batch_size=batch_size)
    dm.prepare_data()
    dm.setup("fit")
    torch.manual_seed(0)
    return next(iter(dm.train_dataloader()))


def tl_step(model, opt, b: TrajectoryBatch) -> float:
    w = pkt_weights(b.labels, b.key_mask, b.step_ids, b.error_mask, use_mae=True, use_pkt=True, w_max=9.0)
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


ARMS = {"tl": tl_step, "hf": hf_step}


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
    models = {"tl": model, "hf": copy.deepcopy(model)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    times = {"tl": [], "hf": []}
    peaks = {}
    for i in range(args.warmup + args.steps):
        for arm in (("tl", "hf") if i % 2 == 0 else ("hf", "tl")):  # alternate who goes first
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
    med = {k: statistics.median(v) for k, v in times.items()}
    n_tok = batch.num_tokens
    print(f"model {args.model} on {device}, batch {tuple(batch.input_ids.shape)} ({n_tok} real tokens, "
          f"{int((batch.labels != -100).sum())} supervised), {args.steps} interleaved steps per arm")
    print(f"median step  TLSFTModule (MAE+PKT): {med['tl'] * 1e3:.1f} ms   HF CE: {med['hf'] * 1e3:.1f} ms   "
          f"ratio {med['tl'] / med['hf']:.3f}  (target <= 1.05)")
    if device.type == "cuda":
        print(f"peak memory  TL: {peaks['tl'] / 2**20:.1f} MiB   HF: {peaks['hf'] / 2**20:.1f} MiB   "
              f"ratio {peaks['tl'] / peaks['hf']:.3f}  (torch.cuda.max_memory_allocated)")
        return
    # CPU: torch keeps no allocator statistics, and peak RSS (tried) does not move at this size because the
    # allocator reuses memory freed after import. Print what each loss adds beyond the shared logits instead.
    n_pos = batch.input_ids.shape[0] * (batch.input_ids.shape[1] - 1)
    n_sup = int((batch.labels[:, 1:] != -100).sum())
    vocab = models["tl"].config.vocab_size
    tl_extra, hf_extra = 2 * n_sup * vocab * 4, 2 * n_pos * vocab * 4  # float32 rows + their log-softmax
    print(f"peak memory  not measured on CPU (no allocator counters; use --device cuda). Loss-side float32 "
          f"tensors: TL {tl_extra / 2**20:.1f} MiB ({n_sup} gathered rows) vs HF {hf_extra / 2**20:.1f} MiB "
          f"({n_pos} rows), ratio {tl_extra / hf_extra:.3f}; both also hold the model's [B, L, V] logits")

if __name__ == "__main__":
    main()
