"""A small made-up grid in the layout that grid cells write, for the notebook and the docs: no model is trained
and every number is invented (the effects are built in, so the plots have something to show).

    from tl_lightning.experiments.demo import write_demo_grid
    cells = write_demo_grid("/tmp/demo_ablation")                                  # Table 5: 4 x 3 cells, SFT + IRM
    cells = write_demo_grid("/tmp/demo_error_rate", error_rates=(0.0, 0.17, 0.35), pkt=(False,), irm=False, seeds=(0, 1))

Each cell folder holds what :mod:`tl_lightning.experiments.cell` leaves: ``cell.json``, ``sft/metrics.csv``
(``train/loss``, ``train/key_nll``, ``train/nonkey_nll`` every 10 steps; ``val/loss``, ``val/key_nll`` every
100), ``sft/run_status.json`` and ``<model>/eval/<set>/report.json`` with a ``cases`` list like the test stage's.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_demo_grid"]

_STATUS = {"completed": True, "stopped_by": "max_epochs", "global_step": 300, "max_steps": -1, "epochs": 1, "max_epochs": 1}


def _single_report(rng: np.random.Generator, n: int, ts: float, pi: float, cf: float) -> dict[str, Any]:
    # Cumulative levels, as the scorer's: CF implies PI implies TS.
    u = rng.random(n)
    cases = [{"index": i, "id": f"qs-test_single-{i:05d}", "TS": bool(u[i] < ts), "PI": bool(u[i] < pi), "CF": bool(u[i] < cf)}
             for i in range(n)]
    levels = {k: round(100.0 * sum(c[k] for c in cases) / n, 2) for k in ("TS", "PI", "CF")}
    return {"benchmark": "synthetic", "kind": "single_turn", "mode": "corrected", "n": n, **levels, "cases": cases}


def _multi_report(rng: np.random.Generator, n: int, p_de: float, p_ce: float, p_va: float, p_success: float) -> dict[str, Any]:
    cases = []
    for i in range(n):
        calls = int(rng.integers(1, 6))
        de = int(rng.binomial(calls, p_de))
        ce = int(rng.binomial(calls - de, p_ce))
        finished = bool(rng.random() < p_va)
        cases.append({"index": i, "id": f"qs-test_multi-{i:05d}", "VA": finished, "n_calls": calls, "DE_calls": de,
                      "CE_calls": ce, "success": finished and bool(rng.random() < p_success)})
    calls = sum(c["n_calls"] for c in cases)
    return {"benchmark": "synthetic", "kind": "multi_turn", "n": n, "n_calls": calls,
            "DE": round(100.0 * sum(c["DE_calls"] for c in cases) / calls, 2),
            "CE": round(100.0 * sum(c["CE_calls"] for c in cases) / calls, 2),
            "VA": round(100.0 * sum(c["VA"] for c in cases) / n, 2),
            "success": round(100.0 * sum(c["success"] for c in cases) / n, 2), "cases": cases}


def _metrics_csv(path: Path, rng: np.random.Generator, use_mae: bool, use_pkt: bool, error_rate: float, steps: int) -> None:
    # Made-up shapes: PKT pulls the key-token NLL down faster; dirtier data raises the floor unless MAE masks it.
    key_rate = 60.0 if use_pkt else 140.0
    floor = 0.30 + (0.0 if use_mae else 0.4 * error_rate)
    fields = ["epoch", "step", "train/key_nll", "train/loss", "train/nonkey_nll", "val/key_nll", "val/loss"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for step in range(9, steps, 10):
            key = 2.8 * np.exp(-step / key_rate) + 0.05 + rng.normal(0, 0.04)
            nonkey = 3.0 * np.exp(-step / 90.0) + floor + rng.normal(0, 0.05)
            writer.writerow({"epoch": 0, "step": step, "train/key_nll": key, "train/nonkey_nll": nonkey,
                             "train/loss": (12 * nonkey + 2 * key * (9 if use_pkt else 1)) / (12 + 2 * (9 if use_pkt else 1))})
            if (step + 1) % 100 == 0:
                writer.writerow({"epoch": 0, "step": step, "val/key_nll": key + 0.15, "val/loss": nonkey + 0.1})


def write_demo_grid(out: str | Path, seeds: Sequence[int] = (0, 1, 2), error_rates: Sequence[float] = (0.17,),
                    mae: Sequence[bool] = (False, True), pkt: Sequence[bool] = (False, True), irm: bool = True,
                    n_single: int = 80, n_multi: int = 30, steps: int = 300, seed: int = 0) -> list[Path]:
    """Write one made-up cell per (error rate, MAE, PKT, seed) under ``out``; returns the cell folders."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    cells = []
    for rate in error_rates:
        for use_mae in mae:
            for use_pkt in pkt:
                for s in seeds:
                    name = f"error_rate_{rate:.2f}-use_mae_{str(use_mae).lower()}-use_pkt_{str(use_pkt).lower()}-seed_{s}"
                    cell = out / name
                    (cell / "sft").mkdir(parents=True, exist_ok=True)
                    (cell / "sft" / "run_status.json").write_text(json.dumps(_STATUS) + "\n", encoding="utf-8")
                    _metrics_csv(cell / "sft" / "metrics.csv", rng, use_mae, use_pkt, rate, steps)
                    evaluations = []
                    for model in ("sft", "ppo") if irm else ("sft",):
                        boost = 0.08 if model == "ppo" else 0.0
                        dirt = rate / 0.17  # the invented MAE effect grows with the error rate
                        reports = {
                            "synthetic_single": _single_report(rng, n_single, 0.62 + 0.12 * use_pkt + boost,
                                                               0.45 + 0.08 * use_pkt + boost, 0.30 + 0.05 * use_pkt + boost),
                            "synthetic_multi": _multi_report(rng, n_multi, 0.03, max(0.02, 0.08 + 0.03 * dirt * (not use_mae) - boost / 2),
                                                             0.55 + 0.1 * use_mae + boost, 0.6),
                        }
                        paths = {}
                        for test_set, report in reports.items():
                            rel = Path(model) / "eval" / test_set / "report.json"
                            (cell / rel).parent.mkdir(parents=True, exist_ok=True)
                            (cell / rel).write_text(json.dumps(report) + "\n", encoding="utf-8")
                            paths[test_set] = rel.as_posix()
                        metrics = {k: reports[t][k] for t, ks in (("synthetic_single", ("TS", "PI", "CF")),
                                                                   ("synthetic_multi", ("DE", "CE", "VA", "success"))) for k in ks}
                        evaluations.append({"model": model, "setting": {"use_mae": use_mae, "use_pkt": use_pkt, "error_rate": rate,
                                                                        "irm": model == "ppo"},
                                            "seed": s, "reports": paths, "metrics": metrics})
                    record = {"name": name, "params": {"seed_everything": s}, "irm": "both" if irm else "off",
                              "stages": {"sft": {"dir": "sft", "status": _STATUS}}, "evaluations": evaluations,
                              "timings": {"sft": 240.0}, "wall_s": 240.0, "demo": True}
                    (cell / "cell.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
                    cells.append(cell)
    return cells
