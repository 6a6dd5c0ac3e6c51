"""Before -> after on the same test cases: each metric per run, the mean and half-range over seeds, and the
seed-averaged paired difference from the SFT model with a 95% bootstrap interval over the cases
(``tl_lightning.experiments.results.paired_difference``, the ablation table's statistic).

    python results/2026-11-30/rl/session7/compare.py --before SFT/report.json --after RUN1/report.json RUN2/report.json \
        --metrics TS PI CF
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tl_lightning.experiments.results import CaseOutcomes, case_outcomes, paired_difference, rate


def outcomes(report: dict, metric: str, source: str) -> CaseOutcomes:
    """``case_outcomes``, plus ``DE+CE``: both error kinds over the same calls (the issue's multi-turn target)."""
    if metric != "DE+CE":
        return case_outcomes(report, metric, source)
    de, ce = case_outcomes(report, "DE", source), case_outcomes(report, "CE", source)
    assert de.ids == ce.ids and np.array_equal(de.den, ce.den)
    return CaseOutcomes(de.ids, de.num + ce.num, de.den)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="the SFT model's report.json")
    p.add_argument("--after", nargs="+", required=True, help="one report.json per seed of the RL run")
    p.add_argument("--metrics", nargs="+", required=True, help="TS PI CF, or DE CE DE+CE VA success")
    a = p.parse_args()
    before = json.loads(Path(a.before).read_text())
    after = [json.loads(Path(x).read_text()) for x in a.after]
    for m in a.metrics:
        b = outcomes(before, m, a.before)
        xs = [outcomes(r, m, s) for r, s in zip(after, a.after, strict=True)]
        vals = [rate(x.num, x.den) for x in xs]
        d, lo, hi = paired_difference(xs, [b] * len(xs))
        print(f"{m}: before {rate(b.num, b.den):.2f} -> after {' / '.join(f'{v:.2f}' for v in vals)} "
              f"(mean {np.mean(vals):.2f} ± {(max(vals) - min(vals)) / 2:.2f}); "
              f"paired difference {d:+.2f} [{lo:+.2f}, {hi:+.2f}]")


if __name__ == "__main__":
    main()
