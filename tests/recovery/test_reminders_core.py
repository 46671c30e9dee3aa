"""Which reminders are due, pure: each kind at its edges, turned off, and out of treatment; and
what an e-mail may say."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tandem.recovery.reminders_core import (
    DoseDue,
    Preferences,
    SessionDue,
    due_reminders,
    email_text,
    parse_clock,
)

NY = ZoneInfo("America/New_York")
DOSE_AT = datetime(2026, 3, 4, 19, 0, tzinfo=NY)
SESSION_AT = datetime(2026, 3, 5, 10, 0, tzinfo=NY)


def due(now: datetime, **changes: object) -> list[str]:
    values: dict[str, object] = {
        "patient_id": "p1",
        "now": now,
        "zone": NY,
        "check_in_at": time(18, 0),
        "checked_in_today": False,
        "in_treatment": True,
        "doses": [DoseDue(7, DOSE_AT, "Baclofen 5 mg", recorded=False)],
        "sessions": [SessionDue(3, SESSION_AT, "Group session")],
        "session_hours": 24,
        "dose_window": timedelta(minutes=120),
        "preferences": Preferences(),
    }
    values.update(changes)
    return [r.key for r in due_reminders(**values)]  # type: ignore[arg-type]


def at(hour: int, minute: int = 0, day: int = 4) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=NY)


def test_the_check_in_reminder_is_due_from_the_programs_time_until_the_check_in() -> None:
    assert "check_in:p1:2026-03-04" not in due(at(17, 59))
    assert "check_in:p1:2026-03-04" in due(at(18, 0))
    assert "check_in:p1:2026-03-04" not in due(at(18, 0), checked_in_today=True)
    assert "check_in:p1:2026-03-04" not in due(at(18, 0), in_treatment=False)
    # The program's day, not UTC's: 23:30 in New York is 04:30 UTC the next day.
    assert "check_in:p1:2026-03-04" in due(at(23, 30))


def test_a_dose_reminder_is_due_from_its_time_for_the_window_unless_recorded() -> None:
    key = f"dose:7:{DOSE_AT.astimezone(ZoneInfo('UTC')).isoformat()}"
    assert key not in due(at(18, 59))
    assert key in due(at(19, 0)) and key in due(at(20, 59))
    assert key not in due(at(21, 0))
    recorded = [DoseDue(7, DOSE_AT, "Baclofen 5 mg", recorded=True)]
    assert key not in due(at(19, 30), doses=recorded)


def test_a_session_reminder_is_due_the_set_hours_before_it() -> None:
    key = "session:3:2026-03-05T15:00:00+00:00:24h"
    assert key not in due(at(9, 59))
    assert key in due(at(10, 0)) and key in due(at(9, 59, day=5))
    assert key not in due(at(10, 0, day=5))
    assert key.replace("24h", "2h") in due(at(8, 0, day=5), session_hours=2)
    assert key.replace("24h", "2h") not in due(at(7, 59, day=5), session_hours=2)
    # A session moved to another time is a new reminder.
    moved = [SessionDue(3, SESSION_AT + timedelta(hours=2), "Group session")]
    assert "session:3:2026-03-05T17:00:00+00:00:24h" in due(at(12, 0), sessions=moved)


@pytest.mark.parametrize("off", ["check_in", "doses", "sessions"])
def test_a_kind_turned_off_is_not_due(off: str) -> None:
    everything = due(at(19, 30))
    assert len(everything) == 3
    kept = due(at(19, 30), preferences=Preferences(**{off: False}))
    assert len(kept) == 2
    prefix = {"check_in": "check_in:", "doses": "dose:", "sessions": "session:"}[off]
    assert not any(k.startswith(prefix) for k in kept)


def test_an_email_says_only_time_for_your_check_in() -> None:
    for kind in ("check_in", "dose", "session"):
        text = email_text(kind)
        assert text.startswith("Time for your check-in.")
        assert not any(w in text.lower() for w in ("mg", "baclofen", "group", "session at"))


def test_clock_times() -> None:
    assert parse_clock("18:00") == time(18, 0)
    for bad in ("6pm", "18", "18:0", "x:00"):
        with pytest.raises(ValueError):
            parse_clock(bad)
