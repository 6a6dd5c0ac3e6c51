"""Held-out accuracy of a quick-start model on the synthetic ``test_single`` split, greedy decoding.

    python -m tl_lightning fit --config configs/quickstart.yaml
    python scripts/quickstart_accuracy.py runs/quickstart/hf                  # an HF export directory
    python scripts/quickstart_accuracy.py runs/quickstart/checkpoints/last.ckpt --limit 100

Prints (and returns) tool-name accuracy (the first predicted call names the gold tool of an acceptable
answer), parameter-name accuracy (tool and argument names right) and exact-call accuracy (the predicted
calls equal an acceptable answer, names and values). A quick sanity metric for the quick start; the
evaluation stage reports the benchmark TS/PI/CF.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tl_lightning.benchmarks.synthetic import read_synthetic_cases
from tl_lightning.data.schema import ToolCall
from tl_lightning.data.templates import get_template
from tl_lightning.tools.calls import parse_calls


def load(path: str | Path):
    """An HF export directory, or a Lightning checkpoint of a tl_lightning module."""
    path = Path(path)
    if path.is_dir():
        return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    from tl_lightning.modules.sft import TLSFTModule

    module = TLSFTModule.load_from_checkpoint(path, map_location="cpu")
    return module.model, module.tokenizer


def _norm(value):
    return json.dumps(value, sort_keys=True)


def _same_call(pred: ToolCall, gold: ToolCall) -> bool:
    return pred.name == gold.name and _norm(pred.arguments) == _norm(gold.arguments)


@torch.inference_mode()
def evaluate(model, tokenizer, split: str = "quickstart:test_single", template: str = "python_doc",
             limit: int | None = None, batch_size: int = 16, max_new_tokens: int = 64) -> dict[str, float]:
    tpl = get_template(template)
    cases = list(read_synthetic_cases(split).cases)[:limit]
    model.eval()
    tokenizer.padding_side = "left"
    eot = tpl.end_of_turn(tokenizer)
    stop_id = tokenizer.convert_tokens_to_ids(eot)
    counts = {"tool_name": 0, "param_names": 0, "exact_call": 0, "parsed": 0}
    for start in range(0, len(cases), batch_size):
        chunk = cases[start : start + batch_size]
        prompts = [tpl.render_prompt(c.as_trajectory(), tokenizer) for c in chunk]
        enc = tokenizer(prompts, return_tensors="pt", padding=True)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop_id,
                             pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        for case, text in zip(chunk, texts, strict=True):
            calls = parse_calls(text, format=tpl.call_format).calls
            counts["parsed"] += bool(calls)
            if not calls:
                continue
            first = calls[0]
            golds = [g for g in case.gold if g]
            counts["tool_name"] += any(first.name == g[0].name for g in golds)
            counts["param_names"] += any(first.name == g[0].name and set(first.arguments) == set(g[0].arguments)
                                         for g in golds)
            counts["exact_call"] += any(len(g) == len(calls) and all(map(_same_call, calls, g)) for g in golds)
    return {k: 100.0 * v / max(len(cases), 1) for k, v in counts.items()} | {"n": len(cases)}


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="HF export directory or Lightning .ckpt")
    p.add_argument("--split", default="quickstart:test_single")
    p.add_argument("--template", default="python_doc")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    model, tokenizer = load(args.model)
    res = evaluate(model, tokenizer, args.split, args.template, args.limit, args.batch_size)
    print(f"n={res['n']}  tool-name {res['tool_name']:.1f}%  param-names {res['param_names']:.1f}%  "
          f"exact-call {res['exact_call']:.1f}%  parsed {res['parsed']:.1f}%  ({time.perf_counter() - t0:.0f} s)")
    return res


if __name__ == "__main__":
    main()
