"""The recipe choice: the quick start against the longer CPU recipe, 2 seeds each, paired by seed.

    python results/2026-12-06/ablation/recipe_compare.py --runs ../grid/runs/recipe > results/2026-12-06/ablation/recipe/results.md

Reads each cell's reports (``<cell>/sft/eval/<set>/report.json``) and prints, per metric, each run's value, the mean
per recipe, and the long-minus-quick difference averaged over the seed pairs with a 95% two-level bootstrap interval
(seeds and test cases resampled; with 2 seeds the seed level is coarse).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tl_lightning.experiments.results import METRICS, case_outcomes, paired_difference, rate

SEEDS = (0, 1)


def outcomes(cell: Path, metric: str):
    path = cell / "sft" / "eval" / METRICS[metric] / "report.json"
    return case_outcomes(json.loads(path.read_text(encoding="utf-8")), metric, str(path))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=Path, required=True)
    args = p.parse_args()
    times = {r: [json.loads((args.runs / f"{r}_s{s}" / "timings.json").read_text())["sft"] for s in SEEDS] for r in ("quick", "long")}
    print("# Recipe choice: quick start against the longer CPU recipe\n")
    print("SFT with MAE + PKT (the shipped defaults), tested on the quick-start `test_single` (300 cases) and `test_multi` "
          "(100 tasks). quick: `configs/quickstart.yaml`, 1,217 trajectories, 1,400 steps. long: 10,000 trajectories "
          "(same generator, error rate and training value pools), 6,000 steps, otherwise identical (now "
          "`configs/small.yaml`). Seeds 0 and 1. Difference: long minus quick, averaged over the two seed pairs, 95% "
          "two-level bootstrap interval (seeds and cases resampled, 2,000 draws).\n")
    print(f"SFT wall time (s, busy 2-core machine, other jobs running): quick {times['quick']}, long {times['long']}.\n")
    print("| metric | quick s0 | quick s1 | long s0 | long s1 | quick mean | long mean | long − quick [95%] |")
    print("|---|---|---|---|---|---|---|---|")
    for m in METRICS:
        q = [outcomes(args.runs / f"quick_s{s}", m) for s in SEEDS]
        lg = [outcomes(args.runs / f"long_s{s}", m) for s in SEEDS]
        qv, lv = [rate(o.num, o.den) for o in q], [rate(o.num, o.den) for o in lg]
        d, lo, hi = paired_difference(lg, q, n_boot=2000, seed=0)
        print(f"| {m} | {qv[0]:.2f} | {qv[1]:.2f} | {lv[0]:.2f} | {lv[1]:.2f} | {sum(qv) / 2:.2f} | {sum(lv) / 2:.2f} | "
              f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}] |")


if __name__ == "__main__":
    main()
