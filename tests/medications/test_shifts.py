"""Nursing shifts on the program's clock (pure): which shift an instant falls in, the shifts
before and after it, three-shift days, the daylight-saving night, and refusals naming the field."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest

from tandem.errors import InvalidInput
from tandem.medications.shifts import (
    DEFAULT_SHIFT_STARTS,
    PROGRAM_SOURCE,
    ShiftTimes,
    parse_shift_starts,
    shift_at,
)

NY = ZoneInfo("America/New_York")
TWO = ShiftTimes(DEFAULT_SHIFT_STARTS, PROGRAM_SOURCE)


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NY)


@pytest.mark.parametrize(
    ("now", "offset", "start", "end"),
    [
        (at(4, 21), 0, at(4, 19), at(5, 7)),  # evening: the night shift that began at 19:00
        (at(5, 3), 0, at(4, 19), at(5, 7)),  # after midnight: still yesterday's night shift
        (at(4, 7), 0, at(4, 7), at(4, 19)),  # a start time begins its shift
        (at(4, 6, 59), 0, at(3, 19), at(4, 7)),
        (at(4, 18, 59), 0, at(4, 7), at(4, 19)),
        (at(4, 21), -1, at(4, 7), at(4, 19)),
        (at(4, 21), 1, at(5, 7), at(5, 19)),
        (at(4, 8), -1, at(3, 19), at(4, 7)),
        (at(4, 8), 1, at(4, 19), at(5, 7)),
    ],
)
def test_the_shift_an_instant_falls_in_and_its_neighbours(now, offset, start, end) -> None:  # type: ignore[no-untyped-def]
    shift = shift_at(TWO, now, NY, offset)
    assert (shift.start, shift.end) == (start, end)
    assert shift.holds(start) and not shift.holds(end)


def test_three_shifts_and_a_time_given_in_utc() -> None:
    times = parse_shift_starts("7:00, 15:00 23:00")
    assert times.starts == (time(7), time(15), time(23)) and times.source == "program setting"
    shift = shift_at(times, at(4, 23, 30).astimezone(ZoneInfo("UTC")), NY)
    assert (shift.start, shift.end) == (at(4, 23), at(5, 7))
    assert shift_at(times, at(5, 1), NY, 1).start == at(5, 7)
    assert shift_at(times, at(5, 1), NY, -1).start == at(4, 15)


def test_the_night_the_clocks_go_forward_is_an_hour_shorter() -> None:
    shift = shift_at(TWO, at(8, 2, 30), NY)  # 2026-03-08: New York springs forward at 02:00
    assert shift.start == at(7, 19) and shift.end == at(8, 7)
    assert shift.hours == 11 and shift_at(TWO, at(8, 12), NY).hours == 12
    assert shift.holds(at(8, 6, 59)) and not shift.holds(at(8, 7))
    assert shift.days == (at(7, 0).date(), at(8, 0).date())


@pytest.mark.parametrize("text", ["", "7am", "25:00", "07:00 07:00", "07:61"])
def test_bad_shift_times_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_shift_starts(text)
    assert refused.value.field == "shift_starts"


def test_a_shift_further_than_a_day_away_or_a_naive_now_is_refused() -> None:
    with pytest.raises(InvalidInput) as far:
        shift_at(TWO, at(4, 21), NY, 3)
    assert far.value.field == "shift"
    with pytest.raises(InvalidInput) as naive:
        shift_at(TWO, datetime(2026, 3, 4, 21), NY)  # noqa: DTZ001
    assert naive.value.field == "now"
