"""Raw JSON record files, record by record: what the training readers and the benchmark readers share.

    from tl_lightning.data.records import convert_records
    items, report = convert_records("cases.json", lambda value, rec: make_case(value, rec.ordinal), strict=False)

- :func:`read_text` decodes a file as UTF-8, or as what its byte-order mark (or the NUL pattern of
  its first characters) says: UTF-8 with BOM, UTF-16, UTF-32. Anything else that does not decode is
  refused with one line naming the file and the byte offset.
- :func:`iter_records` yields the records of a JSON array (0-based ``index``) or a JSON Lines file
  (1-based ``line``). An array is decoded one element at a time, so an element that is valid JSON but
  cannot be decoded (nested too deeply for the recursive decoder, an integer over Python's
  4,300-digit limit) becomes one bad record instead of failing the whole file.
- :func:`convert_records` is the one record loop: every failure inside a record becomes a
  :class:`TrajectoryFormatError` naming file, record and problem; strict mode raises it, lenient
  mode skips the record and counts it in the :class:`ReadReport`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from tl_lightning.data.errors import ReadReport, TrajectoryFormatError

__all__ = [
    "BAD_ARGUMENTS",
    "BAD_JSON",
    "BAD_RECORD",
    "BAD_TOOLS",
    "EMPTY",
    "MISSING_FEEDBACK",
    "ORPHAN_FEEDBACK",
    "UNKNOWN_ROLE",
    "UNSUPPORTED",
    "RawRecord",
    "RecordError",
    "convert_records",
    "describe_exception",
    "iter_records",
    "read_text",
]

T = TypeVar("T")
Layout = Literal["auto", "array", "lines"]

# Problem kinds: the first word(s) of every TrajectoryFormatError message, and the keys of
# ReadReport.reasons (so a lenient read says how many records were skipped for each).
BAD_JSON = "invalid JSON"
UNKNOWN_ROLE = "unknown role"
BAD_ARGUMENTS = "malformed JSON arguments"
ORPHAN_FEEDBACK = "feedback with no preceding call"
MISSING_FEEDBACK = "call with no feedback"
EMPTY = "empty trajectory"
BAD_TOOLS = "tools not parseable"
BAD_RECORD = "malformed record"
UNSUPPORTED = "unsupported conversation"
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)


class RecordError(Exception):
    """A problem with one record, of a named ``kind`` (the key lenient reports count by).

    The record loop adds the file and the record number (-> :class:`TrajectoryFormatError`).
    """

    def __init__(self, kind: str, detail: str = ""):
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


@dataclass
class RawRecord:
    """One decoded record and where it came from.

    ``number`` is a 1-based line or a 0-based index (``kind`` says which); ``ordinal`` counts
    records from 0 (the index in an array; in JSON Lines, the non-blank lines before this one).
    """

    number: int
    kind: Literal["line", "index"]
    value: Any = None
    error: str | None = None  # why the record's JSON did not decode
    ordinal: int = 0


def describe_exception(e: BaseException) -> str:
    """A one-line problem text for an exception raised while decoding or converting one record."""
    if isinstance(e, RecursionError):
        return "nested too deeply to decode (RecursionError)"
    if isinstance(e, KeyError):
        return f"missing key {e}"
    if isinstance(e, (ValueError, TypeError)):
        return str(e)
    return f"{type(e).__name__}: {e}"


def read_text(path: str | os.PathLike) -> str:
    """The file's text: UTF-8, or the encoding its BOM (or NUL pattern) names.

    Raises :class:`TrajectoryFormatError` naming the file and the first undecodable byte's offset.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise TrajectoryFormatError(path, None, f"cannot read the file: {e}") from None
    # The JSON standard's own detection (RFC 4627 §3): BOMs first, then the NUL pattern of "[" or "{".
    encoding = json.detect_encoding(raw)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise TrajectoryFormatError(
            path,
            None,
            f"not {encoding} text: byte 0x{raw[e.start]:02x} at byte offset {e.start} does not decode "
            "(save the file as UTF-8, or UTF-16 with a byte-order mark)",
        ) from None


def _value_end(text: str, pos: int) -> int:
    """Where the JSON value starting at ``pos`` ends, by bracket counting (strings skipped).

    Only used to step over an element the decoder refused although it is well-formed.
    """
    depth, n = 0, len(text)
    while pos < n:
        c = text[pos]
        if c == '"':
            pos = _STRING.match(text, pos).end()
            if depth == 0:
                return pos
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            if depth == 0:
                return pos
            depth -= 1
            if depth == 0:
                return pos + 1
        elif c == "," and depth == 0:
            return pos
        pos += 1
    return n


