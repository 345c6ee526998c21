"""Korean time: the calendar the sources, the schedules and the programmes' deadlines are written in. Pure."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

# Korea has kept UTC+9 without daylight saving since 1988, so a fixed offset is exact and needs no tz database.
KST = timezone(timedelta(hours=9), "KST")


def korean_today(now: datetime) -> date:
    """The date in Korea at the aware instant `now`."""
    return now.astimezone(KST).date()
