"""Time, one way for every domain: the UTC clock, the program's today, and one policy for
times a person records ("aware, and not in the future beyond a small clock skew")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from tandem.errors import InvalidInput

# A device clock a little ahead of the server's does not make an entry "in the future".
CLOCK_SKEW = timedelta(minutes=2)


def utcnow() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=256)
def zone(time_zone: str) -> ZoneInfo:
    return ZoneInfo(time_zone)


def program_today(time_zone: str, now: datetime | None = None) -> date:
    """The calendar day it is in the program's time zone (not the server's, not UTC)."""
    return (now or utcnow()).astimezone(zone(time_zone)).date()


def local(at: datetime, time_zone: str) -> datetime:
    return at.astimezone(zone(time_zone))


def check_recorded_at(
    field: str,
    value: datetime,
    now: datetime,
    *,
    not_before: datetime | None = None,
    not_before_reason: str = "",
) -> datetime:
    """A time a person recorded: timezone-aware, not later than `now` plus the clock skew, not
    before `not_before`. Returns it clamped to `now` (a clock slightly ahead is not the future)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, "needs a time zone")
    if value > now + CLOCK_SKEW:
        raise InvalidInput(field, "cannot be in the future")
    if not_before is not None and value < not_before:
        raise InvalidInput(field, not_before_reason or f"cannot be before {not_before.isoformat()}")
    return min(value, now)


def duration_text(value: timedelta) -> str:
    """ "45 min", "3 h 44 min", "2 d 3 h": how late, how soon or how old, as a ward reads it."""
    minutes = max(0, int(value.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours >= 48:
        days, hours = divmod(hours, 24)
        return f"{days} d {hours} h" if hours else f"{days} d"
    return f"{hours} h {rest} min" if rest else f"{hours} h"
