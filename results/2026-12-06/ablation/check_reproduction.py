"""Does a rerun reproduce a committed cell exactly? Two checks, both on this machine's CPU.

    # 1. rerun one cell of the main grid from scratch, then compare it with the committed numbers:
    python -m tl_lightning sweep configs/sweeps/tl_ablation.yaml --out /tmp/again --only 'seed_everything_0-use_mae_true-use_pkt_true'
    python results/2026-12-06/ablation/check_reproduction.py --rerun /tmp/again/seed_everything_0-use_mae_true-use_pkt_true
    # 2. the error-rate grid's 0.17 cells train on a file byte-identical to the main grid's training split, with the
    #    same seeds: their Standard SFT and +MAE numbers must equal the main grid's, cell for cell
    python results/2026-12-06/ablation/check_reproduction.py --pairs
    # 3. the recipe comparison's long runs (`cell` with configs/quickstart.yaml and overrides, run_recipe.sh) are the
    #    configuration that became configs/small.yaml: they must equal the main grid's +MAE +PKT SFT, seeds 0 and 1
    python results/2026-12-06/ablation/check_reproduction.py --recipe

Exit status 0 when every compared number is equal (to the 4 decimals of the CSVs), 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def committed(grid: str) -> list[dict[str, str]]:
    with open(HERE / grid / "runs.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def metrics(row: dict[str, str]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in row.items() if v not in ("", None) and _is_metric(k)}


def _is_metric(key: str) -> bool:
    return key in ("TS", "PI", "CF", "DE", "CE", "VA", "success") or key.startswith("irm_")


def compare(name: str, a: dict[str, float], b: dict[str, float]) -> bool:
    diff = {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}
    print(f"{name}: {'identical' if not diff else f'DIFFERENT {diff}'} ({len(a)} numbers)")
    return not diff


def rerun(cell: Path) -> bool:
    from tl_lightning.experiments.results import write_results

    with tempfile.TemporaryDirectory() as out:
        write_results([cell], out, n_boot=10)
        with open(Path(out) / "runs.csv", newline="", encoding="utf-8") as f:
            new = list(csv.DictReader(f))
    ok = True
    old = {(r["label"], r["seed"]): r for r in committed("ablation")}
    for row in new:
        key = (row["label"], row["seed"])
        if key not in old:
            print(f"{key}: not in the committed table")
            ok = False
            continue
        ok &= compare(f"{cell.name} {row['label']} seed {row['seed']}", metrics(old[key]), metrics(row))
    return ok


def pairs() -> bool:
    main = {(r["use_mae"], r["seed"]): r for r in committed("ablation") if r["use_pkt"] == "False" and r["irm"] == "False"}
    # borrowed-* rows are the main grid's own evaluations (export.py): comparing them would compare a run with itself
    rates = [r for r in committed("error_rate")
             if r.get("error_rate") == "0.17" and not Path(r["cell"]).name.startswith("borrowed-")]
    if not rates:
        print("no error_rate 0.17 cells committed yet")
        return False
    ok = True
    for r in rates:
        key = (r["use_mae"], r["seed"])
        if key in main:
            ok &= compare(f"use_mae={key[0]} seed {key[1]}: error_rate grid vs main grid", metrics(main[key]), metrics(r))
    return ok


def recipe() -> bool:
    main = {r["seed"]: r for r in committed("ablation") if r["label"] == "+MAE +PKT"}
    ok = True
    for r in committed("recipe"):
        if Path(r["cell"]).name.startswith("long_s") and r["seed"] in main:
            ok &= compare(f"recipe {Path(r['cell']).name} vs main grid +MAE +PKT seed {r['seed']}", metrics(main[r["seed"]]), metrics(r))
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rerun", type=Path, help="a cell folder rerun with `sweep ... --only`")
    p.add_argument("--pairs", action="store_true", help="compare the error-rate grid's 0.17 cells with the main grid's")
    p.add_argument("--recipe", action="store_true", help="compare the recipe's long runs with the main grid's +MAE +PKT")
    args = p.parse_args()
    ok = True
    if args.rerun:
        ok &= rerun(args.rerun)
    if args.pairs:
        ok &= pairs()
    if args.recipe:
        ok &= recipe()
    if not (args.rerun or args.pairs or args.recipe):
        p.error("give --rerun CELL, --pairs and/or --recipe")
    print(json.dumps({"reproduced": bool(ok)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
