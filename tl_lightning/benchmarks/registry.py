"""The one registry of test sets: name -> reader, default scoring mode, default output format.

    from tl_lightning.benchmarks import load_benchmark
    bench = load_benchmark("rotbench", "benchmarks:rotbench", category="clean")
    print(len(bench.cases), bench.report)

Every reader turns its on-disk format into :class:`~tl_lightning.data.cases.EvalCase` (single-turn:
predict the next step, scored against one or more acceptable gold answers) or
:class:`~tl_lightning.data.cases.MultiTurnTask` (the model calls tools until ``finish``). The
quirks of each set are handled in its reader and recorded in :class:`BenchmarkSet` (``repaired``,
``unsolvable``, ``notes``) so that reports can list them.

**Where the public sets live.** A data path written ``benchmarks:<path>`` (``benchmarks:rotbench``,
``benchmarks:bfcl_v3_exec``) resolves against the folder named by the environment variable
``TL_LIGHTNING_BENCHMARKS``, or, when it is unset, ``shared/benchmarks`` beside the repository. The
eval configs and the tests use that form, so one setting points all of them at the user's copy; any
other path is used as written (relative to the working directory).

**Adding a benchmark** takes one reader module in this package (``read_<set>(path, strict, category,
**options) -> BenchmarkSet``, built on :func:`~tl_lightning.benchmarks.base.read_cases`), one line in
:data:`REGISTRY` and one ``configs/eval/<set>.yaml``; the tests check that each entry has a scoring
mode, an output format and a config.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tl_lightning.benchmarks.base import BenchmarkSet, resolve_benchmark_path
from tl_lightning.benchmarks.bfcl import read_bfcl
from tl_lightning.benchmarks.rotbench import read_rotbench
from tl_lightning.benchmarks.synthetic import read_synthetic_cases
from tl_lightning.benchmarks.toolalpaca import read_toolalpaca
from tl_lightning.benchmarks.tooleyes import read_tooleyes

__all__ = ["BENCHMARKS", "REGISTRY", "Benchmark", "load_benchmark"]


@dataclass(frozen=True)
class Benchmark:
    """A registered test set.

    - ``reader``: ``reader(path, strict=, category=, **options) -> BenchmarkSet``.
    - ``mode``: the scoring mode ``score`` and the test stage use unless told otherwise
      (``official`` | ``corrected`` | ``bfcl``, see :mod:`tl_lightning.evaluation.scoring`).
    - ``format``: the call format gold answers are written in (``react`` | ``python`` | ``json``).
    """

    reader: Callable[..., BenchmarkSet]
    mode: str
    format: str


REGISTRY: dict[str, Benchmark] = {
    "rotbench": Benchmark(read_rotbench, mode="official", format="react"),
    # Corrected, not official: 17 of ToolAlpaca's 114 gold first steps take no arguments ({}), which
    # the official RoTBench rule fails, capping TS at 85.09; the paper reports 87.72.
    "toolalpaca": Benchmark(read_toolalpaca, mode="corrected", format="react"),
    "bfcl": Benchmark(read_bfcl, mode="bfcl", format="python"),
    "tooleyes": Benchmark(read_tooleyes, mode="corrected", format="react"),
    "synthetic": Benchmark(read_synthetic_cases, mode="corrected", format="python"),
}

#: Benchmark names accepted by :func:`load_benchmark` and ``python -m tl_lightning score --benchmark``.
BENCHMARKS = tuple(REGISTRY)


def load_benchmark(
    name: str,
    path: str | os.PathLike,
    strict: bool = True,
    category: str | None = None,
    **options: Any,
) -> BenchmarkSet:
    """Read test set ``name`` from ``path`` (``benchmarks:<path>`` resolves as the module docstring says).

    - ``rotbench``: a level file (``clean.json``) or the folder holding the five levels; ``category``
      picks the level in a folder (default ``clean``).
    - ``toolalpaca``: ``eval_real.json`` (or its folder); ``repair=True`` repairs the 4 known invalid
      gold inputs instead of raising (strict) or skipping (lenient).
    - ``bfcl``: a BFCL folder, either the v3 exec layout (``exec_<cat>.json`` + ``exec_<cat>_answer.json``)
      or the AST layout (``BFCL_v3_<cat>.json`` + ``possible_answer/BFCL_v3_<cat>.json``), or one
      question file; ``category`` picks one category (default: all found).
    - ``tooleyes``: ``tooleyes_zero_shot.json`` (or its folder).
    - ``synthetic``: a quick-start ``test_single.jsonl`` / ``test_multi.jsonl`` (or ``"quickstart"``,
      ``"quickstart:test_multi"``); ``category`` ``single``/``multi`` picks the file in a folder.

    ``strict=True`` raises :class:`~tl_lightning.data.errors.TrajectoryFormatError` on the first bad
    record; ``strict=False`` skips bad records and counts them in ``.report``.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    return REGISTRY[name].reader(resolve_benchmark_path(path), strict=strict, category=category, **options)
