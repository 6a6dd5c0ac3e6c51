"""PPO throughput: rollout tokens/s with vs without the KV cache, and where a PPO step's time goes.

    python benchmarks/bench_ppo.py                                   # tiny quick-start model, CPU
    python benchmarks/bench_ppo.py --actor runs/quickstart/hf --batch-size 8 --new-tokens 48
    python benchmarks/bench_ppo.py --actor /models/CodeLlama-7b-hf --device cuda --dtype bfloat16

Both generation runs produce exactly ``--new-tokens`` tokens per prompt (no stop token), greedy, on
the same prompts, side by side in one process; the ratio is what the cache buys at this length.
The step split comes from ``TLPPOModule``'s own timers (``time/rollout_s``, ``time/score_s``,
``time/train_s``) over a few PPO iterations on quick-start prompts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _prompts(tokenizer, n: int) -> list:
    from tl_lightning.rl.data import PromptDataModule

    dm = PromptDataModule(train_path="quickstart", tokenizer=tokenizer, batch_size=n, max_train_prompts=n)
    dm.setup("fit")
    return dm.train_prompts


def bench_generation(model, tokenizer, texts: list[str], new_tokens: int, repeats: int) -> dict[str, float]:
    from tl_lightning.generation import generate

    times: dict[bool, list[float]] = {True: [], False: []}
    generate(model, tokenizer, texts, max_new_tokens=2)  # warm-up
    # Every row must run the full length: `generate` fills an unset eos from the model's generation config,
    # so stop_token_ids=[] alone would still stop rows at EOS.
    saved_eos, model.generation_config.eos_token_id = model.generation_config.eos_token_id, None
    # interleaved, so a noisy neighbour slows both settings alike
    for _ in range(repeats):
        for use_cache in (True, False):
            start = time.perf_counter()
            out = generate(model, tokenizer, texts, max_new_tokens=new_tokens, stop_token_ids=[], use_cache=use_cache)
            if out.sequences.device.type == "cuda":
                torch.cuda.synchronize()
            times[use_cache].append(time.perf_counter() - start)
            assert out.response_mask.shape[1] == new_tokens
    model.generation_config.eos_token_id = saved_eos
    return {("cache" if k else "no_cache"): len(texts) * new_tokens / statistics.median(v) for k, v in times.items()}


def bench_steps(module, records, steps: int, device: str) -> dict[str, float]:
    from lightning.pytorch import Callback, Trainer
    from torch.utils.data import DataLoader

    times: dict[str, list[float]] = {"rollout": [], "score": [], "train": []}

    class Timer(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            for k in times:
                times[k].append(trainer.callback_metrics[f"time/{k}_s"].item())

    trainer = Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=1, limit_train_batches=steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()],
    )
    trainer.fit(module, DataLoader(records, batch_size=len(records) // steps, collate_fn=list))
    # the first iteration includes one-off warm-up; report the rest when there is a rest
    skip = 1 if steps > 1 else 0
    return {k: statistics.mean(v[skip:]) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--actor", default="tl-tiny", help="HF path/export, a TLSFTModule .ckpt, or tl-tiny (random init)")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="PPO iterations for the step split")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    args = p.parse_args()

    from tl_lightning.modules.ppo import TLPPOModule

    torch.manual_seed(0)
    module = TLPPOModule(actor=args.actor, tokenizer=args.tokenizer, max_new_tokens=args.new_tokens, do_sample=False,
                         dtype=args.dtype, actor_lr=1e-5, critic_lr=1e-5)
    module.to(args.device)
    records = _prompts(module.tokenizer, args.batch_size * args.steps)
    texts = [r.text for r in records[: args.batch_size]]
    prompt_tokens = statistics.mean(len(module.tokenizer(t)["input_ids"]) for t in texts)
    params = sum(p.numel() for p in module.actor.parameters())
    print(f"actor {args.actor} ({params / 1e6:.2f}M params), device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"batch {args.batch_size} prompts of ~{prompt_tokens:.0f} tokens, {args.new_tokens} new tokens each")

    gen = bench_generation(module.actor, module.tokenizer, texts, args.new_tokens, args.repeats)
    print(f"rollout tokens/s  KV cache: {gen['cache']:.1f}   no cache: {gen['no_cache']:.1f}   "
          f"ratio (cache / no cache): {gen['cache'] / gen['no_cache']:.2f}x")

    split = bench_steps(module, records, args.steps, args.device)
    total = sum(split.values())
    print(f"PPO step ({args.batch_size} prompts, separate critic, 1 epoch x 1 minibatch): {total:.2f} s")
    for k, v in split.items():
        print(f"  {k:8s} {v:7.3f} s  {100 * v / total:5.1f}%")


if __name__ == "__main__":
    main()
