"""Copy what the committed ablation results need out of the grid folders, and (re)write their tables.

    python results/2026-12-06/ablation/export.py --runs ../grid/runs --out results/2026-12-06/ablation

For each grid folder under ``--runs`` that exists (``ablation``, ``error_rate``, ``pkt_subword``, ``recipe``, and
``again``: main-grid cells rerun for ``check_reproduction.py --rerun``), writes
``<out>/<grid>/``: ``results.md``, ``results.csv`` and ``runs.csv`` (``tl_lightning.experiments.results``, from the
cells' ``report.json`` files, so intervals are computed from per-case outcomes), ``key_nll.csv`` (the key-token and
non-key-token NLL curves of every SFT run, from its ``metrics.csv``) and ``cells/<cell>/``: ``cell.json``, ``timings.json`` and the
``report.json`` of every evaluation (~0.3 MB a cell: the per-case outcomes the intervals resample). A session that
resumes the grid copies ``cells/*`` back into ``runs/<grid>/`` first, so the finished cells are not run again.

The error-rate grid's 0.17 training file is byte-identical to the main grid's, so its 0.17 cells would repeat the
main grid's Standard SFT and +MAE cells number for number (``check_reproduction.py --pairs`` checks the ones that
ran). For every (seed, MAE) of the error-rate grid with no 0.17 cell of its own, the export adds a ``borrowed-<cell>``
folder to ``error_rate/cells/``: a ``cell.json`` holding the main grid cell's SFT evaluation, with ``borrowed_from``
naming it and its report paths pointing into ``../ablation/cells/`` (nothing is copied twice).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from tl_lightning.experiments.results import write_results

GRIDS = ("ablation", "error_rate", "pkt_subword", "recipe", "again")
#: grid -> (the grid it borrows from, the training error rate at which the two grids train on the same file)
BORROW = {"error_rate": ("ablation", 0.17)}


def key_nll_rows(cell: Path) -> list[dict]:
    log = cell / "sft" / "metrics.csv"
    if not log.is_file():
        return []
    rows = []
    with open(log, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for split in ("train", "val"):
                value, other = row.get(f"{split}/key_nll"), row.get(f"{split}/nonkey_nll")
                if value:
                    rows.append({"cell": cell.name, "step": int(row["step"]), "split": split, "key_nll": float(value),
                                 "nonkey_nll": float(other) if other else ""})
    return rows


def borrow(out: Path, source: Path, rate: float) -> list[str]:
    """Add ``out/cells/borrowed-<cell>`` for each SFT evaluation of ``source/cells`` (PKT off, at ``rate``) whose
    (seed, MAE) the grid in ``out`` evaluated at some rate but not at ``rate``. Returns the borrowed cells' names."""
    own = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("cells/*/cell.json"))
           if not p.parent.name.startswith("borrowed-")]
    evaluations = [e for record in own for e in record.get("evaluations") or []]
    seeds = {e["seed"] for e in evaluations}
    ran = {(e["seed"], e["setting"]["use_mae"]) for e in evaluations if e["setting"].get("error_rate") == rate}
    names = []
    for path in sorted(source.glob("cells/*/cell.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        for e in record.get("evaluations") or []:
            s = e["setting"]
            if (e["model"] != "sft" or s.get("use_pkt") or s.get("irm") or s.get("error_rate") != rate
                    or e["seed"] not in seeds or (e["seed"], s["use_mae"]) in ran):
                continue
            name, back = path.parent.name, f"../../../{source.name}/cells/{path.parent.name}"
            dest = out / "cells" / f"borrowed-{name}"
            dest.mkdir(parents=True, exist_ok=True)
            borrowed = {
                "name": dest.name,
                "borrowed_from": back,
                "why": f"error rate {rate}: the same training file, seed and configuration as {source.name}'s cell",
                "params": record.get("params"),
                "stages": {"sft": record["stages"]["sft"]},
                "evaluations": [{**e, "reports": {k: f"{back}/{v}" for k, v in e["reports"].items()}}],
            }
            (dest / "cell.json").write_text(json.dumps(borrowed, indent=1) + "\n", encoding="utf-8")
            names.append(name)
    return names


def export(grid: Path, out: Path, n_boot: int) -> int:
    cells = sorted(p.parent for p in grid.glob("*/cell.json"))
    if not cells:
        return 0
    out.mkdir(parents=True, exist_ok=True)
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
    for stale in out.glob("cells/borrowed-*"):
        shutil.rmtree(stale)
    if grid.name in BORROW:
        source, rate = BORROW[grid.name]
        names = borrow(out, out.parent / source, rate)
        print(f"{grid.name}: borrowed the SFT evaluations at error rate {rate} of {len(names)} {source} cell(s): {', '.join(names)}")
    # The tables come from the copied cells, so that they are exactly what the committed folder can rebuild.
    write_results(sorted(p.parent for p in out.glob("cells/*/cell.json")), out, n_boot=n_boot)
    with open(out / "key_nll.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["cell", "step", "split", "key_nll", "nonkey_nll"])
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
