"""Training-step time and memory of TLSFTModule (MAE + PKT) vs plain HF causal-LM cross-entropy.

    python benchmarks/bench_sft_step.py                         # tl-tiny on a quick-start batch, CPU
    python benchmarks/bench_sft_step.py --batch-size 8 --steps 20 --device cuda --model /models/CodeLlama-7b-hf
    python benchmarks/bench_sft_step.py --vocab 32000 128256 151936 --batch-size 4 --steps 5   # real vocabularies
    python benchmarks/bench_sft_step.py --vocab 151936 --chunks 0 256 1024 4096 --steps 5       # loss_chunk_size
    python benchmarks/bench_sft_step.py --packing --steps 40                # packed vs padded real tokens/s
    python benchmarks/bench_sft_step.py --packing --model tl-small-base --batch-size 4 --steps 12   # the quick start

``--vocab``: a LLaMA of realistic width for a CPU (hidden 256, 4 layers, 4 heads, FFN 688, untied head)
with each vocabulary in turn, on the same quick-start batch: TL (the module's loss path: head at the loss
positions, chunked CE when there are more than ``loss_chunk_size`` of them) against HF cross-entropy.
``--chunks``: the TL arm at several ``loss_chunk_size`` values (0 = one [N, V] pass), to choose the default.
``--packing``: ``--model`` (and its tokenizer) on the quick-start data, three loaders (padded random batches, padded
length-grouped batches, packed rows) under each ``--attn`` implementation (``sdpa``: transformers' masks, dense
block-diagonal for packed rows; ``sdpa_varlen``: per-trajectory causal SDPA, no mask), each arm its own model copy;
one step of each in turn; real (non-pad) tokens per second.

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
import inspect
import itertools
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tl_lightning.attention import VARLEN_SDPA
from tl_lightning.data.batch import TrajectoryBatch
from tl_lightning.losses import loss_positions, pkt_weights, weighted_masked_nll
from tl_lightning.models import default_tokenizer, load_causal_lm, logits_only_at
from tl_lightning.modules.sft import TLSFTModule
from tl_lightning.tokenization import load_tokenizer

#: LLaMA-shaped and as wide as a 2-core CPU step allows; only the vocabulary changes between runs.
LLAMA_SHAPE = {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
               "intermediate_size": 688, "tie_word_embeddings": False, "max_position_embeddings": 2048}


def quickstart_data(tokenizer, max_length: int, **kw):
    from tl_lightning.data.datamodule import ToolTrajectoryDataModule

    dm = ToolTrajectoryDataModule(train_path="quickstart", tokenizer=tokenizer, max_length=max_length, seed=0, **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def quickstart_batch(tokenizer, batch_size: int, max_length: int) -> TrajectoryBatch:
    return next(iter(quickstart_data(tokenizer, max_length, batch_size=batch_size).train_dataloader()))


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


def module_step(module: TLSFTModule, opt, b: TrajectoryBatch) -> float:
    """Exactly TLSFTModule's loss path (weights, head at the loss index, chunked CE past loss_chunk_size)."""
    loss, _ = module._loss(b, module._weights(b))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach())


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


def interleaved(steps: dict[str, callable], n: int, warmup: int, device) -> tuple[dict, dict, dict]:
    """Run ``steps[arm]()`` ``warmup + n`` times per arm, one arm after the other, rotating who goes first.

    Returns (median seconds, CUDA peak bytes, bytes saved for backward in one extra untimed step) per arm."""
    times = {k: [] for k in steps}
    peaks, saved = {}, {}
    arms = list(steps)
    for i in range(warmup + n):
        for arm in arms[i % len(arms):] + arms[: i % len(arms)]:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            t = time.perf_counter()
            steps[arm]()
            _sync(device)
            if i >= warmup:
                times[arm].append(time.perf_counter() - t)
            if device.type == "cuda":
                peaks[arm] = max(peaks.get(arm, 0), torch.cuda.max_memory_allocated())
    for arm in arms:
        counter = SavedTensorBytes()
        with counter:
            steps[arm]()
        saved[arm] = counter.nbytes
    return {k: statistics.median(v) for k, v in times.items()}, peaks, saved


