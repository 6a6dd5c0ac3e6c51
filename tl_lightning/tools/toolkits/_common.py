"""Fixed reference data shared by the toolkits: the sandbox's clock, cities and deterministic tables.

Everything is a pure function of its inputs (a stable hash, never Python's salted ``hash``), so a
tool gives the same answer in every process and every run.
"""

from __future__ import annotations

import datetime as dt

from tl_lightning.tools.toolkit import ToolError, stable_hash

#: The sandbox's "today": forecasts start the day after, history ends the day before.
TODAY = dt.date(2025, 6, 1)

#: city -> (country, currency, timezone). The data generator splits these between train and test.
CITIES: dict[str, tuple[str, str, str]] = {
    "Paris": ("France", "EUR", "CET"),
    "Rome": ("Italy", "EUR", "CET"),
    "Berlin": ("Germany", "EUR", "CET"),
    "Madrid": ("Spain", "EUR", "CET"),
    "Lisbon": ("Portugal", "EUR", "WET"),
    "Vienna": ("Austria", "EUR", "CET"),
    "Dublin": ("Ireland", "EUR", "WET"),
    "Athens": ("Greece", "EUR", "EET"),
    "Prague": ("Czechia", "CZK", "CET"),
    "Warsaw": ("Poland", "PLN", "CET"),
    "Oslo": ("Norway", "NOK", "CET"),
    "Stockholm": ("Sweden", "SEK", "CET"),
    "Zurich": ("Switzerland", "CHF", "CET"),
    "London": ("United Kingdom", "GBP", "WET"),
    "Edinburgh": ("United Kingdom", "GBP", "WET"),
    "New York": ("United States", "USD", "EST"),
    "Chicago": ("United States", "USD", "CST"),
    "Denver": ("United States", "USD", "MST"),
    "Seattle": ("United States", "USD", "PST"),
    "Boston": ("United States", "USD", "EST"),
    "Toronto": ("Canada", "CAD", "EST"),
    "Vancouver": ("Canada", "CAD", "PST"),
    "Mexico City": ("Mexico", "MXN", "CST"),
    "Tokyo": ("Japan", "JPY", "JST"),
    "Osaka": ("Japan", "JPY", "JST"),
    "Seoul": ("South Korea", "KRW", "KST"),
    "Sydney": ("Australia", "AUD", "AEST"),
    "Melbourne": ("Australia", "AUD", "AEST"),
    "Singapore": ("Singapore", "SGD", "SGT"),
    "Mumbai": ("India", "INR", "IST"),
    "Delhi": ("India", "INR", "IST"),
    "Cairo": ("Egypt", "EGP", "EET"),
    "Nairobi": ("Kenya", "KES", "EAT"),
    "Cape Town": ("South Africa", "ZAR", "SAST"),
    "Istanbul": ("Turkey", "TRY", "TRT"),
    "Dubai": ("United Arab Emirates", "AED", "GST"),
    "Bangkok": ("Thailand", "THB", "ICT"),
    "Lima": ("Peru", "PEN", "PET"),
    "Santiago": ("Chile", "CLP", "CLT"),
    "Auckland": ("New Zealand", "NZD", "NZST"),
}


def city_info(city: str) -> tuple[str, str, str]:
    """The table row of ``city`` (case-insensitive), or the tool-reported "not found" error."""
    for name, row in CITIES.items():
        if name.lower() == city.strip().lower():
            return row
    raise ToolError(f"City '{city}' not found")


def canonical_city(city: str) -> str:
    city_info(city)
    return next(n for n in CITIES if n.lower() == city.strip().lower())


def parse_date(value: str) -> dt.date:
    """ISO date parsing with the real ``datetime`` error text on bad input."""
    return dt.date.fromisoformat(value)


def pick(options: list | tuple, *key: object) -> object:
    """A deterministic choice keyed by ``key``."""
    return options[stable_hash(*key) % len(options)]


def number(lo: int, hi: int, *key: object) -> int:
    """A deterministic integer in ``[lo, hi]`` keyed by ``key``."""
    return lo + stable_hash(*key) % (hi - lo + 1)
