"""What every benchmark reader shares: :class:`BenchmarkSet`, the record loop over a set's file, and
where the public sets live (``$TL_LIGHTNING_BENCHMARKS``).

The readers import this module and the registry imports the readers, so nothing here may import a
reader or the registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_lightning.data.cases import EvalCase, MultiTurnTask
from tl_lightning.data.errors import ReadReport
from tl_lightning.data.records import Layout, RawRecord, convert_records

__all__ = ["BENCHMARKS_ENV", "BenchmarkSet", "benchmarks_root", "read_cases", "resolve_benchmark_path"]

#: The environment variable naming the folder that holds the user's copy of the public sets.
BENCHMARKS_ENV = "TL_LIGHTNING_BENCHMARKS"
#: Data paths written ``benchmarks:<relative path>`` resolve against :func:`benchmarks_root`.
_PREFIX = "benchmarks:"


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


def read_cases(
    file: Path,
    convert: Callable[[Any, RawRecord], Any],
    strict: bool,
    layout: Layout = "array",
    report: ReadReport | None = None,
) -> tuple[list[Any], ReadReport, list[str]]:
    """Convert every record of a benchmark file with ``convert(record, raw)`` (the one record loop).

    Strict mode raises :class:`~tl_lightning.data.errors.TrajectoryFormatError` (file, record,
    problem) at the first bad record; lenient mode skips and counts it in the report. ``notes``
    lists cases whose repeated tool names were de-duplicated (``meta["duplicate_tools"]``).
    """
    items, report = convert_records(file, convert, strict, layout=layout, report=report)
    notes = [
        f"{item.id}: repeated tool name(s) {item.meta['duplicate_tools']}; kept the first of each"
        for item in items
        if "duplicate_tools" in item.meta
    ]
    return items, report, notes


def benchmarks_root() -> Path:
    """``$TL_LIGHTNING_BENCHMARKS``, else ``shared/benchmarks`` beside the repository (may not exist)."""
    env = os.environ.get(BENCHMARKS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"


def resolve_benchmark_path(path: str | os.PathLike) -> Path:
    """``"benchmarks:rotbench"`` -> ``benchmarks_root() / "rotbench"``; any other path unchanged.

    Raises FileNotFoundError, saying how to point at the sets, when a ``benchmarks:`` path is missing.
    """
    text = os.fspath(path)
    if not text.startswith(_PREFIX):
        return Path(path)
    root = benchmarks_root()
    resolved = root / text.removeprefix(_PREFIX)
    if not resolved.exists():
        source = (
            f"${BENCHMARKS_ENV}={os.environ[BENCHMARKS_ENV]}"
            if os.environ.get(BENCHMARKS_ENV)
            else f"the default {root} (${BENCHMARKS_ENV} is not set)"
        )
        raise FileNotFoundError(
            f"{text!r}: {resolved} does not exist; it resolves against {source}. "
            f"Set {BENCHMARKS_ENV} to the folder holding your copy of the public sets (docs/evaluation.md#benchmark-data)."
        )
    return resolved
