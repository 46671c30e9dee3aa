"""Adherence share and the missed-run alert (pure: `now` is passed in)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tandem.medications.adherence import (
    DoseEvent,
    adherence,
    missed_run_alert,
    planned_doses,
    reconcile,
)
from tandem.medications.dose_plan import titration
from tandem.medications.errors import ImplausibleValue

TZ = ZoneInfo("Europe/Paris")
SLOTS = {"morning": time(8), "midday": time(13), "evening": time(19), "bedtime": time(22)}


def plan():
    return titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", date(2025, 3, 1))


def at(day: int, hour: int) -> datetime:
    return datetime(2025, 3, day, hour, tzinfo=TZ)


def test_planned_doses_use_the_program_clock() -> None:
    doses = planned_doses(plan(), SLOTS, TZ)
    assert len(doses) == 18
    assert doses[0].due_at == at(1, 8) and doses[0].mg == 5
    assert doses[-1].due_at == at(6, 19) and doses[-1].mg == 10


def test_adherence_share() -> None:
    doses = planned_doses(plan(), SLOTS, TZ)
    taken = [DoseEvent("baclofen", d.due_at, "taken") for d in doses[:9]]
    assert adherence(doses, taken) == 0.5
    assert adherence(doses, taken, now=at(3, 20)) == 1.0
    assert adherence(doses, [], now=at(1, 7)) is None
    missed = [DoseEvent("baclofen", d.due_at, "missed") for d in doses]
    assert adherence(doses, missed) == 0.0


def test_three_missed_in_a_row_raises_the_unverified_alert() -> None:
    doses = planned_doses(plan(), SLOTS, TZ)
    events = [DoseEvent("baclofen", d.due_at, "taken") for d in doses[:3]]
    events += [DoseEvent("baclofen", d.due_at, "missed") for d in doses[3:6]]
    alert = missed_run_alert("baclofen", events, now=at(2, 20))
    assert alert is not None
    assert (alert.missed, alert.threshold) == (3, 3)
    assert alert.since == at(2, 8) and alert.last_missed == at(2, 19)
    assert alert.threshold_unverified
    assert "program must set" in alert.note
    assert any(s.id == "ozobax_label" for s in alert.source)


def test_two_missed_or_a_dose_taken_since_is_no_alert() -> None:
    doses = planned_doses(plan(), SLOTS, TZ)
    two = [DoseEvent("baclofen", d.due_at, "missed") for d in doses[:2]]
    assert missed_run_alert("baclofen", two, now=at(5, 0)) is None
    broken = [
        *(DoseEvent("baclofen", d.due_at, "missed") for d in doses[:4]),
        DoseEvent("baclofen", doses[4].due_at, "taken"),
    ]
    assert missed_run_alert("baclofen", broken, now=at(5, 0)) is None


def test_future_events_do_not_count() -> None:
    doses = planned_doses(plan(), SLOTS, TZ)
    events = [DoseEvent("baclofen", d.due_at, "missed") for d in doses[:3]]
    assert missed_run_alert("baclofen", events, now=at(1, 14)) is None


def test_program_threshold_overrides_the_placeholder() -> None:
    doses = planned_doses(plan(), SLOTS, TZ)
    events = [DoseEvent("baclofen", d.due_at, "missed") for d in doses[:2]]
    alert = missed_run_alert("baclofen", events, now=at(5, 0), threshold=2)
    assert alert is not None and not alert.threshold_unverified and alert.note is None
    with pytest.raises(ImplausibleValue):
        missed_run_alert("baclofen", events, now=at(5, 0), threshold=0)


def test_medication_without_a_policy_has_no_default_alert() -> None:
    events = [DoseEvent("naltrexone", at(1, h), "missed") for h in (8, 9, 10, 11)]
    assert missed_run_alert("naltrexone", events, now=at(2, 0)) is None
    assert missed_run_alert("naltrexone", events, now=at(2, 0), threshold=3) is not None


def test_reconcile_marks_overdue_doses_missed() -> None:
    doses = planned_doses(plan(), SLOTS, TZ)
    taken = [DoseEvent("baclofen", doses[0].due_at, "taken")]
    events = reconcile(doses, taken, now=at(2, 9), grace=timedelta(hours=2))
    assert [e.status for e in events] == ["taken", "missed", "missed"]
    assert missed_run_alert("baclofen", events, now=at(2, 9)) is None
    later = reconcile(doses, taken, now=at(2, 16))
    assert missed_run_alert("baclofen", later, now=at(2, 16)) is not None


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ImplausibleValue) as err:
        DoseEvent("baclofen", datetime(2025, 3, 1, 8), "taken")  # noqa: DTZ001
    assert err.value.field == "due_at"
    with pytest.raises(ImplausibleValue) as err:
        missed_run_alert("baclofen", [], now=datetime(2025, 3, 1))  # noqa: DTZ001
    assert err.value.field == "now"
    assert missed_run_alert("baclofen", [], now=datetime(2025, 3, 1, tzinfo=UTC)) is None
