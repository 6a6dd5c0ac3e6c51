"""One epoch over quick-start trajectories: ours (one packed sequence per trajectory) against the official recipe
(one sample per assistant turn holding its prefix, padded, plain cross-entropy on that turn's tokens).

    python benchmarks/bench_epoch.py                        # 240 trajectories, 4 per optimizer update, CPU
    python benchmarks/bench_epoch.py --trajectories 1217    # the whole quick-start training set

Same model (the quick-start tl-tiny, same initial weights in both arms) and the same trajectories in the same
groups: every optimizer update sees the same ``--per-update`` trajectories in both arms, so both make the same
number of updates per trajectory.
- Ours: the group's trajectories packed whole into rows of up to ``--max-length`` tokens (``collate_packed``),
  TLSFTModule's loss (MAE + PKT, head at the loss positions only).
- Ours, padded: the same, one right-padded row per trajectory (``collate_encoded``). On a CPU the packed rows'
  block-diagonal mask is dense, so a row of four trajectories costs four times their attention; this arm
  separates that from the per-turn recipe's cost.
- Official: one sample per trained assistant turn (erroneous turns have no sample: MAE), holding the
  trajectory from its start to the end of that turn, labels on that turn only; the group's samples right-padded
  into one batch; HF's ``model(..., labels=...).loss``.
The arms alternate update by update so machine load hits both alike; each arm's step time (forward, loss,
backward, AdamW) is summed over the epoch.
"""

from __future__ import annotations

import argparse
import time

import torch

from tl_lightning.data.batch import IGNORE_INDEX, EncodedTrajectory, collate_encoded
from tl_lightning.data.datamodule import ToolTrajectoryDataModule
from tl_lightning.data.packing import collate_packed, pack_rows
from tl_lightning.modules.sft import TLSFTModule
from tl_lightning.tokenization import load_tokenizer


def per_turn_samples(it: EncodedTrajectory) -> list[EncodedTrajectory]:
    """The official recipe's samples of one trajectory: for each trained turn, the prefix up to its end, loss on it."""
    samples = []
    supervised = it.labels != IGNORE_INDEX
    for step in sorted(set(it.step_ids[supervised].tolist())):
        turn = supervised & (it.step_ids == step)
        if (turn & ~it.error_mask).sum() == 0:  # an erroneous turn: MAE trains nothing on it
            continue
        end = int(turn.nonzero().max()) + 1
        labels = torch.where(turn, it.labels, torch.full_like(it.labels, IGNORE_INDEX))[:end]
        samples.append(EncodedTrajectory(it.input_ids[:end], labels, it.error_mask[:end], it.key_mask[:end],
                                         it.step_ids[:end], id=f"{it.id}#{step}"))
    return samples


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trajectories", type=int, default=240)
    p.add_argument("--per-update", type=int, default=4)
    p.add_argument("--max-length", type=int, default=1536)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    tok = load_tokenizer("tl-tiny")
    dm = ToolTrajectoryDataModule(train_path="quickstart", template="python_sig", tokenizer=tok, max_length=args.max_length)
    dm.prepare_data()
    dm.setup("fit")
    data = dm.datasets["train"]
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(args.seed))[: args.trajectories].tolist()
    groups = [[data[i] for i in order[g : g + args.per_update]] for g in range(0, len(order), args.per_update)]
    pad = tok.pad_token_id

    def ours_batch(group):
        rows = pack_rows([len(t) for t in group], args.max_length, None)
        return collate_packed([[group[i] for i in row] for row in rows], pad)

    batches = {
        "ours": [ours_batch(g) for g in groups],
        "ours_padded": [collate_encoded(g, pad) for g in groups],
        "official": [collate_encoded([s for t in g for s in per_turn_samples(t)], pad) for g in groups],
    }
    torch.manual_seed(args.seed)
    modules = {"ours": TLSFTModule(tokenizer=tok)}
    for arm in ("ours_padded", "official"):
        modules[arm] = TLSFTModule(tokenizer=tok)
        modules[arm].model.load_state_dict(modules["ours"].model.state_dict())
    opts = {k: torch.optim.AdamW(m.parameters(), lr=3e-3) for k, m in modules.items()}

    def ours_step(b, arm="ours"):
        module = modules[arm]
        loss, _ = module._loss(b, module._weights(b))
        return loss

    def official_step(b):
        return modules["official"].model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels,
                                         use_cache=False).loss

    steps = {"ours": ours_step, "ours_padded": lambda b: ours_step(b, "ours_padded"), "official": official_step}
    seconds = {k: 0.0 for k in steps}
    arms = list(steps)
    for i in range(len(groups)):
        for arm in arms[i % len(arms):] + arms[: i % len(arms)]:
            t = time.perf_counter()
            steps[arm](batches[arm][i]).backward()
            opts[arm].step()
            opts[arm].zero_grad(set_to_none=True)
            seconds[arm] += time.perf_counter() - t

    real = {k: sum(b.num_tokens for b in v) for k, v in batches.items()}
    computed = {k: sum(b.input_ids.numel() for b in v) for k, v in batches.items()}
    samples = sum(b.num_segments for b in batches["official"])
    print(f"{len(order)} quick-start trajectories (python_sig, tl-tiny), {len(groups)} optimizer updates per arm "
          f"({args.per_update} trajectories each), seed {args.seed}")
    print(f"  ours     : {len(order)} packed sequences, {real['ours']} real tokens ({computed['ours']} computed), "
          f"{seconds['ours']:.1f} s")
    print(f"  ours, padded: {len(order)} padded sequences, {real['ours_padded']} real tokens "
          f"({computed['ours_padded']} computed), {seconds['ours_padded']:.1f} s")
    print(f"  official : {samples} per-turn samples, {real['official']} real tokens ({computed['official']} computed), "
          f"{seconds['official']:.1f} s")
    print(f"official / ours: wall time {seconds['official'] / seconds['ours']:.2f}x (target >= 2), "
          f"real tokens {real['official'] / real['ours']:.2f}x, computed tokens {computed['official'] / computed['ours']:.2f}x")
    print(f"official / ours, padded: wall time {seconds['official'] / seconds['ours_padded']:.2f}x, "
          f"computed tokens {computed['official'] / computed['ours_padded']:.2f}x")


if __name__ == "__main__":
    main()
