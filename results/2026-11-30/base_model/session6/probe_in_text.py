"""Does a base model copy in the middle of a document, or only in a document of its own?

    python results/2026-11-30/base_model/session6/probe_in_text.py MODEL_DIR

The 8 held-out random spans of ``pretrain_base.repeat_probe`` (24 tokens, each repeated 3 times): the loss
(nats/token) on the first copy and on the repetitions (a) after a bos with positions shifted by the offset, and
(b) after that many tokens of a held-out corpus document (``repeat_probe(prefix=...)``). Uniform guessing costs
ln(4096) = 8.32.
"""

import importlib.util
import json
import sys
from pathlib import Path

import torch

from tl_lightning.checkpoints import load_pretrained

spec = importlib.util.spec_from_file_location("pretrain_base", Path(__file__).resolve().parents[4] / "scripts" / "pretrain_base.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

torch.set_num_threads(1)
loaded = load_pretrained(sys.argv[1])
model, tok = loaded.model.eval(), loaded.tokenizer
doc = [json.loads(line)["text"] for line in open("data/pretrain/val.jsonl")][0]
prefix = tok(doc)["input_ids"][:1000]
n, span = 8, 24


def shifted(offset: int) -> tuple[float, float]:
    """``repeat_probe``'s bos probe with every position moved by ``offset`` (RoPE sees only relative positions)."""
    forward = model.forward
    model.forward = lambda input_ids, **kw: forward(input_ids=input_ids, position_ids=torch.arange(input_ids.shape[1])[None] + offset, **kw)
    try:
        return script.repeat_probe(model, tok, n_docs=n, span=span)
    finally:
        model.forward = forward


for off in [0, 200, 500, 1000]:
    head = prefix[:off]  # the document may be shorter than the offset
    a = shifted(off)
    b = script.repeat_probe(model, tok, n_docs=n, span=span, prefix=head) if off else a
    print(f"offset {off} ({len(head)} tokens of text): positions shifted first/repeats {a[0]:.2f}/{a[1]:.2f}; "
          f"after corpus text {b[0]:.2f}/{b[1]:.2f}", flush=True)
