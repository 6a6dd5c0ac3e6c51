"""The results table of a grid, laid out like the paper's Table 5: ``results.md``, ``results.csv`` and ``runs.csv``.

    from tl_lightning.experiments.results import write_results
    write_results(sorted(Path("runs/ablation").glob("*/cell.json")), "runs/ablation")   # cell folders or their cell.json
    python -m tl_lightning sweep configs/sweeps/tl_ablation.yaml --out runs/ablation --table-only   # the same, from the CLI

One row per setting (``use_mae``, ``use_pkt``, ``irm`` and any other grid parameter but the seed, e.g.
``error_rate``), in Table 5's order: Standard SFT, +MAE, +PKT, +IRM, the pairs, all three. Columns: TS/PI/CF
(``synthetic_single``, % of cases), DE/CE (``synthetic_multi``, % of calls), VA and task success (% of tasks),
and the rate of each IRM outcome group on ``synthetic_single`` (:data:`OUTCOME_GROUPS`: invalid, wrong tool,
hallucinated parameter, redundancy/missing, wrong values, correct), each as mean ± sample standard deviation over
seeds. ``runs.csv`` holds the same numbers per (setting, seed).

For each setting, the paired difference from its baseline (the same setting with every method flag that the grid
varies turned off: Standard SFT at the same error rate; ``+MAE`` in a grid that keeps MAE on and varies PKT), seeds
matched by seed number, with two 95% percentile-bootstrap intervals:

- **seeds and cases** (the headline, :func:`two_level_bootstrap`): each replicate resamples the seed pairs with
  replacement and, independently, the test cases; every drawn pair is scored on that one case resample (the test
  set is shared by all seeds: seeds and cases are crossed, not nested). It covers both the spread between training
  runs and the sampling noise of a finite test set. With k seeds, a resample of seeds understates the seed variance
  by a factor (k-1)/k, a known small-sample bias of the bootstrap;
- **cases only** (:func:`paired_bootstrap`): the seeds are fixed and only the test cases are resampled. It measures
  test-set noise of the seed-averaged difference, not seed-to-seed noise, and is kept, labelled, for comparison.

Per-case outcomes come from the ``cases`` list that the test stage writes into ``report.json``
(:mod:`tl_lightning.evaluation.report`), so nothing is re-scored here; a metric over a resample is the report's own
ratio of sums (DE = sum of DE calls / sum of calls).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tl_lightning.experiments.outcomes import (
    METRICS,
    OUTCOME_GROUPS,
    CaseOutcomes,
    case_outcomes,
    paired_bootstrap,
    paired_difference,
    rate,
    two_level_bootstrap,
)

__all__ = [
    "METRICS",
    "OUTCOME_GROUPS",
    "CaseOutcomes",
    "Evaluation",
    "case_outcomes",
    "load_evaluations",
    "paired_bootstrap",
    "paired_difference",
    "rate",
    "setting_label",
    "summarize",
    "two_level_bootstrap",
    "write_results",
]

METHOD_FLAGS = ("use_mae", "use_pkt", "irm")
#: Table 5's row order of the (MAE, PKT, IRM) flags.
_ORDER = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1), (1, 1, 1)]


# ------------------------------------------------------------------------------------------ grid cells
@dataclass
class Evaluation:
    """One evaluated model of one cell (an entry of ``cell.json``'s ``evaluations``) with its reports read."""

    cell: Path
    model: str
    setting: dict[str, Any]
    seed: Any
    reports: dict[str, dict[str, Any]]
    sources: dict[str, Path]
    complete: bool = True
    outcomes: dict[str, CaseOutcomes] = field(default_factory=dict)
    #: another grid's cell whose evaluation this is (``cell.json``'s ``borrowed_from``): the same run, reused
    borrowed_from: str | None = None

    def metric(self, name: str) -> CaseOutcomes | None:
        """The per-case outcomes of a metric (None when the report has no such number, e.g. no success checks)."""
        if name not in self.outcomes:
            report = self.reports.get(METRICS[name])
            if report is None:
                return None
            # Outcome groups have no headline number: they exist when the cases carry their IRM category.
            has = (all("category" in c for c in report.get("cases") or [{}]) if name.startswith("irm_")
                   else report.get(name) is not None)
            if not has:
                return None
            self.outcomes[name] = case_outcomes(report, name, str(self.sources[METRICS[name]]))
        return self.outcomes[name]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def load_evaluations(cells: Iterable[str | Path]) -> list[Evaluation]:
    """Every evaluation of the given cells (folders, or their ``cell.json``)."""
    out = []
    for cell in map(Path, cells):
        cell_dir = cell.parent if cell.name == "cell.json" else cell
        record = _read_json(cell_dir / "cell.json")
        stages = record.get("stages") or {}
        for e in record.get("evaluations") or []:
            try:
                sources = {s: cell_dir / rel for s, rel in e["reports"].items()}
                setting, seed, model = dict(e["setting"]), e["seed"], e["model"]
            except (KeyError, TypeError, AttributeError) as err:
                raise ValueError(f"{cell_dir / 'cell.json'}: an evaluation lacks {err}") from None
            fits = ["sft"] + (["ppo"] if model == "ppo" else [])
            complete = all((stages.get(f) or {}).get("status", {}).get("completed", True) for f in fits)
            out.append(Evaluation(cell_dir, model, setting, seed, {s: _read_json(p) for s, p in sources.items()}, sources,
                                  complete, borrowed_from=record.get("borrowed_from")))
    return out


def _key(setting: dict[str, Any]) -> tuple:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in setting.items()))


