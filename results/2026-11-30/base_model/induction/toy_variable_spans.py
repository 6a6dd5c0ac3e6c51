"""The toy of toy_induction.py with spans of varying length (8-48 tokens, 2-4 copies), so that only content-based
copying (an induction head) helps: loss on held-out spans' first copy vs their repetitions every 100 steps.

    python results/2026-11-30/base_model/induction/toy_variable_spans.py V LAYERS HIDDEN STEPS [LR]
    python results/2026-11-30/base_model/induction/toy_variable_spans.py 512 2 128 2500    # toy_variable_spans.log
"""

import importlib.util
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

spec = importlib.util.spec_from_file_location("pb", "scripts/pretrain_base.py")
pb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pb)
torch.set_num_threads(2)
V = int(sys.argv[1])
layers = int(sys.argv[2])
hidden = int(sys.argv[3])
steps = int(sys.argv[4])
lr = float(sys.argv[5]) if len(sys.argv) > 5 else 2e-3


def doc(rng, K=None):
    K = K or rng.randint(8, 48)
    span = [rng.randrange(3, V) for _ in range(K)]
    return np.array([0] + span * rng.randint(2, 4), dtype=np.int64)


torch.manual_seed(0)
rng = random.Random(0)
m = LlamaForCausalLM(
    LlamaConfig(
        vocab_size=V,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
)
opt = torch.optim.AdamW(m.parameters(), lr=lr)
t = time.time()
for s in range(steps):
    docs = [doc(rng) for _ in range(16)]
    ids = torch.zeros(16, 193, dtype=torch.long)
    lab = torch.full((16, 193), -100)
    for i, d in enumerate(docs):
        ids[i, : len(d)] = torch.from_numpy(d)
        lab[i, 1 : len(d)] = torch.from_numpy(d[1:])
    logits = m(input_ids=ids, use_cache=False).logits
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), lab[:, 1:].flatten(), ignore_index=-100)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if s % 100 == 99:
        r2 = random.Random(999)
        d = torch.tensor(
            np.stack(
                [
                    np.array([0] + sp * 3)
                    for sp in [[r2.randrange(3, V) for _ in range(24)] for _ in range(32)]
                ]
            )
        )
        with torch.no_grad():
            nll = F.cross_entropy(m(input_ids=d).logits[:, :-1].transpose(1, 2), d[:, 1:], reduction="none")
        print(
            f"V={V} L={layers} H={hidden} lr={lr} step {s + 1}: train {loss.item():.2f} first {nll[:, 1:24].mean():.2f} reps {nll[:, 24:].mean():.2f} ({time.time() - t:.0f}s)",
            flush=True,
        )
