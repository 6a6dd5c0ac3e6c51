"""Copy what the committed ablation results need out of the grid folders, and (re)write their tables.

    python results/2026-12-06/ablation/export.py --runs ../grid/runs --out results/2026-12-06/ablation

For each grid folder under ``--runs`` that exists (``ablation``, ``error_rate``, ``pkt_subword``, ``recipe``), writes
``<out>/<grid>/``: ``results.md``, ``results.csv`` and ``runs.csv`` (``tl_lightning.experiments.results``, from the
cells' ``report.json`` files, so intervals are computed from per-case outcomes), ``key_nll.csv`` (the key-token NLL
curve of every SFT run, from its ``metrics.csv``) and ``cells/<cell>/``: ``cell.json``, ``timings.json`` and the
``report.json`` of every evaluation (~0.3 MB a cell: the per-case outcomes the intervals resample). A session that
resumes the grid copies ``cells/*`` back into ``runs/<grid>/`` first, so the finished cells are not run again.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from tl_lightning.experiments.results import write_results

GRIDS = ("ablation", "error_rate", "pkt_subword", "recipe")


def key_nll_rows(cell: Path) -> list[dict]:
    log = cell / "sft" / "metrics.csv"
    if not log.is_file():
        return []
    rows = []
    with open(log, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for split in ("train", "val"):
                value = row.get(f"{split}/key_nll")
                if value:
                    rows.append({"cell": cell.name, "step": int(row["step"]), "split": split, "key_nll": float(value)})
    return rows


def export(grid: Path, out: Path, n_boot: int) -> int:
    cells = sorted(p.parent for p in grid.glob("*/cell.json"))
    if not cells:
        return 0
    out.mkdir(parents=True, exist_ok=True)
    write_results(cells, out, n_boot=n_boot)
    curves = []
    for cell in cells:
        dest = out / "cells" / cell.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("cell.json", "timings.json"):
            if (cell / name).is_file():
                shutil.copyfile(cell / name, dest / name)
        # The reports hold the per-case outcomes that the intervals resample: with them the copied cell is a
        # complete grid cell for the tables (and, copied back into runs/<grid>/, a finished cell for the runner of
        # the recorded commit), so later seeds can be pooled with these.
        record = json.loads((cell / "cell.json").read_text(encoding="utf-8"))
        for evaluation in record.get("evaluations") or []:
            for rel in (evaluation.get("reports") or {}).values():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(cell / rel, dest / rel)
        curves += key_nll_rows(cell)
    with open(out / "key_nll.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["cell", "step", "split", "key_nll"])
        writer.writeheader()
        writer.writerows(curves)
    # runs.csv names each cell by its folder in the grid; point it at the copied cell.json instead.
    runs = list(csv.DictReader(open(out / "runs.csv", newline="", encoding="utf-8")))
    for r in runs:
        r["cell"] = f"cells/{Path(r['cell']).name}"
    with open(out / "runs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(runs[0]))
        writer.writeheader()
        writer.writerows(runs)
    return len(cells)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, required=True, help="the folder holding the grid folders")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    p.add_argument("--n-boot", type=int, default=2000)
    args = p.parse_args()
    summary = {}
    for name in GRIDS:
        if (args.runs / name).is_dir():
            summary[name] = export(args.runs / name, args.out / name, args.n_boot)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
