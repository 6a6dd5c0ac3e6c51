"""Evaluation: score prediction files (``python -m tl_lightning score``) and the ``test`` stage.

- :mod:`~tl_lightning.evaluation.scoring`: per-case TS/PI/CF verdicts in the ``official`` and
  ``corrected`` modes, and the ``bfcl`` mode over :mod:`~tl_lightning.evaluation.bfcl_checker`
  (BFCL's AST checker, one call against one gold call).
- :mod:`~tl_lightning.evaluation.metrics`: the torchmetrics (TS/PI/CF, DE/CE/VA) the ``test`` stage logs.
- :mod:`~tl_lightning.evaluation.multiturn`: the model -> parse -> execute -> feedback loop and the
  per-call DE/CE rule.
- :mod:`~tl_lightning.evaluation.predictions`: the predictions file format, alignment to cases,
  and gold answers written as predictions.
- :mod:`~tl_lightning.evaluation.report`: ``report.json`` / ``report.md`` for both kinds of sets.
- :mod:`~tl_lightning.evaluation.score`: the ``score`` command.
- :mod:`~tl_lightning.evaluation.datamodule`: ``BenchmarkDataModule`` for the ``test`` stage.
"""
