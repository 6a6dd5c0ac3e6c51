"""Encoding throughput, and tokens of one-sequence-per-trajectory vs the official one-sample-per-turn expansion.

    python benchmarks/bench_encode.py                        # 2,000 trajectories, python_doc, tl-tiny
    python benchmarks/bench_encode.py --n 500 --template react --tokenizer /path/to/hf-tokenizer

The data are multi-turn trajectories from the quick-start generator (``tl_lightning.synthetic.generator``);
``--local`` (or a generator failure) uses a small built-in builder instead. Three encoders run side
by side on the same trajectories:

- ``ours (batched)``: :func:`encode_trajectories`, one render and one tokenization per trajectory,
  texts tokenized 256 per call;
- ``ours (one by one)``: :func:`encode_trajectory` in a loop;
- ``official expansion``: one sample per assistant turn, each the prefix up to and including that
  turn, re-tokenized (what TL-Training's code trains on; the per-step masks make the loss equal).

The token ratio counts the tokens each approach feeds the model (no truncation).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time

import numpy as np

from tl_lightning.data.encode import encode_trajectories, encode_trajectory
from tl_lightning.data.schema import FeedbackCategory, Message, Step, Tool, ToolCall, Trajectory
from tl_lightning.data.templates import get_template
from tl_lightning.tokenization import tokenize_with_offsets


def generated_trajectories(n: int, seed: int) -> list[Trajectory]:
    from tl_lightning.data.readers import read_trajectories
    from tl_lightning.synthetic.generator import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, n_train=n, n_val=0, n_test_single=0, n_test_multi=0, seed=seed, error_rate=0.17)
        return list(read_trajectories(f"{tmp}/train.jsonl"))


def local_trajectories(n: int, seed: int) -> list[Trajectory]:
    """Multi-turn trajectories over prefix-sharing tool families, 17% with a failed-then-recovered call."""
    rng = random.Random(seed)
    families = {"get_weather": ["forecast", "history", "alerts"], "search": ["flights", "hotels", "news"], "convert": ["units", "currency"]}
    params = {"city": "string", "date": "string", "query": "string", "amount": "number", "limit": "integer"}
    tools = [
        Tool(f"{fam}_{leaf}", f"{fam.replace('_', ' ')} {leaf}.", {"type": "object", "properties": {p: {"type": t, "description": f"The {p}."} for p, t in rng.sample(sorted(params.items()), 3)}})
        for fam, leaves in families.items()
        for leaf in leaves
    ]
    out = []
    for i in range(n):
        listed = rng.sample(tools, rng.randint(4, 8))
        steps = []
        for _ in range(rng.randint(1, 4)):
            tool = rng.choice(listed)
            args = {p: rng.choice(["Paris", "2024-05-01", 12, "rain"]) for p in tool.properties}
            if rng.random() < 0.17:
                steps.append(Step([ToolCall(tool.name, {**args, "sortBy": "date"})], feedback=[f"{tool.name}() got an unexpected keyword argument 'sortBy'"], category=FeedbackCategory.PARAMETER_HALLUCINATION))
            steps.append(Step([ToolCall(tool.name, args)], feedback=[json.dumps({"result": "ok", "value": rng.randint(0, 999)})], category=FeedbackCategory.ALL_RIGHT))
        out.append(Trajectory(f"local-{i}", listed, [Message("user", f"Please help with task {i}: weather, flights and units.")], steps, final_answer=f"Done with task {i}."))
    return out


def official_expansion_tokens(traj: Trajectory, tokenizer, template) -> int:
    """Tokens of one sample per assistant turn, each the re-tokenized prefix ending with that turn."""
    rendered = template.render(traj, tokenizer)
    return sum(len(tokenize_with_offsets(rendered.text[: seg.end], tokenizer)[0]) for seg in rendered.supervised)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="number of trajectories")
    ap.add_argument("--template", default="python_doc", choices=["python_doc", "react", "chat_template"])
    ap.add_argument("--tokenizer", default="tl-tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--local", action="store_true", help="use the built-in trajectory builder instead of the generator")
    args = ap.parse_args(argv)

    from tl_lightning.tokenization import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    template = get_template(args.template)
    source = "local builder"
    if args.local:
        trajs = local_trajectories(args.n, args.seed)
    else:
        try:
            trajs, source = generated_trajectories(args.n, args.seed), "tl_lightning.synthetic.generator"
        except Exception as e:  # the benchmark measures the encoder; any data source will do
            print(f"generator unavailable ({type(e).__name__}: {e}); using the local builder", file=sys.stderr)
            trajs = local_trajectories(args.n, args.seed)
    turns = np.array([len(t.steps) + (t.final_answer is not None) for t in trajs])
    print(f"data: {len(trajs)} trajectories from {source}; assistant turns per trajectory: mean {turns.mean():.2f}, max {turns.max()}")
    print(f"template {template.name}, tokenizer {args.tokenizer}")

    t0 = time.perf_counter()
    batched = list(encode_trajectories(trajs, tokenizer, template))
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [encode_trajectory(t, tokenizer, template) for t in trajs]
    t_single = time.perf_counter() - t0
    assert all(len(a) == len(b) for a, b in zip(batched, single, strict=True))
    t0 = time.perf_counter()
    official = sum(official_expansion_tokens(t, tokenizer, template) for t in trajs)
    t_official = time.perf_counter() - t0

    ours = sum(len(e) for e in single)
    supervised = sum(int((e.step_ids >= 0).sum()) for e in single)
    print(f"{'encoder':<22}{'traj/s':>10}{'tokens':>12}")
    print(f"{'ours (batched)':<22}{len(trajs) / t_batched:>10.1f}{ours:>12}")
    print(f"{'ours (one by one)':<22}{len(trajs) / t_single:>10.1f}{ours:>12}")
    print(f"{'official expansion':<22}{len(trajs) / t_official:>10.1f}{official:>12}")
    print(f"token ratio ours / official: {ours / official:.3f} ({official / ours:.2f}x fewer tokens); supervised tokens {supervised}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
