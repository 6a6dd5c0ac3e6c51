"""Does a base model copy in the middle of a document, or only in a document of its own?

    python results/2026-11-30/base_model/session6/probe_in_text.py MODEL_DIR

8 held-out random spans of 24 tokens, each repeated 3 times: the loss (nats/token) on the first copy and on the
repetitions (a) after a bos with positions shifted by the offset, and (b) after that many tokens of a held-out
corpus document. Uniform guessing costs ln(4096) = 8.32.
"""

import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

from tl_lightning.checkpoints import load_pretrained

torch.set_num_threads(1)
loaded = load_pretrained(sys.argv[1])
model, tok = loaded.model.eval(), loaded.tokenizer
rng = np.random.default_rng([10**6, 0x5EED])
low = max(tok.all_special_ids) + 1
n, span = 8, 24
spans = torch.from_numpy(rng.integers(low, len(tok), size=(n, span)))
doc = [json.loads(line)["text"] for line in open("data/pretrain/val.jsonl")][0]
prefix = torch.tensor(tok(doc)["input_ids"][:1000])


def split_nll(ids: torch.Tensor, start: int, pos: torch.Tensor | None = None) -> tuple[float, float]:
    """Loss on the first copy (its first token excluded: a guess either way) and on the repetitions of the span
    that starts at column ``start`` of ``ids`` [n, start + 3 * span]."""
    nll = F.cross_entropy(model(input_ids=ids, position_ids=pos).logits[:, :-1].transpose(1, 2), ids[:, 1:],
                          reduction="none")[:, start - 1 :]  # column k predicts the span's token k
    return nll[:, 1:span].mean().item(), nll[:, span:].mean().item()


with torch.no_grad():
    for off in [0, 200, 500, 1000]:
        ids = torch.cat([torch.full((n, 1), tok.bos_token_id), spans.repeat(1, 3)], 1)
        shifted = split_nll(ids, 1, torch.arange(ids.shape[1]).unsqueeze(0) + off)
        head = prefix[:off]  # the document may be shorter than the offset
        in_text = split_nll(torch.cat([head.unsqueeze(0).expand(n, -1), spans.repeat(1, 3)], 1), len(head)) if off else shifted
        print(f"offset {off} ({len(head)} tokens of text): positions shifted first/repeats {shifted[0]:.2f}/{shifted[1]:.2f}; "
              f"after corpus text {in_text[0]:.2f}/{in_text[1]:.2f}", flush=True)
