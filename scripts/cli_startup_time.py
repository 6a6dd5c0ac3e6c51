"""How long the CLI takes to answer without training: ``--help``, ``fit --help`` and an argument error.

    python scripts/cli_startup_time.py                      # 3 runs per command, plus `import lightning` alone
    python scripts/cli_startup_time.py 5 --other ../main    # side by side with another checkout, runs interleaved

Every LightningCLI command imports Lightning (and with it torch and torchmetrics) to build its parser, so
``import lightning.pytorch.cli`` is printed as the floor; tl_lightning's own share is the difference.
``python -m tl_lightning --help`` answers without Lightning. On a shared, busy machine compare the minimums
(the runs least disturbed) and the CPU seconds (user + system, which other processes disturb far less than the
wall clock), and time two checkouts in one call (``--other``) so both see the same load.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "import lightning.pytorch.cli (floor)": ["-c", "import lightning.pytorch.cli"],
    "--help": ["-m", "tl_lightning", "--help"],
    "fit --help": ["-m", "tl_lightning", "fit", "--help"],
    "score --help": ["-m", "tl_lightning", "score", "--help"],
    "fit, missing train file": ["-m", "tl_lightning", "fit", "--config", "configs/quickstart.yaml",
                                "--data.init_args.train_path=/no/such.jsonl"],
}


def _time(args: list[str], root: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``python *args`` in ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, cwd=root, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("repeats", nargs="?", type=int, default=3)
    p.add_argument("--other", type=Path, default=None, help="another checkout to time side by side (e.g. main)")
    args = p.parse_args(argv)
    roots = {"this": Path(__file__).resolve().parents[1]}
    if args.other is not None:
        roots["other"] = args.other.resolve()
    for name, cmd in COMMANDS.items():
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in roots}
        for _ in range(args.repeats):
            for key, root in roots.items():  # interleaved: both see the same load
                times[key].append(_time(cmd, root))
        cells = [f"{k} {min(w for w, _ in t):6.2f} s (median {statistics.median(w for w, _ in t):.2f}, "
                 f"cpu {min(c for _, c in t):.2f} s)" for k, t in times.items()]
        print(f"{name:38s} " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
