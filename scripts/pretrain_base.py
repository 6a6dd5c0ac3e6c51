"""Pretrain a small LLaMA from scratch on the tool-use corpus with a plain causal-LM loss.

    python -m tl_lightning.synthetic.pretrain --out data/pretrain --seed 0 --n 20000
    python scripts/pretrain_base.py --corpus data/pretrain --out runs/pretrain_base --hidden 256 --layers 4 --heads 4 \\
        --seq-len 1536 --batch-rows 4 --max-steps 900 --max-minutes 60 --seed 0   # same command again = resume
    python scripts/pretrain_base.py --corpus data/pretrain --out runs/probe --max-steps 30 --overwrite   # tokens/s probe

Pick ``--max-steps`` from the probe's tokens/s: a step trains about 5,900 tokens at ``--seq-len 1536 --batch-rows 4``
(rows are ~97% full), so one hour is about ``3500 * tokens_per_s / 5900`` steps; the cosine schedule ends there.

Plain PyTorch, one process (``--threads``, default 2): the point is exact reproducibility and resume,
not scale. On a GPU, ``--device cuda --precision bf16-mixed`` runs the same steps with bf16 autocast (the
weights, AdamW state and loss stay fp32); ``--max-shard-size 15MB`` splits the export into files small
enough to copy back from a machine that returns files of at most 16 MiB.

Every document of ``train.jsonl`` is tokenized once (cached beside the checkpoint), truncated
to ``--seq-len`` and packed into rows: documents of a window are placed first-fit-decreasing, each with
``position_ids`` restarting at 0, so transformers builds a block-diagonal mask and every document is
seen from position 0 as a fine-tuning prompt would be. The first token of each document gets no loss (it
would be predicted from the previous document). The row order of epoch ``e`` is drawn from ``seed + e``,
so the data of step ``s`` is a function of the seed and ``s`` alone, which is what makes resume exact:
``checkpoint.pt`` holds the model, AdamW, the step and the RNG state, and a resumed run continues with the
same batches and the same losses as an uninterrupted one.

Prints tokens/s (trained tokens, i.e. labelled ones, per wall-clock second) and the held-out loss on ``val.jsonl``; writes
an HF directory (``<out>/hf``: safetensors, config, tokenizer) that ``from_pretrained`` loads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from tl_lightning.data.packing import pack_rows
from tl_lightning.tokenization import SMALL_TOKENIZER, load_tokenizer, tokenize_batch_with_offsets

IGNORE = -100
#: Arguments that define the run: a checkpoint written under other values is refused on resume.
RUN_KEYS = ("corpus", "tokenizer", "hidden", "layers", "heads", "ffn", "seq_len", "batch_rows", "lr", "warmup",
            "max_steps", "weight_decay", "seed", "init_from", "repeat_share", "induction_steps", "induction_seq_len",
            "repeat_inline", "precision")
#: Run keys added later, with the value that checkpoints written before them implicitly used.
LATER_KEYS = {"repeat_share": 0.0, "induction_steps": 0, "induction_seq_len": 256, "repeat_inline": False,
              "precision": "32-true"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, required=True, help="folder with train.jsonl and val.jsonl")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tokenizer", default=SMALL_TOKENIZER)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=None, help="MLP width (default: 3 x hidden)")
    p.add_argument("--seq-len", type=int, default=1024, help="row length; longer documents are truncated")
    p.add_argument("--batch-rows", type=int, default=8, help="rows per optimizer step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps, then cosine to lr/10 at --max-steps")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--max-steps", type=int, required=True)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this much wall time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda; not a run key: a run may resume elsewhere")
    p.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true",
                   help="bf16-mixed: bf16 autocast for the forward pass, fp32 weights and optimizer")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument("--val-docs", type=int, default=200)
    p.add_argument("--save-dtype", choices=["float32", "bfloat16"], default="float32", help="dtype of the HF export")
    p.add_argument("--max-shard-size", default="5GB", help="largest safetensors file of the HF export (e.g. 15MB)")
    p.add_argument("--overwrite", action="store_true", help="start over even if <out>/checkpoint.pt exists")
    p.add_argument("--init-from", type=Path, default=None,
                   help="continue pretraining from this HF export or checkpoint.pt (its weights; a fresh optimizer and "
                        "schedule over this run's steps; same shape)")
    p.add_argument("--repeat-share", type=float, default=0.0,
                   help="add documents of random-token spans repeated 2-4 times (make_repeat_docs), this share of "
                        "all trained tokens")
    p.add_argument("--repeat-inline", action="store_true",
                   help="splice those spans into corpus documents at random places (splice_repeats) instead of "
                        "adding them as documents of their own")
    p.add_argument("--induction-steps", type=int, default=0,
                   help="train the first N steps on repeated random spans only (make_repeat_docs), then on the corpus")
    p.add_argument("--induction-seq-len", type=int, default=256,
                   help="row length of those steps: short rows give more optimizer steps per CPU-second")
    args = p.parse_args(argv)
    if not 0.0 <= args.repeat_share < 1.0:
        p.error(f"--repeat-share must be in [0, 1), got {args.repeat_share}")
    longest = 1 + MAX_REPEATS * MAX_SPAN  # the longest make_repeat_docs document
    for flag, used, length in (("--induction-seq-len", args.induction_steps, args.induction_seq_len),
                               ("--seq-len", args.repeat_share, args.seq_len)):
        if used and length < longest:
            p.error(f"{flag} {length} is shorter than a repeated-span document ({longest} tokens)")
    args.ffn = args.ffn or 3 * args.hidden
    if args.hidden % args.heads:
        p.error(f"--hidden {args.hidden} is not divisible by --heads {args.heads}")
    return args


# ----------------------------------------------------------------------------------------------- data
def tokenize_corpus(path: Path, tokenizer, seq_len: int, cache_dir: Path, limit: int | None = None) -> list[np.ndarray]:
    """Token ids of every document of ``path`` (each at most ``seq_len``), cached by file and tokenizer hash."""
    h = hashlib.sha256(path.read_bytes())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    h.update(f"{seq_len}:{limit}".encode())
    cache = cache_dir / f"tokens-{path.stem}-{h.hexdigest()[:16]}.npz"
    if cache.exists():
        data = np.load(cache)
        return np.split(data["ids"], data["offsets"][1:-1])
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = texts[:limit] if limit is not None else texts
    docs = []
    for lo in range(0, len(texts), 1024):
        docs += [ids[:seq_len].astype(np.int32) for ids, _ in tokenize_batch_with_offsets(texts[lo : lo + 1024], tokenizer)]
    offsets = np.cumsum([0] + [len(d) for d in docs])
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, ids=np.concatenate(docs), offsets=offsets)
    return docs


def pack(lengths: list[int], seq_len: int, rng: random.Random, window: int = 256) -> list[list[int]]:
    """Document indices in rows of at most ``seq_len`` tokens, each index once: the fine-tuning packer
    (:func:`tl_lightning.data.packing.pack_rows`, first-fit-decreasing in windows of a permutation) seeded
    from ``rng``, rows then shuffled so long and short rows mix across steps."""
    rows = pack_rows(lengths, seq_len, torch.Generator().manual_seed(rng.randrange(2**63)), window)
    rng.shuffle(rows)
    return rows


def collate(docs: list[np.ndarray], rows: list[list[int]], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """``input_ids``, ``position_ids``, ``labels``: each [len(rows), seq_len]. Padding and the first token of
    every document are IGNORE in ``labels``; positions restart at 0 per document (and for the padding)."""
    ids = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), seq_len), dtype=torch.long)
    labels = torch.full((len(rows), seq_len), IGNORE, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            d = torch.from_numpy(docs[i].astype(np.int64))
            ids[r, at : at + len(d)] = d
            pos[r, at : at + len(d)] = torch.arange(len(d))
            labels[r, at + 1 : at + len(d)] = d[1:]
            at += len(d)
        pos[r, at:] = torch.arange(seq_len - at)
    return {"input_ids": ids, "position_ids": pos, "labels": labels}


MAX_SPAN, MAX_REPEATS = 48, 4
#: Tokens of held-out text before the spans of the in-text repeat probe.
PROBE_PREFIX = 200


def first_plain_id(tokenizer) -> int:
    """The smallest id above every special token: random spans draw from ``[first_plain_id, len(tokenizer))``."""
    return max(tokenizer.all_special_ids) + 1


def make_repeat_docs(n_tokens: int, tokenizer, seed: int, min_span: int = 8, max_span: int = MAX_SPAN) -> list[np.ndarray]:
    """Documents ``[bos] + span * r`` of uniformly random non-special token ids, span length in [min_span, max_span],
    r in 2..4, until ``n_tokens`` tokens; a function of ``seed`` alone.

    Why: on the tool corpus alone the model learns the *distribution* of argument values and never starts copying
    them from the prompt (measured: the loss on a repeated span's later copies equals its first copy's after 7.8M
    tokens). On these documents the only way below log(V) nats/token is to copy by content: spans of varying length
    leave no fixed offset to copy from. Measured here: copying emerges only after a plateau of thousands of steps
    (results/2026-11-30/base_model/README.md).
    """
    rng = np.random.default_rng([seed, 0x5EED])
    low = first_plain_id(tokenizer)
    docs, total = [], 0
    while total < n_tokens:
        span = rng.integers(low, len(tokenizer), size=int(rng.integers(min_span, max_span + 1)))
        docs.append(np.concatenate([[tokenizer.bos_token_id], np.tile(span, int(rng.integers(2, MAX_REPEATS + 1)))]).astype(np.int32))
        total += len(docs[-1])
    return docs


def splice_repeats(docs: list[np.ndarray], spans: list[np.ndarray], seed: int, seq_len: int) -> list[np.ndarray]:
    """``docs`` with each repeated span of ``spans`` (:func:`make_repeat_docs` documents, their bos dropped) inserted
    at a uniformly random token boundary of a uniformly random document (never before its first token), each
    result truncated to ``seq_len``; a function of ``seed`` alone.

    Why: spans given as documents of their own teach copying as a *mode*. Measured on such a model: it copies a
    span after a bos (1.7 nats/token on the repetitions) but not the same span after 200 tokens of corpus text,
    where repetitions cost 17 nats, as much as the first copy. Copying has to be learnt where it is used.
    """
    rng = np.random.default_rng([seed, 0x5911CE])
    where = rng.integers(0, len(docs), size=len(spans))
    inserts: dict[int, list[tuple[int, np.ndarray]]] = {}
    for d, span in zip(where.tolist(), spans, strict=True):
        inserts.setdefault(d, []).append((int(rng.integers(1, len(docs[d]) + 1)), span[1:]))
    out = list(docs)
    for d, items in inserts.items():
        parts, at = [], 0
        for cut, span in sorted(items, key=lambda item: item[0]):
            parts += [docs[d][at:cut], span]
            at = cut
        parts.append(docs[d][at:])
        out[d] = np.concatenate(parts)[:seq_len].astype(np.int32)
    return out


@torch.no_grad()
def repeat_probe(model: LlamaForCausalLM, tokenizer, n_docs: int = 24, span: int = 24,
                 prefix: np.ndarray | None = None, precision: str = "32-true") -> tuple[float, float]:
    """Mean loss (nats/token) on the first copy of a random span and on its two repetitions, over ``n_docs`` fixed
    held-out spans: a model that copies in context pays almost nothing for the repetitions. Each probe is
    ``[bos] + span * 3``, or ``prefix + span * 3`` given ``prefix`` (token ids of ordinary text, e.g. a held-out
    document's start): whether the copying also works in the middle of a document."""
    rng = np.random.default_rng([10**6, 0x5EED])  # no run's seed: these spans are never trained on
    low = first_plain_id(tokenizer)
    spans = torch.from_numpy(rng.integers(low, len(tokenizer), size=(n_docs, span)))
    head = torch.tensor([tokenizer.bos_token_id]) if prefix is None else torch.as_tensor(prefix, dtype=torch.long)
    ids = torch.cat([head.expand(n_docs, -1), spans.repeat(1, 3)], dim=1).to(model.device)  # [n_docs, len(head) + 3 * span]
    model.eval()
    with autocast(model, precision):
        logits = model(input_ids=ids, use_cache=False).logits
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:],
                          reduction="none")  # [n_docs, len(head) - 1 + 3 * span]; column j predicts token j + 1
    model.train()
    nll = nll[:, len(head) - 1 :].cpu()  # column j predicts the span's token j
    return nll[:, 1:span].mean().item(), nll[:, span:].mean().item()  # the span's first token is a guess either way


