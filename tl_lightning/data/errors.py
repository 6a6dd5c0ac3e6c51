"""Errors and reports for reading data: every problem names the file, the record and what is wrong."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrajectoryFormatError", "ReadReport"]


class TrajectoryFormatError(ValueError):
    """A record that cannot be turned into the internal format.

    ``record`` is a 1-based line number for JSON Lines and a 0-based index for JSON arrays
    (``record_kind`` says which), so the message points straight at the bad input.
    """

    def __init__(self, path: str | Path | None, record: int | str | None, problem: str, record_kind: str = "record"):
        self.path = str(path) if path is not None else "<memory>"
        self.record = record
        self.problem = problem
        self.record_kind = record_kind
        where = self.path if record is None else f"{self.path}, {record_kind} {record}"
        super().__init__(f"{where}: {problem}")


@dataclass
class ReadReport:
    """What a lenient read kept and skipped. ``reasons`` counts skipped records by problem kind;
    ``errors`` keeps each full message (file, record, problem)."""

    path: str = ""
    n_records: int = 0
    n_read: int = 0
    reasons: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        return self.n_records - self.n_read

    def skip(self, error: TrajectoryFormatError, kind: str | None = None) -> None:
        self.reasons[kind or error.problem.split(":")[0]] += 1
        self.errors.append(str(error))

    def __str__(self) -> str:
        head = f"{self.path}: read {self.n_read} of {self.n_records} records"
        if not self.n_skipped:
            return head
        why = ", ".join(f"{n} {k}" for k, n in self.reasons.most_common())
        return f"{head}; skipped {self.n_skipped} ({why})"
