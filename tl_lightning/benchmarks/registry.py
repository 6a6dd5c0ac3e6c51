"""Load a public tool-use test set (or the quick-start test sets) as evaluation cases.

    from tl_lightning.benchmarks import load_benchmark
    bench = load_benchmark("rotbench", "../shared/benchmarks/rotbench", category="clean")
    print(len(bench.cases), bench.report)

Every reader turns its on-disk format into :class:`~tl_lightning.data.cases.EvalCase` (single-turn:
predict the next step, scored against one or more acceptable gold answers) or
:class:`~tl_lightning.data.cases.MultiTurnTask` (the model calls tools until ``finish``). The
quirks of each set (see ``shared/benchmarks/README.md``) are handled in its reader and recorded in
:class:`BenchmarkSet` (``repaired``, ``unsolvable``, ``notes``) so that reports can list them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_lightning.data.cases import EvalCase, MultiTurnTask
from tl_lightning.data.errors import ReadReport

__all__ = ["BENCHMARKS", "BenchmarkSet", "load_benchmark"]

#: Benchmark names accepted by :func:`load_benchmark` and ``python -m tl_lightning score --benchmark``.
BENCHMARKS = ("rotbench", "toolalpaca", "bfcl", "tooleyes", "synthetic")
# Imported on use: the readers import BenchmarkSet from here.
_READERS = {
    "rotbench": ("rotbench", "read_rotbench"),
    "toolalpaca": ("toolalpaca", "read_toolalpaca"),
    "bfcl": ("bfcl", "read_bfcl"),
    "tooleyes": ("tooleyes", "read_tooleyes"),
    "synthetic": ("synthetic", "read_synthetic_cases"),
}


@dataclass
class BenchmarkSet:
    """The cases of one test set plus what reading it found.

    - ``cases``: ``EvalCase``s (single-turn sets) or ``MultiTurnTask``s (ToolEyes, synthetic multi).
    - ``report``: records read and skipped (lenient mode), with file/record/problem for each skip.
    - ``repaired``: ids of cases whose gold was repaired (with how), e.g. ToolAlpaca's 4 invalid JSON inputs.
    - ``unsolvable``: ids of cases no model can get right (gold tool not among the tools shown).
    - ``notes``: other facts worth printing in a report (e.g. duplicate tool names dropped).
    """

    name: str
    cases: list[EvalCase] | list[MultiTurnTask]
    report: ReadReport
    repaired: dict[str, str] = field(default_factory=dict)
    unsolvable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def multi_turn(self) -> bool:
        return bool(self.cases) and isinstance(self.cases[0], MultiTurnTask)

    def __len__(self) -> int:
        return len(self.cases)

    def summary(self) -> dict[str, Any]:
        """JSON-ready facts about the set for reports."""
        return {
            "name": self.name,
            "path": self.report.path,
            "n_records": self.report.n_records,
            "n_cases": len(self.cases),
            "skipped": self.report.n_skipped,
            "skip_reasons": dict(self.report.reasons),
            "skip_errors": list(self.report.errors),
            "repaired": dict(self.repaired),
            "unsolvable": list(self.unsolvable),
            "notes": list(self.notes),
        }


def load_benchmark(
    name: str,
    path: str | Path,
    strict: bool = True,
    category: str | None = None,
    **options: Any,
) -> BenchmarkSet:
    """Read test set ``name`` from ``path``.

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
    if name not in _READERS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    module, function = _READERS[name]
    reader = getattr(importlib.import_module(f"tl_lightning.benchmarks.{module}"), function)
    return reader(path, strict=strict, category=category, **options)