def to_device(batch: TrajectoryBatch, device) -> TrajectoryBatch:
    return TrajectoryBatch(**{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in vars(batch).items()})


def setup(args):
    device = torch.device(args.device)
    tok = load_tokenizer(args.tokenizer or args.model)
    batch = to_device(quickstart_batch(tok, args.batch_size, args.max_length), device)
    torch.manual_seed(0)
    model = load_causal_lm(args.model, tokenizer=tok, dtype=args.dtype).to(device)
    return device, batch, model


def bench_tiny(args) -> None:
    """The original comparison: TL, TL on full logits, HF CE, on the given model."""
    device, batch, model = setup(args)
    models = {"tl": model, "tl_full": copy.deepcopy(model), "hf": copy.deepcopy(model)}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    med, peaks, saved = interleaved({k: (lambda k=k: ARMS[k](models[k], opts[k], batch)) for k in models},
                                    args.steps, args.warmup, device)
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


def llama_module(tok, vocab: int, chunk: int, device) -> TLSFTModule:
    """A TLSFTModule whose model is the LLaMA-shaped one with ``vocab`` tokens (same seed: same weights)."""
    module = TLSFTModule(tokenizer=tok, loss_chunk_size=chunk)
    torch.manual_seed(0)
    module.model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, pad_token_id=tok.pad_token_id, **LLAMA_SHAPE)).to(device)
    return module


def bench_vocab(args) -> None:
    """TL (module loss path) against HF CE for each vocabulary; with --chunks, TL at each loss_chunk_size."""
    device = torch.device(args.device)
    tok = load_tokenizer("tl-tiny")
    batch = to_device(quickstart_batch(tok, args.batch_size, args.max_length), device)
    n = batch.clean_target_index.numel()
    print(f"LLaMA hidden 256, 4 layers, FFN 688, untied head, {args.dtype or 'float32'} on {device}; quick-start batch "
          f"{tuple(batch.input_ids.shape)}: {batch.num_tokens} real tokens, {n} loss positions; "
          f"{args.steps} interleaved steps per arm, medians")
    chunks = args.chunks if args.chunks is not None else [inspect.signature(TLSFTModule).parameters["loss_chunk_size"].default]
    for vocab in args.vocab:
        vocab_arms(tok, vocab, chunks, batch, args, device)


def vocab_arms(tok, vocab: int, chunks: list[int], batch: TrajectoryBatch, args, device) -> None:
    modules = {f"tl@{c}": llama_module(tok, vocab, c, device) for c in chunks}
    hf = copy.deepcopy(next(iter(modules.values())).model)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in modules.items()}
    hf_opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)
    steps = {k: (lambda k=k: module_step(modules[k], opts[k], batch)) for k in modules}
    steps["hf"] = lambda: hf_step(hf, hf_opt, batch)
    med, peaks, saved = interleaved(steps, args.steps, args.warmup, device)
    print(f"vocab {vocab:>6}: HF CE step {med['hf'] * 1e3:8.1f} ms, saved {saved['hf'] / 2**20:8.1f} MiB"
          + (f", peak {peaks['hf'] / 2**20:.0f} MiB" if peaks else ""))
    for k in modules:
        print(f"  TL loss_chunk_size {k[3:]:>5}: step {med[k] * 1e3:8.1f} ms ({med[k] / med['hf']:.3f} x HF), "
              f"saved {saved[k] / 2**20:8.1f} MiB ({saved[k] / saved['hf']:.3f} x HF)"
              + (f", peak {peaks[k] / peaks['hf']:.3f} x HF" if peaks else ""))


