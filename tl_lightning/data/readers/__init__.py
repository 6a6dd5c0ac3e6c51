"""Trajectory readers: one module per on-disk format, all producing :class:`Trajectory`.

    from tl_lightning.data import read_trajectories
    trajs = read_trajectories("train.jsonl")                  # format detected from the first record
    trajs = read_trajectories("raw.json", format="tl_raw", strict=False)
    print(trajs.report)                                        # what was skipped and why

Files may be JSON arrays (records numbered by 0-based index) or JSON Lines (1-based line numbers).
Strict mode raises :class:`TrajectoryFormatError` at the first bad record; lenient mode skips bad
records, counts them by reason in ``result.report`` and logs a warning summary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tl_lightning.data.errors import ReadReport, TrajectoryFormatError
from tl_lightning.data.feedback import FeedbackClassifier
from tl_lightning.data.readers import openai, sharegpt, tl_raw
from tl_lightning.data.readers._common import BAD_JSON, RawRecord, ReadResult, RecordError, iter_records
from tl_lightning.data.readers.openai import write_openai_jsonl
from tl_lightning.data.schema import Trajectory

__all__ = ["FORMATS", "ReadResult", "detect_format", "read_trajectories", "write_openai_jsonl"]

logger = logging.getLogger("tl_lightning.data.readers")

#: format name -> ``record_to_trajectory(record, default_id, classifier) -> Trajectory``.
FORMATS: dict[str, Callable[..., Trajectory]] = {
    "openai": openai.record_to_trajectory,
    "tl_raw": tl_raw.record_to_trajectory,
    "sharegpt": sharegpt.record_to_trajectory,
}

# Detection order matters only for records that fit two shapes; each test looks at distinct keys.
_DETECTORS: dict[str, Callable[[Any], bool]] = {
    "openai": openai.detect,
    "sharegpt": sharegpt.detect,
    "tl_raw": tl_raw.detect,
}

_MAX_LOGGED_ERRORS = 5


def detect_format(record: Any) -> str | None:
    """The format a record looks like, from its keys (None if none fits)."""
    return next((name for name, test in _DETECTORS.items() if test(record)), None)


def read_trajectories(
    path: str | Path,
    format: str = "auto",
    strict: bool = True,
    classifier: FeedbackClassifier | None = None,
) -> ReadResult:
    """Read a trajectory file.

    Args:
        path: a ``.json`` array or ``.jsonl`` file.
        format: ``"auto"`` (from the first decodable record's keys), ``"openai"``, ``"tl_raw"`` or ``"sharegpt"``.
        strict: raise on the first bad record (True) or skip and report bad records (False).
        classifier: the feedback classifier that fills ``Step.category`` (default rules if None).

    Raises:
        TrajectoryFormatError: naming the file, the record and the problem (strict mode, or a
            file-level problem: unreadable JSON array, undetectable format).
    """
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown trajectory format {format!r}; choose 'auto' or one of {sorted(FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file not found: {path}")
    report = ReadReport(path=str(path))
    trajectories: list[Trajectory] = []
    fmt = None if format == "auto" else format
    for rec in iter_records(path):
        report.n_records += 1
        try:
            if rec.error is not None:
                raise RecordError(BAD_JSON, rec.error)
            if fmt is None:
                fmt = detect_format(rec.value)
                if fmt is None:
                    keys = sorted(rec.value) if isinstance(rec.value, dict) else type(rec.value).__name__
                    raise TrajectoryFormatError(
                        path,
                        rec.number,
                        f"cannot detect the format from this record ({keys}); pass format=",
                        rec.kind,
                    )
            trajectories.append(FORMATS[fmt](rec.value, _default_id(path, rec), classifier))
        except RecordError as e:
            err = TrajectoryFormatError(path, rec.number, str(e), rec.kind)
            if strict:
                raise err from e
            report.skip(err, e.kind)
    report.n_read = len(trajectories)
    if report.n_skipped:
        shown = "\n  ".join(report.errors[:_MAX_LOGGED_ERRORS])
        more = (
            f"\n  ... and {report.n_skipped - _MAX_LOGGED_ERRORS} more"
            if report.n_skipped > _MAX_LOGGED_ERRORS
            else ""
        )
        logger.warning("%s\n  %s%s", report, shown, more)
    return ReadResult(trajectories, report, fmt or format)


def _default_id(path: Path, rec: RawRecord) -> str:
    return f"{path.stem}:{rec.number}"