def _array_records(path: str | os.PathLike, text: str, start: int) -> Iterator[RawRecord]:
    decoder = json.JSONDecoder()
    pos = _WHITESPACE.match(text, start + 1).end()
    if text.startswith("]", pos):
        end = pos + 1
    else:
        index = 0
        while True:
            error = None
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise TrajectoryFormatError(
                    path, None, f"{BAD_JSON}: the file is not a valid JSON array ({e})"
                ) from None
            except (RecursionError, ValueError) as e:  # well-formed but refused: too deep, too many digits
                value, end, error = None, _value_end(text, pos), describe_exception(e)
            yield RawRecord(index, "index", value, error, index)
            pos = _WHITESPACE.match(text, end).end()
            if text.startswith(",", pos):
                pos = _WHITESPACE.match(text, pos + 1).end()
                index += 1
                continue
            if text.startswith("]", pos):
                end = pos + 1
                break
            raise TrajectoryFormatError(
                path,
                None,
                f"{BAD_JSON}: the file is not a valid JSON array (expected ',' or ']' after index {index}, char {pos})",
            )
    if text[end:].strip():
        raise TrajectoryFormatError(path, None, f"{BAD_JSON}: extra data after the JSON array (char {end})")


def iter_records(path: str | os.PathLike, layout: Layout = "auto") -> Iterator[RawRecord]:
    """Records of a JSON array file (0-based ``index``) or a JSON Lines file (1-based ``line``).

    With ``layout="auto"`` a file whose first non-blank character is ``[`` is a JSON array and
    anything else JSON Lines; ``"array"`` refuses a file that is not an array. A record that does not
    decode comes back with ``error`` set (blank lines are skipped). Raises
    :class:`TrajectoryFormatError` for file-level problems (unreadable, undecodable, broken array).
    """
    text = read_text(path)
    start = len(text) - len(text.lstrip())
    if text.startswith("[", start) and layout != "lines":
        yield from _array_records(path, text, start)
        return
    if layout == "array":
        raise TrajectoryFormatError(path, None, "expected a JSON list of records")
    # JSON Lines are separated by "\n" only: str.splitlines would also split inside strings at
    # U+0085/U+2028, which json.dumps(ensure_ascii=False) writes raw.
    ordinal = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value, error = json.loads(line), None
        except json.JSONDecodeError as e:
            value, error = None, str(e)
        except (RecursionError, ValueError) as e:
            value, error = None, describe_exception(e)
        yield RawRecord(lineno, "line", value, error, ordinal)
        ordinal += 1


def convert_records(
    path: str | os.PathLike,
    convert: Callable[[Any, RawRecord], T],
    strict: bool = True,
    layout: Layout = "auto",
    report: ReadReport | None = None,
    unexpected_kind: str | None = None,
) -> tuple[list[T], ReadReport]:
    """``convert(value, record)`` for every record of ``path``; the items and the read report.

    A :class:`RecordError` or any other exception inside ``convert`` is a bad record: strict mode
    raises a :class:`TrajectoryFormatError` naming ``path``, the record and the problem; lenient mode
    skips and counts it (by ``RecordError.kind``; otherwise by ``unexpected_kind`` when given, else by
    the problem's first words). A :class:`TrajectoryFormatError` from ``convert`` is a file-level
    problem and propagates in both modes. ``report`` accumulates over several files when given.
    """
    report = report if report is not None else ReadReport(path=str(path))
    items: list[T] = []
    for rec in iter_records(path, layout):
        report.n_records += 1
        try:
            if rec.error is not None:
                raise RecordError(BAD_JSON, rec.error)
            items.append(convert(rec.value, rec))
        except TrajectoryFormatError:
            raise
        except Exception as e:  # any failure inside one record is that record's problem
            if isinstance(e, RecordError):
                kind, problem = e.kind, str(e)
            elif unexpected_kind is not None:
                kind, problem = unexpected_kind, f"{unexpected_kind}: {describe_exception(e)}"
            else:
                kind, problem = None, describe_exception(e)
            err = TrajectoryFormatError(path, rec.number, problem, rec.kind)
            if strict:
                raise err from e
            report.skip(err, kind)
    report.n_read += len(items)
    return items, report