def bench_packing(args) -> None:
    """Real tokens/s of the quick-start SFT step, loader x attention: padded random, padded length-grouped and
    packed batches, each under every ``--attn`` implementation; one step of each arm in turn, same weights."""
    device = torch.device(args.device)
    tok = load_tokenizer(args.tokenizer or default_tokenizer(args.model))
    common = {"template": "python_sig"}
    loaders = {
        "padded": quickstart_data(tok, args.max_length, batch_size=args.batch_size, **common).train_dataloader(),
        "grouped": quickstart_data(tok, args.max_length, batch_size=args.batch_size, group_by_length=True,
                                   **common).train_dataloader(),
        "packed": quickstart_data(tok, args.max_length, packing=True, max_tokens_per_batch=args.tokens_per_batch,
                                  **common).train_dataloader(),
    }
    for loader in loaders.values():
        loader.sampler.set_epoch(0)
    batches = {k: [to_device(b, device) for b in itertools.islice(loader, args.warmup + args.steps + 1)]
               for k, loader in loaders.items()}
    arms = [(data, attn) for attn in args.attn for data in loaders]
    modules = {}
    for arm in arms:
        torch.manual_seed(0)
        modules[arm] = TLSFTModule(model=args.model, tokenizer=tok, attn_implementation=arm[1]).to(device)
    first = next(iter(modules.values()))
    for m in modules.values():  # tl-tiny is randomly initialised: every arm starts from the same weights
        m.model.load_state_dict(first.model.state_dict())
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in modules.items()}
    seconds = {k: 0.0 for k in arms}
    tokens = {k: 0 for k in arms}
    computed = {k: 0 for k in arms}
    for i in range(args.warmup + args.steps):
        for arm in arms[i % len(arms):] + arms[: i % len(arms)]:
            b = batches[arm[0]][i]
            _sync(device)
            t = time.perf_counter()
            module_step(modules[arm], opts[arm], b)
            _sync(device)
            if i >= args.warmup:
                seconds[arm] += time.perf_counter() - t
                tokens[arm] += b.num_tokens
                computed[arm] += b.input_ids.numel()
    rate = {k: tokens[k] / seconds[k] for k in arms}
    print(f"{args.model} on {device} ({torch.get_num_threads()} threads), python_sig, tokenizer {tok.name_or_path}, "
          f"max_length {args.max_length}; padded: batch {args.batch_size}; packed: {args.tokens_per_batch} tokens per "
          f"batch; {args.steps} steps per arm, interleaved")
    for k in arms:
        print(f"  {k[0]:>8} {k[1]:>12}: {rate[k]:8.0f} real tokens/s, {tokens[k] / args.steps:6.0f} real tokens/step, "
              f"{1 - tokens[k] / computed[k]:5.1%} padding, {seconds[k] / args.steps * 1e3:6.0f} ms/step")
    best = args.attn[-1]
    for base in args.attn:
        print(f"packed ({best}) / padded ({base}) {rate['packed', best] / rate['padded', base]:.3f}   "
              f"packed ({best}) / grouped ({base}) {rate['packed', best] / rate['grouped', base]:.3f}   (target >= 1.3)")


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
    p.add_argument("--vocab", type=int, nargs="+", help="LLaMA-shaped model at these vocabulary sizes")
    p.add_argument("--chunks", type=int, nargs="+", help="with --vocab: loss_chunk_size values of the TL arm")
    p.add_argument("--packing", action="store_true", help="packed vs padded real tokens/s on the quick-start data")
    p.add_argument("--tokens-per-batch", type=int, default=1536, help="with --packing: max_tokens_per_batch")
    p.add_argument("--attn", nargs="+", default=["sdpa", VARLEN_SDPA],
                   help="with --packing: attention implementations; the last one is the packed arm of the ratios")
    args = p.parse_args()
    if args.vocab:
        bench_vocab(args)
    elif args.packing:
        bench_packing(args)
    else:
        bench_tiny(args)


if __name__ == "__main__":
    main()
