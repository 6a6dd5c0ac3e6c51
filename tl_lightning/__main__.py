"""Entry point: ``python -m tl_lightning {fit,validate,test,predict,score,sweep,cell} ...`` (console script ``tl-lightning``).

    python -m tl_lightning fit --config configs/quickstart.yaml
    python -m tl_lightning fit --config configs/paper/sft_codellama7b.yaml --config configs/experiments/sft_mae_pkt.yaml \
        --model.init_args.model /path/to/CodeLlama-7b-hf --data.init_args.train_path my_trajectories.jsonl
    python -m tl_lightning score --help

``fit``/``validate``/``test``/``predict`` are LightningCLI subcommands (:class:`tl_lightning.cli.TLCLI`);
``score`` is the offline scorer of :mod:`tl_lightning.evaluation.score`; ``sweep`` and ``cell`` run experiment
grids (:mod:`tl_lightning.experiments.runner`, :mod:`tl_lightning.experiments.cell`); each is imported only when used.
An error prints one line (``error: ...``) and exits 1; ``TL_LIGHTNING_TRACEBACK=1`` re-raises it with
its full traceback.
"""

from __future__ import annotations

import os
import sys

#: Subcommands that are not LightningCLI's, each mapped to ``module:function(argv) -> exit code``.
EXTRA_COMMANDS = {
    "score": "tl_lightning.evaluation.score:main",
    "sweep": "tl_lightning.experiments.runner:main",
    "cell": "tl_lightning.experiments.cell:main",
}
#: Set to 1 to see the full traceback of an error instead of its one-line message.
TRACEBACK_ENV = "TL_LIGHTNING_TRACEBACK"
DESCRIPTION = (
    "TL-Training on Lightning. Extra subcommands: `score` (score a predictions file), `sweep` (run a W&B grid "
    "sweep locally) and `cell` (one grid cell: SFT, IRM-PPO, tests); see `<subcommand> --help`. "
    f"Errors print one line; {TRACEBACK_ENV}=1 prints the full traceback."
)


def main(argv: list[str] | None = None) -> int | None:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in EXTRA_COMMANDS:
            import importlib

            module, func = EXTRA_COMMANDS[args[0]].split(":")
            return getattr(importlib.import_module(module), func)(args[1:])
        from tl_lightning.cli import TLCLI

        TLCLI(
            args=argv,  # None: LightningCLI reads sys.argv itself
            parser_kwargs={"prog": "python -m tl_lightning", "description": DESCRIPTION},
        )
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV, "").lower() in ("1", "true", "yes", "on"):
            raise
        # Bad input gets one line; the traceback of a clear message is noise.
        print(f"error: {exc}\n(set {TRACEBACK_ENV}=1 for the full traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
