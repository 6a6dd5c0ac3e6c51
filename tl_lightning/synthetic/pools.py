"""The slot values that scenarios draw from, and how a split may use them.

Pools are split by position (every fourth value is test-only), so test queries carry slot values never seen in
training. Values stay modest (short numbers): the quick-start models copy digits one token at a time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tl_lightning.tools.toolkits._common import CITIES, TODAY
from tl_lightning.tools.toolkits.finance import SYMBOLS
from tl_lightning.tools.toolkits.messaging import CONTACTS

__all__ = ["POOLS", "split_pool"]


def _dates(start: dt.date, n: int) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(n)]


POOLS: dict[str, list[Any]] = {
    "city": list(CITIES),
    "future_date": _dates(TODAY + dt.timedelta(days=1), 90),
    "past_date": _dates(TODAY - dt.timedelta(days=120), 120),
    "time": [f"{h:02d}:{m:02d}" for h in range(7, 22) for m in (0, 30)],
    "symbol": list(SYMBOLS),
    "currency": ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "INR", "MXN", "SEK", "NOK", "PLN", "SGD", "NZD", "ZAR", "THB"],
    "amount": [20, 25, 30, 40, 45, 50, 60, 75, 80, 90, 100, 120, 150, 180, 200, 250, 300, 350, 400, 450, 500, 600, 750, 800],
    "contact": [c["name"].split()[0] for c in CONTACTS.values()],
    "task": ["buy groceries", "call the dentist", "renew my passport", "pay the rent", "water the plants", "book a haircut",
             "send the invoice", "clean the garage", "return library books", "fix the bike", "prepare the slides",
             "order printer ink", "update my resume", "plan the birthday party", "back up the laptop", "file the taxes"],
    "event": ["Team meeting", "Dentist appointment", "Lunch with Sam", "Yoga class", "Project review", "Piano lesson",
              "Parent-teacher meeting", "Car service", "Book club", "Doctor visit", "Coffee with Lea", "Budget planning"],
    "location": ["Room 4", "Main office", "Cafe Nova", "the gym", "City library", "Online"],
    "file": ["/notes/ideas.txt", "/notes/shopping.txt", "/work/report.txt", "/work/agenda.txt", "/home/todo.txt",
             "/travel/packing.txt", "/home/recipes.txt", "/work/minutes.txt"],
    "text": ["Call Anna back", "Bring the charger", "Milk, eggs and bread", "Draft due on Friday", "Check the oil",
             "Pack sunscreen", "Meeting moved to 3 pm", "Pay the water bill"],
    "unit_pair": [("km", "mi"), ("mi", "km"), ("kg", "lb"), ("lb", "kg"), ("m", "ft"), ("ft", "m"), ("l", "gal"),
                  ("gal", "l"), ("cm", "in"), ("in", "cm"), ("kmh", "mph"), ("mph", "kmh"), ("g", "oz"), ("oz", "g")],
    "unit_value": [2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 42, 50, 60, 75, 100, 120],
    "scale_pair": [("celsius", "fahrenheit"), ("fahrenheit", "celsius"), ("celsius", "kelvin"), ("kelvin", "celsius"),
                   ("fahrenheit", "kelvin"), ("kelvin", "fahrenheit")],
    "temperature": [-5, 0, 4, 12, 18, 21, 25, 30, 37, 40, 55, 68, 72, 86, 98, 300],
    "zone_pair": [("CET", "JST"), ("EST", "CET"), ("PST", "EST"), ("UTC", "IST"), ("JST", "PST"), ("WET", "AEST"),
                  ("CET", "EST"), ("GST", "UTC"), ("SGT", "CET"), ("EST", "JST"), ("KST", "WET"), ("MST", "EET")],
    "numbers": [[3, 5, 7], [10, 20, 30, 40], [2, 4, 9], [12, 15, 18, 21], [1.5, 2.5, 4], [6, 8], [100, 150, 80],
                [7, 7, 8, 9], [45, 55, 65], [0.5, 1.5], [11, 13, 17, 19], [60, 75, 90]],
    "percent": [5, 10, 12, 15, 18, 20, 25],
    "small": [2, 3, 4, 5, 6],
    "years": [1, 2, 3, 5, 10, 15, 20],
    "rate": [1.5, 2, 2.5, 3, 3.5, 4, 5, 6],
}
# Scenarios find a contact by the first name they asked about.
assert len(set(POOLS["contact"])) == len(CONTACTS), "contact first names must be unique"


def split_pool(values: list[Any], split: str) -> list[Any]:
    """The part of a pool a split may use: every fourth value (index 3, 7, ...) is test-only."""
    if split == "test":
        return [v for i, v in enumerate(values) if i % 4 == 3]
    return [v for i, v in enumerate(values) if i % 4 != 3]