def _baseline(setting: dict[str, Any], flags: Iterable[str] = METHOD_FLAGS) -> dict[str, Any]:
    """The setting with ``flags`` (the method flags the grid varies) off; a flag the grid holds fixed stays."""
    return {**setting, **{f: False for f in flags if f in setting}}


def setting_label(setting: dict[str, Any], varying: Iterable[str] = ()) -> str:
    """``Standard SFT``, ``+MAE``, ``+MAE +PKT +IRM``...; other parameters that vary in the grid go first
    (``error_rate=0.35: +MAE``)."""
    flags = [name for flag, name in zip(METHOD_FLAGS, ("+MAE", "+PKT", "+IRM"), strict=True) if setting.get(flag)]
    method = " ".join(flags) or "Standard SFT"
    others = [f"{k}={setting[k]}" for k in sorted(varying) if k not in METHOD_FLAGS and k in setting]
    return f"{', '.join(others)}: {method}" if others else method


def _sortable(v: Any) -> tuple:
    """Numbers by value (0.17 < 0.35, 2 < 10), then anything else by its JSON text."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0.0, json.dumps(v, sort_keys=True))


def _order(setting: dict[str, Any]) -> tuple:
    flags = tuple(int(bool(setting.get(f))) for f in METHOD_FLAGS)
    others = tuple(_sortable(v) for k, v in sorted(setting.items()) if k not in METHOD_FLAGS)
    return others, _ORDER.index(flags)


def summarize(evaluations: Sequence[Evaluation], n_boot: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """One row per setting, in table order: ``label``, ``setting``, ``seeds``, ``n_pairs`` (seeds shared
    with the baseline), ``incomplete`` (runs cut short), ``n_cases`` per set, and per metric ``m_mean``,
    ``m_std`` (NaN with one seed), ``m_diff``, ``m_lo``, ``m_hi`` (interval over seeds and cases),
    ``m_case_lo``, ``m_case_hi`` (over cases only); the last five are NaN for the baseline itself or
    without a shared seed."""
    groups: dict[tuple, dict[Any, Evaluation]] = {}
    for e in evaluations:
        runs = groups.setdefault(_key(e.setting), {})
        if e.seed in runs:
            raise ValueError(f"setting {e.setting} seed {e.seed} evaluated twice: {runs[e.seed].cell} and {e.cell}")
        runs[e.seed] = e
    keys = {k for e in evaluations for k in e.setting}
    varying = {k for k in keys if len({json.dumps(e.setting.get(k)) for e in evaluations}) > 1}
    compared = [f for f in METHOD_FLAGS if f in varying]
    rows = []
    for key in sorted(groups, key=lambda k: _order(dict(next(iter(groups[k].values())).setting))):
        runs = groups[key]
        setting = next(iter(runs.values())).setting
        baseline = _baseline(setting, compared)
        base_runs = groups.get(_key(baseline), {})
        pairs = sorted(set(runs) & set(base_runs), key=_sortable) if _key(baseline) != key else []
        row: dict[str, Any] = {"label": setting_label(setting, varying), "setting": setting, "seeds": sorted(runs, key=_sortable),
                               "n_pairs": len(pairs), "incomplete": sum(not e.complete for e in runs.values()),
                               "baseline": setting_label({f: baseline.get(f) for f in METHOD_FLAGS})}
        for test_set in ("synthetic_single", "synthetic_multi"):
            sizes = {len(e.reports[test_set].get("cases") or []) for e in runs.values() if test_set in e.reports}
            row[f"n_{test_set}"] = sizes.pop() if len(sizes) == 1 else None
        row["runs"] = {s: {"cell": runs[s].cell, "model": runs[s].model, "borrowed_from": runs[s].borrowed_from}
                       for s in row["seeds"]}
        for m in METRICS:
            for s in row["seeds"]:
                o = runs[s].metric(m)
                row["runs"][s][m] = math.nan if o is None else rate(o.num, o.den)
            values = [v for v in (row["runs"][s][m] for s in row["seeds"]) if not math.isnan(v)]
            row[f"{m}_mean"] = float(np.mean(values)) if values else math.nan
            row[f"{m}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
            x = [runs[s].metric(m) for s in pairs]
            b = [base_runs[s].metric(m) for s in pairs]
            if pairs and all(o is not None for o in x + b):
                row[f"{m}_diff"], row[f"{m}_lo"], row[f"{m}_hi"] = paired_difference(x, b, n_boot=n_boot, seed=seed)
                _, row[f"{m}_case_lo"], row[f"{m}_case_hi"] = paired_difference(x, b, n_boot=n_boot, seed=seed,
                                                                                resample_seeds=False)
            else:
                row[f"{m}_diff"] = row[f"{m}_lo"] = row[f"{m}_hi"] = row[f"{m}_case_lo"] = row[f"{m}_case_hi"] = math.nan
        rows.append(row)
    return rows


def _fmt(v: float, signed: bool = False) -> str:
    return "–" if v is None or math.isnan(v) else (f"{v:+.2f}" if signed else f"{v:.2f}")


def _sizes(rows: list[dict[str, Any]]) -> str:
    sizes = [f"{n} {what}" for key, what in (("n_synthetic_single", "single-turn cases"), ("n_synthetic_multi", "multi-turn tasks"))
             if len(ns := {r.get(key) for r in rows}) == 1 and (n := ns.pop())]
    return f" Test set: {', '.join(sizes)}." if sizes else ""


_HEADLINE = [m for m in METRICS if not m.startswith("irm_")]
_OUTCOMES = [m for m in METRICS if m.startswith("irm_")]


def _seeds(seeds: Sequence[Any]) -> str:
    return " ".join(map(str, seeds))


def _markdown(rows: list[dict[str, Any]], n_boot: int, seed: int) -> str:
    def present(names: list[str]) -> list[str]:
        return [m for m in names if any(not math.isnan(r[f"{m}_mean"]) for r in rows)]

    def table(names: list[str], cell: str, which: list[dict[str, Any]], count: str) -> list[str]:
        head = [f"| setting | {count} | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        return head + [f"| {r['label']} | {_seeds(r['seeds']) if count == 'seeds' else r['n_pairs']} | "
                       + " | ".join(cell.format(**{k: _fmt(r[f"{m}_{k}"], k not in ('mean', 'std')) for k in
                                                     ('mean', 'std', 'diff', 'lo', 'hi', 'case_lo', 'case_hi')})
                                    for m in names) + " |" for r in which]

    headline, outcomes = present(_HEADLINE), present(_OUTCOMES)
    paired = [r for r in rows if r["n_pairs"]]
    bases = {r["baseline"] for r in paired}
    base = bases.pop() if len(bases) == 1 else "its baseline"  # Standard SFT, or +MAE where the grid keeps MAE on
    lines = ["# Ablation results", "",
             "Mean ± sample standard deviation over the seeds named. TS/PI/CF: % of `synthetic_single` cases; DE/CE: % of "
             "`synthetic_multi` calls; VA, success: % of `synthetic_multi` tasks." + _sizes(rows), "",
             *table(headline, "{mean} ± {std}", rows, "seeds")]
    if paired:
        lines += ["", f"## Paired difference from {base}: interval over seeds and test cases", "",
                  f"Setting minus {base} (same other settings), averaged over seeds matched by seed number. 95% "
                  f"two-level percentile bootstrap ({n_boot} resamples, seed {seed}): each resample draws the seed pairs "
                  "with replacement and the test cases with replacement (one case resample shared by the drawn pairs), "
                  "so the interval includes seed-to-seed variance.", "",
                  *table(headline, "{diff} [{lo}, {hi}]", paired, "pairs")]
    if outcomes:
        lines += ["", "## IRM outcome of each single-turn case", "",
                  "% of `synthetic_single` cases per outcome group of the IRM reward table (invalid: unparseable or an "
                  "unknown tool; param_hallucination: any hallucinated argument name; redundancy_missing: an extra or a "
                  "missing argument, no hallucination), mean ± standard deviation over seeds.", "",
                  *table(outcomes, "{mean} ± {std}", rows, "seeds")]
        if paired:
            lines += ["", f"Paired difference from {base}, interval over seeds and cases as above:", "",
                      *table(outcomes, "{diff} [{lo}, {hi}]", paired, "pairs")]
    if paired:
        lines += ["", "## Per-case paired difference (test-set noise only)", "",
                  "The same differences with a 95% bootstrap interval over the test cases alone, the seeds held fixed. "
                  "It leaves out seed-to-seed variance and is narrower; it is shown for comparison, not for claims.", "",
                  *table(headline, "{diff} [{case_lo}, {case_hi}]", paired, "pairs")]
    borrowed = [f"{r['label']} seed {sd} from `{run['borrowed_from']}`" for r in rows for sd, run in r["runs"].items()
                if run.get("borrowed_from")]
    if borrowed:
        lines += ["", "Runs reused from another grid (their `cell.json` names the cell, `borrowed_from`): "
                  + "; ".join(borrowed) + "."]
    incomplete = [f"{r['label']} ({r['incomplete']})" for r in rows if r["incomplete"]]
    if incomplete:
        lines += ["", f"Runs stopped before their planned length (e.g. by max_time): {', '.join(incomplete)}."]
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else round(v, 4)
    return v


def write_results(cells: Iterable[str | Path], out_dir: str | Path, n_boot: int = 2000, seed: int = 0) -> tuple[Path, Path]:
    """Write ``results.md``, ``results.csv`` and ``runs.csv`` for the given cells (folders or ``cell.json`` files)
    into ``out_dir``; returns the paths of the first two.

    ``results.csv`` has one row per setting: ``label``, the setting's parameters, ``seeds`` (space-separated),
    ``n_seeds``, ``n_pairs``, ``incomplete``, ``n_synthetic_single``, ``n_synthetic_multi`` and, per metric m,
    ``m_mean``, ``m_std``, ``m_diff``, ``m_lo``, ``m_hi`` (interval over seeds and cases), ``m_case_lo``,
    ``m_case_hi`` (over cases only); empty = none. ``runs.csv`` has one row per (setting, seed): ``label``, the
    parameters, ``seed``, ``model`` (``sft``/``ppo``), ``cell`` (its folder, relative to ``out_dir`` when inside it)
    and every metric."""
    evaluations = load_evaluations(cells)
    if not evaluations:
        raise ValueError("no evaluations in the given cells (cell.json 'evaluations' empty)")
    rows = summarize(evaluations, n_boot=n_boot, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path = out / "results.md", out / "results.csv"
    md.write_text(_markdown(rows, n_boot, seed), encoding="utf-8")
    params = sorted({k for r in rows for k in r["setting"]}, key=lambda k: (k not in METHOD_FLAGS, k))
    stats = ("mean", "std", "diff", "lo", "hi", "case_lo", "case_hi")
    fields = ["label", *params, "seeds", "n_seeds", "n_pairs", "incomplete", "n_synthetic_single", "n_synthetic_multi",
              *[f"{m}_{s}" for m in METRICS for s in stats]]
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for r in rows:
            flat = {**r, **r["setting"], "seeds": _seeds(r["seeds"]), "n_seeds": len(r["seeds"])}
            writer.writerow({k: _cell(v) for k, v in flat.items() if k in fields})
    with open(out / "runs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["label", *params, "seed", "model", "cell", *METRICS])
        writer.writeheader()
        for r in rows:
            for s, run in r["runs"].items():
                cell = Path(run["cell"])
                where = cell.resolve().relative_to(out.resolve()) if cell.resolve().is_relative_to(out.resolve()) else cell
                writer.writerow({"label": r["label"], **r["setting"], "seed": s, "model": run["model"], "cell": where.as_posix(),
                                 **{m: _cell(run[m]) for m in METRICS}})
    return md, csv_path
