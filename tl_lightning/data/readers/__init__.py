"""Trajectory readers: one module per on-disk format, all producing :class:`Trajectory`.

    from tl_lightning.data import read_trajectories
    trajs = read_trajectories("train.jsonl")                  # format detected from the first record
    trajs = read_trajectories("raw.json", format="tl_raw", strict=False)
    print(trajs.report)                                        # what was skipped and why

Files may be JSON arrays (records numbered by 0-based index) or JSON Lines (1-based line numbers),
read record by record by :func:`tl_lightning.data.records.convert_records`. Strict mode raises
:class:`TrajectoryFormatError` at the first bad record; lenient mode skips bad records, counts them
by reason in ``result.report`` and logs a warning summary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tl_lightning.data.errors import TrajectoryFormatError
from tl_lightning.data.feedback import FeedbackClassifier
from tl_lightning.data.readers import openai, sharegpt, tl_raw
from tl_lightning.data.readers._common import ReadResult
from tl_lightning.data.readers.openai import write_openai_jsonl
from tl_lightning.data.records import BAD_RECORD, RawRecord, convert_records
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
        path: a ``.json`` array or ``.jsonl`` file (UTF-8, or UTF-16/32 with a byte-order mark).
        format: ``"auto"`` (from the first decodable record's keys), ``"openai"``, ``"tl_raw"`` or ``"sharegpt"``.
        strict: raise on the first bad record (True) or skip and report bad records (False).
        classifier: the feedback classifier that fills ``Step.category`` (default rules if None).

    Raises:
        TrajectoryFormatError: naming the file, the record and the problem (strict mode, or a
            file-level problem: undecodable text, unreadable JSON array, undetectable format).
    """
    path = Path(path)
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown trajectory format {format!r}; choose 'auto' or one of {sorted(FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file not found: {path}")
    fmt = None if format == "auto" else format

    def convert(value: Any, rec: RawRecord) -> Trajectory:
        nonlocal fmt
        if fmt is None:
            fmt = detect_format(value)
            if fmt is None:  # the file's format, not this record, is in question: raised even when lenient
                keys = sorted(value) if isinstance(value, dict) else type(value).__name__
                raise TrajectoryFormatError(
                    path, rec.number, f"cannot detect the format from this record ({keys}); pass format=", rec.kind
                )
        return FORMATS[fmt](value, f"{path.stem}:{rec.number}", classifier)

    trajectories, report = convert_records(path, convert, strict, unexpected_kind=BAD_RECORD)
    if report.n_skipped:
        shown = "\n  ".join(report.errors[:_MAX_LOGGED_ERRORS])
        more = (
            f"\n  ... and {report.n_skipped - _MAX_LOGGED_ERRORS} more"
            if report.n_skipped > _MAX_LOGGED_ERRORS
            else ""
        )
        logger.warning("%s\n  %s%s", report, shown, more)
    return ReadResult(trajectories, report, fmt or format)
