"""Calendar events kept in episode state, plus date arithmetic."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tl_lightning.tools.toolkit import ToolError, Toolkit, tool
from tl_lightning.tools.toolkits._common import parse_date


class CalendarToolkit(Toolkit):
    name = "calendar"
    host = "api.calendar.example"

    def initial_state(self) -> dict[str, Any]:
        return {"events": [], "next_id": 1}

    @tool
    def create_event(self, title: str, date: str, start_time: str, duration_minutes: int = 60, location: str | None = None) -> dict:
        """Create a calendar event.

        Args:
            title: The event title.
            date: Date in YYYY-MM-DD format.
            start_time: Start time in HH:MM format.
            duration_minutes: Duration in minutes, from 5 to 600.
            location: Where the event takes place.
        """
        day = parse_date(date)
        start = dt.time.fromisoformat(start_time)
        if not 5 <= duration_minutes <= 600:
            raise ValueError(f"duration_minutes must be between 5 and 600, got {duration_minutes}")
        event = {"event_id": f"EV-{self.state['next_id']}", "title": title, "date": day.isoformat(),
                 "start_time": start.strftime("%H:%M"), "duration_minutes": duration_minutes, "location": location}
        self.state["next_id"] += 1
        self.state["events"].append(event)
        return dict(event)

    @tool
    def list_events(self, date: str | None = None) -> dict:
        """List calendar events, optionally on one date.

        Args:
            date: Only events on this date (YYYY-MM-DD).
        """
        day = parse_date(date).isoformat() if date is not None else None
        events = [dict(e) for e in self.state["events"] if day is None or e["date"] == day]
        return {"date": day, "events": sorted(events, key=lambda e: (e["date"], e["start_time"]))}

    @tool
    def delete_event(self, event_id: str) -> dict:
        """Delete a calendar event.

        Args:
            event_id: The event id, e.g. "EV-3".
        """
        for e in self.state["events"]:
            if e["event_id"] == event_id:
                self.state["events"].remove(e)
                return {"event_id": event_id, "deleted": True}
        raise ToolError(f"Event '{event_id}' not found")

    @tool
    def get_day_of_week(self, date: str) -> dict:
        """Get the weekday of a date.

        Args:
            date: Date in YYYY-MM-DD format.
        """
        day = parse_date(date)
        return {"date": day.isoformat(), "day_of_week": day.strftime("%A")}

    @tool
    def count_days_between(self, start_date: str, end_date: str) -> dict:
        """Count the days from one date to another.

        Args:
            start_date: First date in YYYY-MM-DD format.
            end_date: Second date in YYYY-MM-DD format.
        """
        a, b = parse_date(start_date), parse_date(end_date)
        return {"start_date": a.isoformat(), "end_date": b.isoformat(), "days": (b - a).days}
