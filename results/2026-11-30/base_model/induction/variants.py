"""Does genuine in-context copying form? The tl-small-base architecture on repeated random-token spans, variants:

    python results/2026-11-30/base_model/induction/variants.py VARIANT [STEPS]   # from the repository root

VARIANT words: ``plain`` fixed 24-token spans x 3 (the toy's data); ``opt`` the same with pretrain_base.py's optimizer,
clipping and schedule; ``data`` pretrain_base.make_repeat_docs (span 8-48, 2-4 copies) in 4 x 256-token rows;
``alpha`` spans from small per-document alphabets; ``scratch`` a fresh model instead of the stage-1 export;
``lr6`` lr 6e-3; ``common`` spans over the corpus's 512 most frequent tokens only; ``curric`` 300 fixed-span steps, then make_repeat_docs. Prints the held-out repeat probe
(pretrain_base.repeat_probe: 24 random spans x 3) every 100 steps.
"""

import importlib.util
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaForCausalLM

from tl_lightning.tokenization import load_tokenizer

spec = importlib.util.spec_from_file_location("pb", "scripts/pretrain_base.py")
pb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pb)

torch.set_num_threads(2)
variant = sys.argv[1]
tok = load_tokenizer("tl-small")
V, K = 4096, 24


def doc(rng):
    span = [rng.randrange(3, V) for _ in range(K)]
    return np.array([1] + span + span + span, dtype=np.int64)


torch.manual_seed(0)
rng = random.Random(0)
m = LlamaForCausalLM.from_pretrained("runs/pretrain_base/hf")
if "scratch" in variant:
    m = LlamaForCausalLM(m.config)
args = pb.parse_args(["--corpus", ".", "--out", ".", "--max-steps", "900", "--lr", "2e-3", "--warmup", "30"])
if "opt" in variant:
    opt = pb.make_optimizer(m, args)
else:
    opt = torch.optim.AdamW(m.parameters(), lr=6e-3 if "lr6" in variant else 2e-3, betas=(0.9, 0.95))


def small_alpha_docs(n, seed):
    g = np.random.default_rng(seed)
    low = max(tok.all_special_ids) + 1
    docs = []
    tot = 0
    while tot < n:
        a = int(g.choice([16, 32, 64, 256, 4096 - low]))
        alpha = g.choice(np.arange(low, 4096), size=a, replace=False)
        k = int(g.integers(8, min(48, a) + 1))
        span = g.choice(alpha, size=k, replace=False)
        docs.append(
            np.concatenate([[tok.bos_token_id], np.tile(span, int(g.integers(2, 5)))]).astype(np.int32)
        )
        tot += len(docs[-1])
    return docs


def common_docs(n, seed, n_common=512):
    """make_repeat_docs over the corpus's n_common most frequent tokens only: each is seen often, so its matching is learnt."""
    counts = np.bincount(
        np.load(next(Path("runs/pretrain_base").glob("tokens-train-*.npz")))["ids"], minlength=len(tok)
    )
    counts[: max(tok.all_special_ids) + 1] = 0
    common = np.argsort(-counts)[:n_common]
    g = np.random.default_rng(seed)
    docs = []
    tot = 0
    while tot < n:
        span = g.choice(common, size=int(g.integers(8, 49)))
        docs.append(
            np.concatenate([[tok.bos_token_id], np.tile(span, int(g.integers(2, 5)))]).astype(np.int32)
        )
        tot += len(docs[-1])
    return docs


if "common" in variant:
    wb = pb.Batches(common_docs(3000 * 4 * 256, 2), 256, 4, 1, tok.pad_token_id)
elif "alpha" in variant:
    wb = pb.Batches(small_alpha_docs(3000 * 4 * 256, 2), 256, 4, 1, tok.pad_token_id)
elif "data" in variant or "curric" in variant:
    wb = pb.Batches(pb.make_repeat_docs(3000 * 4 * 256, tok, 2), 256, 4, 1, tok.pad_token_id)
t = time.time()
for s in range(int(sys.argv[2]) if len(sys.argv) > 2 else 300):
    if "curric" in variant and s >= 300:
        b = wb(s - 300)
    elif "data" in variant or "alpha" in variant or "common" in variant:
        b = wb(s)
    else:
        docs = [doc(rng) for _ in range(16)]
        b = pb.collate(docs, [list(range(i, i + 4)) for i in range(0, 16, 4)], 4 * len(docs[0]), 2)
    if "opt" in variant:
        for g in opt.param_groups:
            g["lr"] = pb.lr_at(s, args)
    loss = pb.lm_loss(m, b)
    opt.zero_grad()
    loss.backward()
    if "opt" in variant:
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    if s % 100 == 99:
        f, r = pb.repeat_probe(m, tok)
        print(
            f"{variant} step {s + 1}: train loss {loss.item():.2f}; probe first {f:.2f} reps {r:.2f} ({time.time() - t:.0f}s) tokens/step {(b['labels'] != -100).sum()}",
            flush=True,
        )
