"""Does a base model copy? Greedy first call of held-out pretraining documents against the document's own call.

    python results/2026-11-30/base_model/probe_copy.py MODEL_DIR [--docs 60]
    python results/2026-11-30/base_model/probe_copy.py runs/pretrain_base2/checkpoint.pt --config runs/pretrain_base/hf

Prints exact-call accuracy, tool-name accuracy and the share of argument values that appear in the prompt (copied)
rather than invented. The documents are the corpus's val.jsonl: APIs and values never seen in training.
"""

import argparse
import json
import re

from tl_lightning.checkpoints import load_pretrained
from tl_lightning.generation import generate

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("--corpus", default="data/pretrain/val.jsonl")
p.add_argument("--docs", type=int, default=60)
p.add_argument("--config", default=None, help="with a pretrain_base.py checkpoint.pt: an HF export of the same shape")
args = p.parse_args()
if args.model.endswith(".pt"):  # a pretraining checkpoint mid-run: its weights into the export's architecture
    import torch

    loaded = load_pretrained(args.config)
    loaded.model.load_state_dict(torch.load(args.model, weights_only=False)["model"])
else:
    loaded = load_pretrained(args.model)
model = loaded.model.eval()
docs = [json.loads(line)["text"] for line in open(args.corpus)]
docs = [d for d in docs if d.startswith("System: Function:") and "\nAssistant: " in d][: args.docs]
prompts, golds = [], []
for d in docs:
    i = d.index("\nAssistant: ") + len("\nAssistant:")
    prompts.append(d[:i])
    golds.append(d[i:].split("</s>")[0].strip())
outs = []
for lo in range(0, len(prompts), 8):
    outs += generate(model, loaded.tokenizer, prompts[lo : lo + 8], max_new_tokens=80, stop_strings=["</s>"]).texts
exact = sum(o.strip() == g for o, g in zip(outs, golds))
name = sum(o.strip().split("(")[0] == g.split("(")[0] for o, g in zip(outs, golds))
values = copied = 0
for o, prompt in zip(outs, prompts):
    for v in re.findall(r'"([^"]+)"', o):
        values += 1
        copied += v in prompt
print(f"{args.model}: {len(docs)} documents; exact first call {exact / len(docs):.1%}, tool name {name / len(docs):.1%}, "
      f"string values found in the prompt {copied}/{values}")
