"""Induction check: mean loss (nats/token) on the first copy of a random span vs on its repetitions.

    python results/2026-11-30/base_model/probe_repeat.py MODEL_DIR_OR_checkpoint.pt [--config HF_DIR]

A model that copies in context predicts the repetitions almost for free; one that does not pays about the same.
"""
import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from copy_corpus import word  # noqa: E402

from tl_lightning.checkpoints import load_pretrained

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--config", default=None)
p.add_argument("--docs", type=int, default=40)
args = p.parse_args()
loaded = load_pretrained(args.config or args.model)
if args.model.endswith(".pt"):
    loaded.model.load_state_dict(torch.load(args.model, weights_only=False)["model"])
model, tok = loaded.model.eval(), loaded.tokenizer
first = later = n_first = n_later = 0.0
for i in range(args.docs):
    rng = random.Random(f"probe-repeat:{i}")
    span = " ".join(word(rng) for _ in range(rng.randint(10, 25)))
    ids_span = tok(" " + span, add_special_tokens=False)["input_ids"]
    ids = [tok.bos_token_id] + ids_span * 3
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    k = len(ids_span)
    first += nll[1:k].sum().item(); n_first += k - 1
    later += nll[k:].sum().item(); n_later += len(nll) - k
print(f"{args.model}: loss on the first copy {first / n_first:.2f}, on repetitions {later / n_later:.2f} nats/token")
