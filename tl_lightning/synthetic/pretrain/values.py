"""Fresh random argument values, and how a user's sentence mentions them.

Every value is drawn anew per document (invented names, numbers of 1-7 digits, dates over a century,
ids), so the corpus teaches copying from the query and from tool outputs rather than recalling a pool.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from tl_lightning.synthetic.pretrain.words import ENUMS, SYLLABLES, TEXT_WORDS

__all__ = ["fresh_value", "mention_value", "value_kinds"]

_EPOCH = dt.date(1950, 1, 1)
_DAYS = (dt.date(2049, 12, 31) - _EPOCH).days


def _name_part(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _person(rng: random.Random) -> str:
    return f"{_name_part(rng)} {_name_part(rng)}"


def _digits(rng: random.Random, lo: int, hi: int) -> int:
    """An integer with between ``lo`` and ``hi`` digits, each length equally likely."""
    n = rng.randint(lo, hi)
    return rng.randint(10 ** (n - 1) if n > 1 else 0, 10**n - 1)


def _words(rng: random.Random, lo: int, hi: int) -> list[str]:
    return [rng.choice(TEXT_WORDS) for _ in range(rng.randint(lo, hi))]


def fresh_value(kind: str, rng: random.Random, prefix: str = "ID") -> Any:
    """A new value of ``kind`` (see :func:`value_kinds`); ``prefix`` starts ``id`` values (``INV-4821``)."""
    if kind.startswith("enum:"):
        return rng.choice(ENUMS[kind[5:]])
    if kind == "id":
        if rng.random() < 0.7:
            return f"{prefix}-{_digits(rng, 2, 6)}"
        return "".join(rng.choice("abcdefghjkmnpqrstuvwxyz0123456789") for _ in range(rng.randint(5, 8)))
    if kind == "person":
        return _person(rng)
    if kind == "place":
        return f"{rng.choice(('Port', 'Lake', 'Mount', 'New', 'Upper', 'Old'))} {_name_part(rng)}" if rng.random() < 0.4 else _name_part(rng)
    if kind == "email":
        return f"{_name_part(rng).lower()}.{_name_part(rng).lower()}@{_name_part(rng).lower()}.{rng.choice(('com', 'org', 'net', 'io'))}"
    if kind == "text":
        return " ".join(_words(rng, 2, 6)).capitalize()
    if kind == "title":
        return " ".join(w.capitalize() for w in _words(rng, 1, 3)) + (f" {_digits(rng, 1, 3)}" if rng.random() < 0.3 else "")
    if kind == "digits":
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 6)))
    if kind == "count":
        return _digits(rng, 1, 3)
    if kind == "number":
        return _digits(rng, 1, 7)
    if kind == "small":
        return rng.randint(1, 9)
    if kind == "year":
        return rng.randint(1950, 2049)
    if kind == "money":
        return round(_digits(rng, 1, 5) + rng.randint(0, 99) / 100, 2)
    if kind == "measure":
        return round(_digits(rng, 1, 4) + rng.randint(0, 9) / 10, 1)
    if kind == "ratio":
        return round(rng.randint(0, 99) / 10, 1)
    if kind == "date":
        return (_EPOCH + dt.timedelta(days=rng.randrange(_DAYS))).isoformat()
    if kind == "tags":
        return list(dict.fromkeys(_words(rng, 1, 4)))
    if kind == "ints":
        return [_digits(rng, 1, 4) for _ in range(rng.randint(1, 4))]
    if kind == "people":
        return [_person(rng) for _ in range(rng.randint(1, 3))]
    raise ValueError(f"unknown value kind {kind!r}; known: {', '.join(value_kinds())}")


def value_kinds() -> tuple[str, ...]:
    """Every kind :func:`fresh_value` draws (enum kinds as ``enum:<key>``)."""
    plain = ("id", "person", "place", "email", "text", "title", "digits", "count", "number", "small", "year",
             "money", "measure", "ratio", "date", "tags", "ints", "people")
    return plain + tuple(f"enum:{k}" for k in ENUMS)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def mention_value(value: Any, kind: str, rng: random.Random) -> str:
    """How a user writes ``value`` in a sentence: the exact characters the call must copy, sometimes quoted."""
    if isinstance(value, list):
        return _join([str(v) for v in value])
    if kind in ("text", "title") and rng.random() < 0.5:
        q = rng.choice("'\"")
        return f"{q}{value}{q}"
    return str(value)
