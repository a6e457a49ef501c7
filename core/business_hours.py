"""Business hours in an IANA time zone: when a step due at some moment may actually fire.

Windows are computed in local time and converted back to UTC by `zoneinfo`, so a window
that opens at 09:00 opens at 09:00 local time on both sides of a DST switch."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def next_open(when: datetime, timezone: str, start: str, end: str, days: list[str]) -> datetime:
    """`when` if it falls inside business hours, else the start of the next window (UTC)."""
    zone = ZoneInfo(timezone)
    local = when.astimezone(zone)
    opens, closes = time.fromisoformat(start), time.fromisoformat(end)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if DAYS[day.weekday()] not in days:
            continue
        window_start = datetime.combine(day, opens, tzinfo=zone)
        window_end = datetime.combine(day, closes, tzinfo=zone)
        if local < window_start:
            return window_start.astimezone(UTC)
        if local < window_end:
            return when.astimezone(UTC)
    raise ValueError(f"no business hours on any of {days!r}")
