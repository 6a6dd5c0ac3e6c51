"""Experiment grids: W&B sweep files run locally, one cell's pipeline, and the results table.

- :mod:`~tl_lightning.experiments.sweep`: a ``method: grid`` sweep file -> its cells and each cell's command
  (W&B's macros, expanded as the agent expands them).
- :mod:`~tl_lightning.experiments.runner`: ``python -m tl_lightning sweep``: run the cells in order, resumably,
  with a progress display; then the table.
- :mod:`~tl_lightning.experiments.cell`: ``python -m tl_lightning cell``: SFT, optional IRM-PPO, and the
  synthetic test sets, as plain ``fit``/``test`` subprocesses, each skipped or resumed when already run.
- :mod:`~tl_lightning.experiments.results`: ``results.md``/``results.csv`` (Table 5's layout): mean ± std
  over seeds and the paired difference from Standard SFT with a bootstrap interval over test cases.
- :mod:`~tl_lightning.experiments.demo`: a small made-up grid (for the notebook and the docs).

This is the top layer: it may import any part of the package, and nothing in the package imports it
(``scripts/import_graph.py`` checks both); the entry point reaches it by name only.
"""
