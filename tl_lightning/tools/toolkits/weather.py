"""Weather from fixed deterministic tables: forecasts, history, alerts and air quality."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from tl_lightning.tools.toolkit import ToolError, Toolkit, tool
from tl_lightning.tools.toolkits._common import TODAY, canonical_city, number, parse_date, pick

CONDITIONS = ("sunny", "cloudy", "rainy", "windy", "foggy", "stormy", "snowy")
ALERTS = ("heat wave", "thunderstorm", "flood", "high wind", "frost")
SEVERITIES = ("minor", "moderate", "severe")


def condition(city: str, day: dt.date) -> str:
    """The day's sky, consistent with its temperature (snow only on cold days)."""
    high = number(5, 34, "high", city, day.isoformat())
    options = CONDITIONS if high <= 7 else CONDITIONS[:-1]
    return pick(options, "cond", city, day.isoformat())


def temperature(city: str, day: dt.date, unit: str) -> tuple[int, int]:
    """(high, low) in ``unit`` for a city and day; Celsius highs stay in 5..34."""
    high = number(5, 34, "high", city, day.isoformat())
    low = high - number(4, 11, "low", city, day.isoformat())
    if unit == "fahrenheit":
        return round(high * 9 / 5 + 32), round(low * 9 / 5 + 32)
    return high, low


class WeatherToolkit(Toolkit):
    name = "weather"
    host = "api.weather.example"

    @tool
    def get_weather_forecast(self, city: str, days: int = 3, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        """Get the daily weather forecast for a city, starting tomorrow.

        Args:
            city: The city name, e.g. "Paris".
            days: Number of days to forecast, from 1 to 7.
            unit: Temperature unit.
        """
        if not 1 <= days <= 7:
            raise ValueError(f"days must be between 1 and 7, got {days}")
        name = canonical_city(city)
        out = []
        for i in range(1, days + 1):
            day = TODAY + dt.timedelta(days=i)
            high, low = temperature(name, day, unit)
            out.append({"date": day.isoformat(), "high": high, "low": low, "condition": condition(name, day)})
        return {"city": name, "unit": unit, "forecast": out}

    @tool
    def get_weather_history(self, city: str, date: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        """Get the observed weather of a city on a past date.

        Args:
            city: The city name.
            date: A past date in YYYY-MM-DD format.
            unit: Temperature unit.
        """
        day = parse_date(date)
        name = canonical_city(city)
        if day >= TODAY:
            raise ToolError(f"No observations for {date}: history is available up to {(TODAY - dt.timedelta(days=1)).isoformat()}")
        high, low = temperature(name, day, unit)
        sky = condition(name, day)
        rain = number(1, 30, "rain", name, day.isoformat()) if sky in ("rainy", "stormy") else 0
        return {"city": name, "date": day.isoformat(), "unit": unit, "high": high, "low": low, "condition": sky, "rain_mm": rain}

    @tool
    def get_weather_alerts(self, city: str, severity: Literal["minor", "moderate", "severe"] | None = None) -> dict:
        """List active weather alerts for a city.

        Args:
            city: The city name.
            severity: Only return alerts of this severity.
        """
        name = canonical_city(city)
        alerts = []
        for i in range(number(0, 2, "n-alerts", name)):
            alerts.append({"type": pick(ALERTS, "alert", name, i), "severity": pick(SEVERITIES, "sev", name, i),
                           "until": (TODAY + dt.timedelta(days=1 + i)).isoformat()})
        if severity is not None:
            alerts = [a for a in alerts if a["severity"] == severity]
        return {"city": name, "alerts": alerts}

    @tool
    def get_air_quality(self, city: str) -> dict:
        """Get the current air quality index (AQI) of a city.

        Args:
            city: The city name.
        """
        name = canonical_city(city)
        aqi = number(12, 160, "aqi", name)
        level = "good" if aqi <= 50 else "moderate" if aqi <= 100 else "unhealthy"
        return {"city": name, "aqi": aqi, "level": level}