class Batches:
    """The batch of any step: epoch ``e``'s rows are packed with ``Random(seed + e)``; ``batch_rows`` rows per step."""

    def __init__(self, docs: list[np.ndarray], seq_len: int, batch_rows: int, seed: int, pad_id: int):
        self.docs, self.seq_len, self.batch_rows, self.seed, self.pad_id = docs, seq_len, batch_rows, seed, pad_id
        self._epoch, self._rows = -1, []
        self.steps_per_epoch = len(self._epoch_rows(0)) // batch_rows
        if self.steps_per_epoch == 0:
            raise ValueError(f"the corpus fills {len(self._rows)} rows of {seq_len} tokens, fewer than one batch of {batch_rows}")

    def _epoch_rows(self, epoch: int) -> list[list[int]]:
        if epoch != self._epoch:
            self._epoch, self._rows = epoch, pack([len(d) for d in self.docs], self.seq_len, random.Random(self.seed + epoch))
        return self._rows

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        epoch, k = divmod(step, self.steps_per_epoch)
        rows = self._epoch_rows(epoch)[k * self.batch_rows : (k + 1) * self.batch_rows]
        return collate(self.docs, rows, self.seq_len, self.pad_id)


# ---------------------------------------------------------------------------------------------- model
def build_model(args: argparse.Namespace, vocab_size: int, tokenizer) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.heads, intermediate_size=args.ffn, max_position_embeddings=max(2048, args.seq_len),
        tie_word_embeddings=True, rms_norm_eps=1e-6, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(args.seed)
    return LlamaForCausalLM(config)


