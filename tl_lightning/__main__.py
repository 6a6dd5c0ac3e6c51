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

``python -m tl_lightning --help`` answers from :data:`SUBCOMMANDS` without importing Lightning (which takes
most of the ~8 s a LightningCLI command needs before it parses anything); ``<subcommand> --help`` is
LightningCLI's (or the extra command's) own.
"""

from __future__ import annotations

import os
import sys
import textwrap

#: Subcommands that are not LightningCLI's, each mapped to ``module:function(argv) -> exit code``.
EXTRA_COMMANDS = {
    "score": "tl_lightning.evaluation.score:main",
    "sweep": "tl_lightning.experiments.runner:main",
    "cell": "tl_lightning.experiments.cell:main",
}
#: Set to 1 to see the full traceback of an error instead of its one-line message.
TRACEBACK_ENV = "TL_LIGHTNING_TRACEBACK"
#: Every subcommand with one line for the top-level ``--help`` (tests check it against LightningCLI's list).
SUBCOMMANDS = {
    "fit": "train: SFT with MAE + PKT, PPO with the IRM reward, GRPO-family and multi-turn RL (--config configs/quickstart.yaml)",
    "validate": "one validation epoch of a model on a datamodule's validation set",
    "test": "evaluate a model on a test set: TS/PI/CF or DE/CE/VA, predictions and report (--config configs/eval/*.yaml)",
    "predict": "generate outputs for a test set into predictions.jsonl (the `score` input), without scoring",
    "score": "score a predictions file against a test set, with no model",
    "sweep": "run the grid of a W&B sweep file locally, cell by cell, resumably",
    "cell": "one grid cell: SFT, optionally IRM-PPO on it, and the synthetic test sets",
}
DESCRIPTION = (
    "TL-Training on Lightning. Extra subcommands: `score` (score a predictions file), `sweep` (run a W&B grid "
    "sweep locally) and `cell` (one grid cell: SFT, IRM-PPO, tests); see `<subcommand> --help`. "
    f"Errors print one line; {TRACEBACK_ENV}=1 prints the full traceback."
)


def top_level_help() -> str:
    """The top-level ``--help``, built without importing Lightning."""
    width = max(map(len, SUBCOMMANDS))
    intro = ("TL-Training (MAE, PKT, IRM-PPO) for tool-using language models on PyTorch Lightning. Errors print one "
             f"line; {TRACEBACK_ENV}=1 prints the full traceback.")
    lines = [f"usage: python -m tl_lightning {{{','.join(SUBCOMMANDS)}}} ...", "", textwrap.fill(intro, 100), "", "subcommands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in SUBCOMMANDS.items()]
    lines += ["", "`python -m tl_lightning <subcommand> --help` lists a subcommand's options (the LightningCLI ones take",
              "-c/--config and --print_config after the subcommand: `fit --config configs/quickstart.yaml --print_config`)."]
    return "\n".join(lines)


def _message(exc: BaseException) -> str:
    """The line to print for ``exc``. jsonargparse reports an error raised while it builds a class (a model
    that cannot load) as several lines of Union-subtype text with the error inside: print the error itself."""
    while exc.__cause__ is not None and str(exc).startswith("Does not validate against any of the Union subtypes"):
        exc = exc.__cause__
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int | None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["-h"], ["--help"]):
        print(top_level_help())
        return 0
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
        print(f"error: {_message(exc)}\n(set {TRACEBACK_ENV}=1 for the full traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
