"""Per-case outcomes of a test report and the paired differences between runs, with bootstrap intervals.

The maths of the ablation tables (:mod:`tl_lightning.experiments.results`), kept apart from the grid-reading and
table-writing code: :func:`case_outcomes` reads one metric of one ``report.json`` per case; :func:`rate` is the
report's own ratio of sums; :func:`paired_bootstrap` (test cases resampled) and :func:`two_level_bootstrap` (seed
pairs and test cases resampled) give the replicates that :func:`paired_difference` turns into an interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "METRICS",
    "OUTCOME_GROUPS",
    "CaseOutcomes",
    "case_outcomes",
    "paired_bootstrap",
    "paired_difference",
    "rate",
    "two_level_bootstrap",
]

#: Metric -> the test set whose report holds it.
METRICS = {"TS": "synthetic_single", "PI": "synthetic_single", "CF": "synthetic_single",
           "DE": "synthetic_multi", "CE": "synthetic_multi", "VA": "synthetic_multi", "success": "synthetic_multi"}
#: The IRM outcome of a single-turn case (``report.json`` ``cases[i].category``, the values of
#: ``tl_lightning.rewards.RewardCategory``) grouped as the reward table orders them, from worst to best.
OUTCOME_GROUPS: dict[str, tuple[str, ...]] = {
    "invalid": ("unparseable", "tool_hallucination"),
    "wrong_tool": ("wrong_tool",),
    "param_hallucination": ("param_hallucination_redundancy_missing", "param_hallucination_redundancy",
                            "param_hallucination_missing", "param_hallucination"),
    "redundancy_missing": ("param_redundancy_missing", "param_redundancy", "param_missing"),
    "wrong_values": ("wrong_values",),
    "correct": ("correct",),
}
METRICS.update({f"irm_{g}": "synthetic_single" for g in OUTCOME_GROUPS})
_MULTI_FIELDS = {"DE": ("DE_calls", "n_calls"), "CE": ("CE_calls", "n_calls")}


@dataclass(frozen=True)
class CaseOutcomes:
    """One metric of one report, per case: ``ids`` [n] case ids, ``num`` and ``den`` [n] float arrays.

    The metric is ``100 * num.sum() / den.sum()`` (:func:`rate`): for TS/PI/CF/VA ``num`` is 0/1 and ``den`` 1;
    for DE/CE ``num`` counts the task's DE (CE) calls and ``den`` its calls; for success ``den`` is 0 on a
    task without a success check.
    """

    ids: tuple[str, ...]
    num: np.ndarray
    den: np.ndarray

    def aligned(self, ids: Sequence[str], source: str = "") -> CaseOutcomes:
        """The same outcomes in the order of ``ids``; raises ValueError if the case sets differ."""
        if tuple(ids) == self.ids:
            return self
        if set(ids) != set(self.ids):
            missing, extra = sorted(set(ids) - set(self.ids)), sorted(set(self.ids) - set(ids))
            raise ValueError(f"{source}: not the same test cases as the run it is compared with "
                             f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, extra {extra[:3]}{'...' if len(extra) > 3 else ''})")
        at = {i: k for k, i in enumerate(self.ids)}
        order = np.array([at[i] for i in ids])
        return CaseOutcomes(tuple(ids), self.num[order], self.den[order])


def rate(num: np.ndarray, den: np.ndarray) -> np.ndarray | float:
    """``100 * sum(num) / sum(den)`` over the last axis; 0.0 where ``sum(den)`` is 0 (the report's rule)."""
    n, d = np.sum(num, axis=-1), np.sum(den, axis=-1)
    out = np.where(d > 0, 100.0 * n / np.where(d > 0, d, 1), 0.0)
    return float(out) if np.ndim(out) == 0 else out


def case_outcomes(report: dict[str, Any], metric: str, source: str = "") -> CaseOutcomes:
    """Per-case outcomes of ``metric`` from a ``report.json`` (its ``cases`` list); ``source`` names the file in errors."""
    kind = "multi_turn" if METRICS[metric] == "synthetic_multi" else "single_turn"
    if report.get("kind") != kind or not isinstance(report.get("cases"), list):
        raise ValueError(f"{source}: expected a {kind} report with a 'cases' list for {metric}, got kind {report.get('kind')!r}")
    cases = report["cases"]
    try:
        ids = tuple(str(c["id"]) for c in cases)
        if metric in _MULTI_FIELDS:
            k_num, k_den = _MULTI_FIELDS[metric]
            num, den = [float(c[k_num]) for c in cases], [float(c[k_den]) for c in cases]
        elif metric.startswith("irm_"):
            group = OUTCOME_GROUPS[metric[4:]]
            num, den = [float(c["category"] in group) for c in cases], [1.0] * len(cases)
        elif metric == "success":
            num, den = [float(bool(c["success"])) for c in cases], [float(c["success"] is not None) for c in cases]
        else:
            num, den = [float(bool(c[metric])) for c in cases], [1.0] * len(cases)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{source}: a case lacks what {metric} needs ({e!r})") from None
    if len(set(ids)) != len(ids):
        raise ValueError(f"{source}: duplicate case ids")
    out = CaseOutcomes(ids, np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    headline = report.get(metric)
    # The report's headline is rounded to 2 places: the per-case rows must give the same number.
    if headline is not None and abs(rate(out.num, out.den) - float(headline)) > 0.006:
        raise ValueError(f"{source}: {metric} from the cases ({rate(out.num, out.den):.4f}) disagrees with the report's {headline}")
    return out


def paired_bootstrap(x: Sequence[CaseOutcomes], b: Sequence[CaseOutcomes], draws: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of the seed-averaged paired difference.

    ``x[i]`` and ``b[i]``: seed i's run of the setting and of the baseline, on the same cases in the same
    order (n cases). ``draws``: [n_boot, n] case indices; each row is one resample, shared by every pair.
    Returns [n_boot]: ``mean_i (rate(x_i[row]) - rate(b_i[row]))``.
    """
    diffs = [rate(xi.num[draws], xi.den[draws]) - rate(bi.num[draws], bi.den[draws]) for xi, bi in zip(x, b, strict=True)]
    return np.mean(diffs, axis=0)


def two_level_bootstrap(x: Sequence[CaseOutcomes], b: Sequence[CaseOutcomes], draws: np.ndarray,
                        seed_draws: np.ndarray) -> np.ndarray:
    """Bootstrap replicates of the seed-averaged paired difference, resampling seeds and cases.

    ``x[i]``, ``b[i]``: seed pair i (k pairs), on the same n cases in the same order. ``draws``: [n_boot, n] case
    indices, one case resample per replicate, shared by every pair drawn in it. ``seed_draws``: [n_boot, k] pair
    indices, drawn with replacement. Returns [n_boot]: ``mean_j (rate(x_s[row]) - rate(b_s[row]))`` over the
    drawn pairs ``s = seed_draws[r, j]``.
    """
    per_pair = np.stack([rate(xi.num[draws], xi.den[draws]) - rate(bi.num[draws], bi.den[draws])
                         for xi, bi in zip(x, b, strict=True)])  # [k, n_boot]
    return np.take_along_axis(per_pair.T, seed_draws, axis=1).mean(axis=1)


def paired_difference(x: Sequence[CaseOutcomes], b: Sequence[CaseOutcomes], n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95, resample_seeds: bool = True) -> tuple[float, float, float]:
    """(difference, low, high): the mean over seed pairs of ``rate(x_i) - rate(b_i)`` and its percentile
    bootstrap interval (``n_boot`` resamples drawn by ``numpy.random.default_rng(seed)``): over seeds and cases
    (:func:`two_level_bootstrap`, the default) or, with ``resample_seeds=False``, over the test cases only
    (:func:`paired_bootstrap`). Cases are aligned by id to ``b[0]``."""
    if not x or len(x) != len(b):
        raise ValueError("paired_difference needs one baseline run per run (seeds matched)")
    ids = b[0].ids
    x = [o.aligned(ids, "setting run") for o in x]
    b = [o.aligned(ids, "baseline run") for o in b]
    point = float(np.mean([rate(xi.num, xi.den) - rate(bi.num, bi.den) for xi, bi in zip(x, b, strict=True)]))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    if resample_seeds:
        reps = two_level_bootstrap(x, b, draws, rng.integers(0, len(x), size=(n_boot, len(x))))
    else:
        reps = paired_bootstrap(x, b, draws)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(reps, [tail, 100 - tail])
    return point, float(lo), float(hi)