def autocast(model: LlamaForCausalLM, precision: str) -> torch.autocast:
    """bf16 autocast on the model's device for ``bf16-mixed``; a no-op context for ``32-true``."""
    return torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def lm_loss(model: LlamaForCausalLM, batch: dict[str, torch.Tensor], precision: str = "32-true") -> torch.Tensor:
    """Token-mean next-token cross-entropy over the labelled tokens (padding and document starts excluded).
    ``batch`` tensors are [rows, seq_len], on any device: they are moved to the model's."""
    batch = {k: v.to(model.device, non_blocking=True) for k, v in batch.items()}
    with autocast(model, precision):
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(), ignore_index=IGNORE)


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up to ``lr`` over ``warmup`` steps, then cosine down to ``lr / 10`` at ``max_steps``."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, args.max_steps - args.warmup))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: LlamaForCausalLM, args: argparse.Namespace) -> torch.optim.AdamW:
    # Weight decay on matrices only: decaying norms' gains and the (tied) embedding hurts small models.
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.95), eps=1e-8)


@torch.no_grad()
def evaluate(model: LlamaForCausalLM, batches: list[dict[str, torch.Tensor]], precision: str = "32-true") -> float:
    """Held-out loss: the token mean over every labelled token of ``batches``."""
    model.eval()
    total, count = 0.0, 0
    for b in batches:
        n = int((b["labels"][:, 1:] != IGNORE).sum())
        total += lm_loss(model, b, precision).item() * n
        count += n
    model.train()
    return total / max(count, 1)


