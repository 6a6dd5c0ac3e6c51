"""Evaluation: score prediction files (``python -m tl_lightning score``) and the ``test`` stage.

- :mod:`~tl_lightning.evaluation.predictions`: the predictions file format, alignment to cases,
  and gold answers written as predictions.
- :mod:`~tl_lightning.evaluation.multiturn`: the model -> parse -> execute -> feedback loop.
- :mod:`~tl_lightning.evaluation.report`: ``report.json`` / ``report.md`` for both kinds of sets.
- :mod:`~tl_lightning.evaluation.score`: the ``score`` command.
- :mod:`~tl_lightning.evaluation.datamodule`: ``BenchmarkDataModule`` for the ``test`` stage.
"""
