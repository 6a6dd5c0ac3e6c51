"""Unit, temperature and time-zone conversion with fixed factors."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from tl_lightning.tools.toolkit import ToolError, Toolkit, tool

#: unit -> (dimension, factor to the dimension's base unit).
UNITS = {
    "m": ("length", 1.0), "km": ("length", 1000.0), "cm": ("length", 0.01), "mi": ("length", 1609.344),
    "ft": ("length", 0.3048), "in": ("length", 0.0254),
    "kg": ("mass", 1.0), "g": ("mass", 0.001), "lb": ("mass", 0.45359237), "oz": ("mass", 0.028349523),
    "l": ("volume", 1.0), "ml": ("volume", 0.001), "gal": ("volume", 3.785411784),
    "kmh": ("speed", 1.0), "mph": ("speed", 1.609344), "ms": ("speed", 3.6),
}
#: zone -> UTC offset in hours.
ZONES = {"UTC": 0, "WET": 0, "CET": 1, "EET": 2, "EAT": 3, "GST": 4, "IST": 5.5, "ICT": 7, "SGT": 8, "JST": 9, "KST": 9,
         "AEST": 10, "NZST": 12, "EST": -5, "CST": -6, "MST": -7, "PST": -8, "PET": -5, "CLT": -4, "SAST": 2, "TRT": 3}


class UnitsToolkit(Toolkit):
    name = "units"
    host = "api.convert.example"

    @tool
    def convert_units(self, value: float, from_unit: str, to_unit: str) -> dict:
        """Convert a length, mass, volume or speed between units.

        Args:
            value: The value to convert.
            from_unit: Source unit: m, km, cm, mi, ft, in, kg, g, lb, oz, l, ml, gal, kmh, mph or ms.
            to_unit: Target unit, of the same dimension.
        """
        if from_unit not in UNITS or to_unit not in UNITS:
            bad = from_unit if from_unit not in UNITS else to_unit
            raise ToolError(f"Unknown unit '{bad}'")
        (dim_a, fa), (dim_b, fb) = UNITS[from_unit], UNITS[to_unit]
        if dim_a != dim_b:
            raise ValueError(f"cannot convert {dim_a} ({from_unit}) to {dim_b} ({to_unit})")
        return {"value": value, "from": from_unit, "to": to_unit, "result": round(value * fa / fb, 2)}

    @tool
    def convert_temperature(self, value: float, from_scale: Literal["celsius", "fahrenheit", "kelvin"],
                            to_scale: Literal["celsius", "fahrenheit", "kelvin"]) -> dict:
        """Convert a temperature between scales.

        Args:
            value: The temperature.
            from_scale: Source scale.
            to_scale: Target scale.
        """
        c = {"celsius": value, "fahrenheit": (value - 32) * 5 / 9, "kelvin": value - 273.15}[from_scale]
        out = {"celsius": c, "fahrenheit": c * 9 / 5 + 32, "kelvin": c + 273.15}[to_scale]
        return {"value": value, "from": from_scale, "to": to_scale, "result": round(out, 1)}

    @tool
    def convert_timezone(self, time: str, from_zone: str, to_zone: str) -> dict:
        """Convert a clock time between time zones.

        Args:
            time: Time in HH:MM format.
            from_zone: Source time zone abbreviation, e.g. "CET".
            to_zone: Target time zone abbreviation, e.g. "JST".
        """
        t = dt.time.fromisoformat(time)
        for z in (from_zone, to_zone):
            if z not in ZONES:
                raise ToolError(f"Unknown time zone '{z}'")
        minutes = t.hour * 60 + t.minute + round((ZONES[to_zone] - ZONES[from_zone]) * 60)
        day_shift = minutes // (24 * 60)
        minutes %= 24 * 60
        return {"time": t.strftime("%H:%M"), "from": from_zone, "to": to_zone,
                "result": f"{minutes // 60:02d}:{minutes % 60:02d}", "day_shift": day_shift}