def save_checkpoint(path: Path, model, optimizer, step: int, tokens: int, run: dict, seconds: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "tokens": tokens,
                "run": run, "torch_rng": torch.get_rng_state(), "seconds": seconds}, tmp)
    tmp.replace(path)  # a run killed while saving keeps the previous checkpoint


def export_hf(out: Path, model: LlamaForCausalLM, tokenizer, dtype: str, provenance: dict | None = None,
              max_shard_size: str = "5GB") -> None:
    """The HF directory, plus ``pretraining.json`` (the run's settings, steps, tokens, wall time, held-out loss)."""
    model.to(getattr(torch, dtype)).save_pretrained(out, safe_serialization=True, max_shard_size=max_shard_size)
    model.float()
    tokenizer.save_pretrained(out, save_jinja_files=False)  # chat template inside tokenizer_config.json (*.json ships)
    if provenance is not None:
        (out / "pretraining.json").write_text(json.dumps(provenance, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    run = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k in RUN_KEYS}
    tokenizer = load_tokenizer(args.tokenizer)
    t0 = time.perf_counter()
    docs = tokenize_corpus(args.corpus / "train.jsonl", tokenizer, args.seq_len, args.out)
    n_corpus = sum(map(len, docs))
    if args.repeat_share > 0:
        spans = make_repeat_docs(int(n_corpus * args.repeat_share / (1 - args.repeat_share)), tokenizer, args.seed)
        docs = splice_repeats(docs, spans, args.seed, args.seq_len) if args.repeat_inline else docs + spans
    val_docs = tokenize_corpus(args.corpus / "val.jsonl", tokenizer, args.seq_len, args.out, limit=args.val_docs)
    batches = Batches(docs, args.seq_len, args.batch_rows, args.seed, tokenizer.pad_token_id)
    if args.induction_steps:
        # A phase in which copying is the whole task, so induction can form before the corpus's structure dominates
        # the gradient; repeats mixed into the corpus afterwards (--repeat-share) keep it in use.
        n = args.induction_steps * args.batch_rows * args.induction_seq_len
        warmup_batches = Batches(make_repeat_docs(n, tokenizer, args.seed + 1), args.induction_seq_len, args.batch_rows,
                                 args.seed, tokenizer.pad_token_id)
    val_rows = pack([len(d) for d in val_docs], args.seq_len, random.Random(0))
    device = torch.device(args.device)
    val = [{k: v.to(device) for k, v in collate(val_docs, val_rows[i : i + args.batch_rows], args.seq_len, tokenizer.pad_token_id).items()}
           for i in range(0, len(val_rows), args.batch_rows)]
    n_tok = sum(map(len, docs))
    print(f"corpus: {len(docs)} documents ({n_tok - n_corpus:,} tokens of repeated spans), {n_tok:,} tokens "
          f"({sum(len(d) == args.seq_len for d in docs)} truncated), {batches.steps_per_epoch} steps/epoch; tokenized in {time.perf_counter() - t0:.0f} s", flush=True)

    model = build_model(args, len(tokenizer), tokenizer)
    if args.init_from is not None:
        # Another stage of pretraining: an HF export, or a run's checkpoint.pt mid-schedule (same shape).
        if args.init_from.suffix == ".pt":
            weights = torch.load(args.init_from, weights_only=False, map_location="cpu")["model"]
        else:
            weights = LlamaForCausalLM.from_pretrained(args.init_from).state_dict()
        model.load_state_dict(weights)
    model.to(device).train()
    optimizer = make_optimizer(model, args)
    ckpt_path = args.out / "checkpoint.pt"
    step, tokens, seconds_before = 0, 0, 0.0
    if ckpt_path.exists() and not args.overwrite:
        state = torch.load(ckpt_path, weights_only=False, map_location="cpu")  # load_state_dict moves it to the device
        saved = {**LATER_KEYS, **state["run"]}
        if saved != run:
            diff = {k: (saved.get(k), v) for k, v in run.items() if saved.get(k) != v}
            raise SystemExit(f"{ckpt_path} was written by another run (checkpoint vs now: {diff}); pass --overwrite to start over")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, tokens, seconds_before = state["step"], state["tokens"], state.get("seconds", 0.0)
        print(f"resumed from {ckpt_path} at step {step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters (hidden {args.hidden}, {args.layers} layers, {args.heads} heads, "
          f"ffn {args.ffn}, vocab {len(tokenizer)}); training to step {args.max_steps}", flush=True)

    start, window_t, window_tok = time.perf_counter(), time.perf_counter(), 0
    val_loss = None
    while step < args.max_steps:
        batch = warmup_batches(step) if step < args.induction_steps else batches(step - args.induction_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        loss = lm_loss(model, batch, args.precision)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        real = int((batch["labels"] != IGNORE).sum())  # tokens the loss trained on (padding and document starts excluded)
        tokens += real
        window_tok += real
        if step % args.log_every == 0:
            now = time.perf_counter()
            print(f"step {step} loss {loss.item():.4f} lr {lr_at(step - 1, args):.2e} tokens/s {window_tok / (now - window_t):.0f} "
                  f"tokens {tokens:,}", flush=True)
            window_t, window_tok = now, 0
        out_of_time = args.max_minutes is not None and time.perf_counter() - start > 60 * args.max_minutes
        if step % args.eval_every == 0 or step == args.max_steps:
            val_loss = evaluate(model, val, args.precision)
            rep_first, rep_later = repeat_probe(model, tokenizer, precision=args.precision)
            in_first, in_later = repeat_probe(model, tokenizer, prefix=val_docs[0][:PROBE_PREFIX], precision=args.precision)
            print(f"step {step} val_loss {val_loss:.4f} repeat_probe first {rep_first:.2f} repeats {rep_later:.2f} "
                  f"in_text first {in_first:.2f} repeats {in_later:.2f}", flush=True)
        if step % args.save_every == 0 or step == args.max_steps or out_of_time:
            save_checkpoint(ckpt_path, model, optimizer, step, tokens, run, seconds_before + time.perf_counter() - start)
        if out_of_time:
            print(f"stopped by --max-minutes at step {step}; run the same command again to resume", flush=True)
            break
    elapsed = time.perf_counter() - start
    if val_loss is None:
        val_loss = evaluate(model, val, args.precision)
    manifest = args.corpus / "manifest.json"
    provenance = {
        "script": "scripts/pretrain_base.py", "run": run, "step": step, "tokens": tokens, "parameters": n_params,
        "train_seconds": round(seconds_before + elapsed, 1), "threads": args.threads, "device": str(device),
        "val_loss": round(val_loss, 4),
        "corpus_manifest": json.loads(manifest.read_text()) if manifest.is_file() else None,
    }
    export_hf(args.out / "hf", model.cpu(), tokenizer, args.save_dtype, provenance, args.max_shard_size)
    print(f"done: step {step}, {tokens:,} tokens this far, {elapsed:.0f} s this session; HF model in {args.out / 'hf'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
