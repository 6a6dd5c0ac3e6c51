"""GRPO (no critic) against PPO (separate critic): bytes held by models and optimizer states, and step time;
multi-turn episode rollouts against single-step rollouts: generated tokens per second.

    python benchmarks/bench_rl.py                                           # random-init tl-tiny, CPU
    python benchmarks/bench_rl.py --actor runs/quickstart/hf --prompts 4 --group-size 8 --new-tokens 48
    python benchmarks/bench_rl.py --actor /models/CodeLlama-7b-hf --device cuda --dtype bfloat16
    OMP_NUM_THREADS=1 python benchmarks/bench_rl.py --engine hf vllm     # rollout engines side by side (needs vllm)

Both modules load the same actor and train on the same rollout batch (``--prompts`` quick-start prompts, each
repeated ``--group-size`` times, sampled at temperature 1), one epoch, one minibatch, side by side in one
process. "Held" counts every parameter and buffer of the actor, the frozen reference and (PPO only) the critic,
plus every tensor in the optimizer states after the first step (AdamW: two moments per trainable parameter).
Step time is the mean of ``--steps`` steps after one warm-up step, from the module's own timers.
Rollout tokens/s: sampled tokens per second of wall time, for ``--tasks`` quick-start multi-turn tasks played to
the end in the sandbox (token-in/token-out, finished episodes dropping out of the batch) and for as many
single-step prompts, both with the same policy and per-turn token budget.

``--engine hf vllm`` compares rollout engines instead, each on the same models in one process: rollout tokens/s
(``engine.generate`` on ``--prompts`` x ``--group-size`` quick-start prompts, sampled, mean of ``--steps`` calls after
a warm-up), the time of one weight sync into the engine, and a GRPO step split into rollout (generation plus the
trainer's and reference's log-probs), score and train, for ``tl-tiny`` and a 6-layer model (``--wide`` wide).
The models are random-init: they rarely stop early, so every row generates ``--new-tokens``. On CPU the vLLM build
runs in-process on one thread (``OMP_NUM_THREADS=1``); HF then runs on one thread too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def held_bytes(module) -> dict[str, int]:
    """Bytes of models (parameters + buffers, reference included) and of the optimizer states."""
    models = tensor_bytes(module.parameters()) + tensor_bytes(module.buffers())
    opts = module.trainer.optimizers
    states = sum(tensor_bytes(v for s in opt.state.values() for v in s.values()) for opt in opts)
    return {"models": models, "optimizer": states, "n_optimizers": len(opts)}


def run(module, records, steps: int, device: str) -> dict[str, float]:
    from lightning.pytorch import Callback, Trainer
    from torch.utils.data import DataLoader

    times: list[float] = []

    class Timer(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            m = trainer.callback_metrics
            times.append(sum(m[f"time/{k}_s"].item() for k in ("rollout", "score", "train")))

    trainer = Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=steps + 1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[Timer()],
    )
    trainer.fit(module, DataLoader(records, batch_size=len(records), collate_fn=list))
    return {**held_bytes(module), "step_s": statistics.mean(times[1:])}


def bench_rollouts(actor: str, n: int, new_tokens: int, device: str, dtype: str | None) -> dict[str, float]:
    from tl_lightning.benchmarks.synthetic import read_synthetic_cases
    from tl_lightning.generation import generate
    from tl_lightning.modules.rl_multiturn import TLMultiTurnRLModule
    from tl_lightning.rl.data import PromptDataModule
    from tl_lightning.synthetic import ensure_quickstart_data

    ensure_quickstart_data()
    module = TLMultiTurnRLModule(actor=actor, max_new_tokens=new_tokens, do_sample=True, dtype=dtype, sampling_seed=0).to(device)
    tasks = read_synthetic_cases("quickstart:test_multi").cases[:n]
    dm = PromptDataModule(train_path="quickstart", template="python_sig", tokenizer=module.tokenizer, batch_size=n, max_train_prompts=n)
    dm.setup("fit")
    start = time.perf_counter()
    traces = module.play(tasks)
    multi_s = time.perf_counter() - start
    multi_tokens = sum(sum(t.sampled) for t in traces)
    start = time.perf_counter()
    out = generate(module.actor, module.tokenizer, [r.text for r in dm.train_prompts], max_new_tokens=new_tokens,
                   do_sample=True, stop_strings=[module.template.end_of_turn(module.tokenizer)], seed=0)
    single_s = time.perf_counter() - start
    return {"multi": multi_tokens / multi_s, "single": int(out.response_mask.sum()) / single_s,
            "turns": sum(len(t.result.turns) for t in traces) / n, "truncated": sum(t.truncated for t in traces)}


def bench_engines(args) -> None:
    from lightning.pytorch import Callback, Trainer
    from torch.utils.data import DataLoader

    from tl_lightning.generation import tokenize_prompts
    from tl_lightning.models import TINY_CONFIG
    from tl_lightning.modules.ppo import TLPPOModule
    from tl_lightning.rl.data import PromptDataModule
    from tl_lightning.rl.engines import SamplingSettings, build_engine

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.steps: list[dict[str, float]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.steps.append({k: trainer.callback_metrics[f"time/{k}_s"].item() for k in ("rollout", "score", "train")})

    # on the CPU build gpu_memory_utilization is a share of host RAM: an exact KV cache is kinder to a shared machine
    vllm = {"kv_cache_memory_bytes": 512 * 2**20, "enforce_eager": True} if args.device == "cpu" else {}
    models = {"tl-tiny (2 x 128)": None, f"6 x {args.wide}": {"num_hidden_layers": 6, "hidden_size": args.wide,
                                                               "intermediate_size": 3 * args.wide}}
    results: dict[tuple[str, str], dict[str, float]] = {}
    for model_name, tiny in models.items():
        for engine_name in args.engine:
            torch.manual_seed(0)
            module = TLPPOModule(
                actor="tl-tiny", tiny_config={**TINY_CONFIG, **(tiny or {})}, advantage="grpo", group_size=args.group_size,
                kl_mode="loss", do_sample=True, max_new_tokens=args.new_tokens, dtype=args.dtype, actor_lr=1e-5,
                sampling_seed=0, rollout_engine=engine_name, vllm=vllm,
            ).to(args.device)
            dm = PromptDataModule(train_path="quickstart", template="python_sig", tokenizer=module.tokenizer,
                                  batch_size=args.prompts, max_train_prompts=args.prompts)
            dm.setup("fit")
            records = [r for r in dm.train_prompts for _ in range(args.group_size)]  # the module's own step repeats them
            r = {}
            engine = build_engine(engine_name, module.actor, module.tokenizer, module.vllm_settings)
            prompt_ids = tokenize_prompts(module.tokenizer, [x.text for x in records])
            # as the module asks: HF keeps no per-step scores unless TIS needs them, vLLM's log-probs come with its ids
            sampling = SamplingSettings(args.new_tokens, do_sample=True, stop_token_ids=(module.tokenizer.eos_token_id,),
                                        seed=0, logprobs=engine_name != "hf")
            engine.generate(prompt_ids, sampling)  # warm-up
            start, tokens = time.perf_counter(), 0
            for _ in range(args.steps):
                tokens += int(engine.generate(prompt_ids, sampling).response_mask.sum())
            r["tokens_s"] = tokens / (time.perf_counter() - start)
            syncs = [engine.sync_weights(module.actor) for _ in range(3)]
            r["sync_s"] = statistics.median(syncs)
            engine.close()
            timer = StepTimer()
            trainer = Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1, max_epochs=args.steps + 1,
                              logger=False, enable_checkpointing=False, enable_progress_bar=False,
                              enable_model_summary=False, callbacks=[timer])
            trainer.fit(module, DataLoader(dm.train_prompts, batch_size=args.prompts, collate_fn=list))
            for k in ("rollout", "score", "train"):
                r[k] = statistics.mean(s[k] for s in timer.steps[1:])
            results[model_name, engine_name] = r
            del module, engine

    load = os.getloadavg()
    print(f"device {args.device}, dtype {args.dtype or 'float32'}, torch threads {torch.get_num_threads()}, load average "
          f"{load[0]:.1f} on {os.cpu_count()} cores; {args.prompts} prompts x {args.group_size} samples, "
          f"{args.new_tokens} new tokens, mean of {args.steps} steps after a warm-up")
    print(f"{'model':18s} {'engine':6s} {'rollout tok/s':>13s} {'sync s':>8s} {'step: rollout':>13s} {'score':>7s} "
          f"{'train':>7s} {'total s':>8s}")
    for (model_name, engine_name), r in results.items():
        total = r["rollout"] + r["score"] + r["train"]
        print(f"{model_name:18s} {engine_name:6s} {r['tokens_s']:13.0f} {r['sync_s']:8.4f} {r['rollout']:13.3f} "
              f"{r['score']:7.3f} {r['train']:7.3f} {total:8.3f}")
    if {"hf", "vllm"} <= set(args.engine):
        for model_name in models:
            hf, vl = results[model_name, "hf"], results[model_name, "vllm"]
            step = (vl["rollout"] + vl["score"] + vl["train"]) / (hf["rollout"] + hf["score"] + hf["train"])
            print(f"{model_name}: vllm / hf rollout tokens/s {vl['tokens_s'] / hf['tokens_s']:.2f}x, "
                  f"GRPO step rollout time {vl['rollout'] / hf['rollout']:.2f}x, whole step {step:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--actor", default="tl-tiny", help="HF path/export, a TLSFTModule .ckpt, or tl-tiny (random init)")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--tasks", type=int, default=16, help="multi-turn tasks (and single-step prompts) for rollout tokens/s")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--engine", nargs="+", choices=["hf", "vllm"], help="compare rollout engines instead (see above)")
    p.add_argument("--wide", type=int, default=256, help="hidden size of the 6-layer model of --engine")
    args = p.parse_args()
    if args.engine:
        return bench_engines(args)

    from tl_lightning.modules.ppo import TLPPOModule
    from tl_lightning.rl.data import PromptDataModule

    common = dict(actor=args.actor, max_new_tokens=args.new_tokens, do_sample=True, temperature=1.0, dtype=args.dtype,
                  actor_lr=1e-5, critic_lr=1e-5, sampling_seed=0)
    settings = {
        "PPO (gae, separate critic)": dict(advantage="gae", critic="separate", group_size=args.group_size),
        f"GRPO (G={args.group_size}, no critic)": dict(advantage="grpo", group_size=args.group_size, kl_mode="loss"),
    }
    results = {}
    for name, kw in settings.items():
        torch.manual_seed(0)
        module = TLPPOModule(**common, **kw).to(args.device)
        dm = PromptDataModule(train_path="quickstart", template="python_sig", tokenizer=module.tokenizer, batch_size=args.prompts,
                              max_train_prompts=args.prompts)
        dm.setup("fit")
        results[name] = run(module, dm.train_prompts, args.steps, args.device)  # the module samples each prompt G times
        del module

    print(f"actor {args.actor}, device {args.device}, torch threads {torch.get_num_threads()}; "
          f"{args.prompts} prompts x {args.group_size} samples, {args.new_tokens} new tokens max")
    print(f"{'setting':32s} {'models MB':>10s} {'optim MB':>10s} {'total MB':>10s} {'optimizers':>10s} {'step s':>8s}")
    for name, r in results.items():
        total = r["models"] + r["optimizer"]
        print(f"{name:32s} {r['models'] / 2**20:10.2f} {r['optimizer'] / 2**20:10.2f} {total / 2**20:10.2f} "
              f"{r['n_optimizers']:10d} {r['step_s']:8.2f}")
    ppo, grpo = results.values()
    ratio = (grpo["models"] + grpo["optimizer"]) / (ppo["models"] + ppo["optimizer"])
    print(f"GRPO / PPO held bytes (models + optimizer states): {ratio:.2f}x   "
          f"models only: {grpo['models'] / ppo['models']:.2f}x   step time: {grpo['step_s'] / ppo['step_s']:.2f}x")
    roll = bench_rollouts(args.actor, args.tasks, args.new_tokens, args.device, args.dtype)
    print(f"rollout tokens/s  multi-turn episodes: {roll['multi']:.1f} ({roll['turns']:.1f} turns/episode, "
          f"{roll['truncated']} truncated)   single-step: {roll['single']:.1f}   ratio (multi / single): "
          f"{roll['multi'] / roll['single']:.2f}x")


if __name__ == "__main__":
    main()
