"""Nursing shifts: when each begins on the program's clock (a program setting, e.g. 07:00 and
19:00), and which shift an instant falls in. Pure: pass `now` and the time zone.

A shift runs from one start time to the next (the last start of a day runs to the first of the
next day). Shift times are operational settings of a program, not clinical facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from tandem.errors import InvalidInput

__all__ = [
    "DEFAULT_SHIFT_STARTS",
    "DEFAULT_SOURCE",
    "PROGRAM_SOURCE",
    "SHIFTS",
    "Shift",
    "ShiftTimes",
    "parse_shift_starts",
    "shift_at",
]

# When a program has set none: two twelve-hour shifts, a common pattern, named as Tandem's
# default so the page says the program has not set its own.
DEFAULT_SHIFT_STARTS = (time(7, 0), time(19, 0))
DEFAULT_SOURCE = "Tandem default (the program has not set its shift times)"
PROGRAM_SOURCE = "program setting"
# Which shift a page asks for, as an offset from the current one.
SHIFTS = {"previous": -1, "current": 0, "next": 1}


@dataclass(frozen=True)
class ShiftTimes:
    """The clock times shifts begin, in the program's time zone, and where they come from."""

    starts: tuple[time, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.starts:
            raise InvalidInput("shift_starts", "give at least one shift start time")
        if list(self.starts) != sorted(set(self.starts)):
            raise InvalidInput("shift_starts", "give each start time once, earliest first")

    @property
    def text(self) -> str:
        return " ".join(f"{t:%H:%M}" for t in self.starts)


@dataclass(frozen=True)
class Shift:
    """One shift: from `start` (inclusive) to `end` (exclusive), aware instants."""

    start: datetime
    end: datetime

    def holds(self, at: datetime) -> bool:
        # In UTC: aware times of one zone compare by their wall clocks, not as instants.
        return self.start.astimezone(UTC) <= at.astimezone(UTC) < self.end.astimezone(UTC)

    @property
    def hours(self) -> float:
        return (self.end.astimezone(UTC) - self.start.astimezone(UTC)).total_seconds() / 3600

    @property
    def label(self) -> str:
        return f"{self.start:%a %d %b %H:%M} to {self.end:%H:%M}" + (
            "" if self.end.date() == self.start.date() else f" ({self.end:%a %d %b})"
        )

    @property
    def days(self) -> tuple[date, date]:
        """The first and last local calendar days the shift touches."""
        return self.start.date(), (self.end - timedelta(microseconds=1)).date()


def parse_shift_starts(text: str, source: str = PROGRAM_SOURCE) -> ShiftTimes:
    """Start times as a person types them: "07:00 19:00" or "7:00,15:00,23:00"."""
    words = text.replace(",", " ").split()
    starts: list[time] = []
    for word in words:
        try:
            hours, minutes = word.split(":")
            starts.append(time(int(hours), int(minutes)))
        except ValueError:
            raise InvalidInput("shift_starts", f"{word!r} is not a clock time like 07:00") from None
    if len(set(starts)) != len(starts):
        raise InvalidInput("shift_starts", "give each start time once")
    return ShiftTimes(tuple(sorted(starts)), source)


def _boundaries(times: ShiftTimes, around: date, tz: tzinfo) -> list[datetime]:
    return [
        datetime.combine(around + timedelta(days=d), start, tzinfo=tz)
        for d in (-2, -1, 0, 1, 2)
        for start in times.starts
    ]


def shift_at(times: ShiftTimes, now: datetime, tz: tzinfo, offset: int = 0) -> Shift:
    """The shift `now` falls in (offset 0), or the one `offset` shifts before or after it."""
    if now.tzinfo is None:
        raise InvalidInput("now", "needs a time zone")
    if abs(offset) > len(times.starts):
        raise InvalidInput("shift", "choose the previous, current or next shift")
    here = now.astimezone(tz)
    bounds = _boundaries(times, here.date(), tz)
    current = max(i for i, b in enumerate(bounds) if b <= here)
    i = current + offset
    return Shift(bounds[i], bounds[i + 1])
