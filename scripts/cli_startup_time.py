"""How long the CLI takes to answer without training: ``--help``, ``fit --help`` and an argument error.

    python scripts/cli_startup_time.py            # median of 3 runs per command, plus `import lightning` alone

Every LightningCLI command imports Lightning (and with it torch and torchmetrics) to build its parser, so
``import lightning.pytorch.cli`` is printed as the floor; tl_lightning's own share is the difference.
Target: under 3 s for ``fit --help`` and for an argument error on an idle machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

COMMANDS = {
    "import lightning.pytorch.cli (floor)": [sys.executable, "-c", "import lightning.pytorch.cli"],
    "--help": [sys.executable, "-m", "tl_lightning", "--help"],
    "fit --help": [sys.executable, "-m", "tl_lightning", "fit", "--help"],
    "score --help": [sys.executable, "-m", "tl_lightning", "score", "--help"],
    "fit, missing train file": [sys.executable, "-m", "tl_lightning", "fit", "--config", "configs/quickstart.yaml",
                                "--data.init_args.train_path=/no/such.jsonl"],
}


def main(repeats: int = 3) -> None:
    for name, cmd in COMMANDS.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run(cmd, capture_output=True)
            times.append(time.perf_counter() - start)
        print(f"{name:40s} {statistics.median(times):6.2f} s (min {min(times):.2f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
