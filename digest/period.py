"""Periods are ISO weeks (``2026-W48``): what one issue covers and its unique key."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from .errors import DigestError

__all__ = ["current_period", "parse_period", "period_bounds", "period_of"]

_PERIOD = re.compile(r"^(\d{4})-W(\d{2})$")


def parse_period(text: str) -> tuple[int, int]:
    """``"2026-W48"`` → ``(2026, 48)``; a clear error for anything else."""
    match = _PERIOD.match(text.strip())
    if match:
        year, week = int(match.group(1)), int(match.group(2))
        try:
            dt.date.fromisocalendar(year, week, 1)
        except ValueError:
            pass
        else:
            return year, week
    raise DigestError(f"not a period: {text!r}", hint="periods are ISO weeks written like 2026-W48")


def period_of(moment: dt.datetime, timezone: str = "Europe/Paris") -> str:
    """The ISO week that ``moment`` falls in, in the newsletter's time zone."""
    year, week, _ = moment.astimezone(ZoneInfo(timezone)).isocalendar()
    return f"{year}-W{week:02d}"


def current_period(timezone: str = "Europe/Paris", now: dt.datetime | None = None) -> str:
    return period_of(now or dt.datetime.now(dt.UTC), timezone)


def period_bounds(period: str, timezone: str = "Europe/Paris") -> tuple[dt.datetime, dt.datetime]:
    """Start (Monday 00:00 local) and end (next Monday 00:00 local) of a period, in UTC."""
    year, week = parse_period(period)
    zone = ZoneInfo(timezone)
    monday = dt.date.fromisocalendar(year, week, 1)
    start = dt.datetime.combine(monday, dt.time(), zone)
    end = dt.datetime.combine(monday + dt.timedelta(days=7), dt.time(), zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)
