"""The rehab program's pure checks: plans, retention changes, bookings and attendance."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tandem.errors import InvalidInput
from tandem.recovery import care_plans, sessions_schedule
from tandem.recovery.care_plans import PlannedService

D = date(2026, 11, 10)
NOW = datetime(2026, 11, 10, 15, tzinfo=UTC)


def test_a_plan_needs_substances_and_known_services_with_a_frequency() -> None:
    ok = care_plans.check_plan(
        ["alcohol", "alcohol", "opioids"], [PlannedService("group_therapy", "weekly")], D, D
    )
    assert ok[0] == ("alcohol", "opioids")
    for substances, planned, started, field in (
        ([], [PlannedService("group_therapy", "weekly")], D, "substances"),
        (["alcohol"], [], D, "services"),
        (["alcohol"], [PlannedService("yoga", "weekly")], D, "services.yoga"),
        (["alcohol"], [PlannedService("peer_support", "hourly")], D, "frequency.peer_support"),
        (
            ["alcohol"],
            [PlannedService("peer_support", "weekly")],
            D + timedelta(days=1),
            "started_on",
        ),
    ):
        with pytest.raises(InvalidInput) as refused:
            care_plans.check_plan(substances, planned, started, D)
        assert refused.value.field == field


def test_retention_changes_are_dated_after_the_last_change_and_not_in_the_future() -> None:
    care_plans.check_retention(
        "active", "dropped_out", D, D - timedelta(days=30), D - timedelta(days=30), D
    )
    for current, wanted, on_day, last, field in (
        ("active", "active", D, D, "retention"),
        ("active", "gone", D, D, "retention"),
        ("active", "completed", D + timedelta(days=1), D, "on_day"),
        ("dropped_out", "active", D - timedelta(days=2), D - timedelta(days=1), "on_day"),
    ):
        with pytest.raises(InvalidInput) as refused:
            care_plans.check_retention(current, wanted, on_day, D - timedelta(days=30), last, D)
        assert refused.value.field == field


def test_a_session_is_booked_ahead_for_a_plausible_length() -> None:
    sessions_schedule.check_booking(NOW + timedelta(days=1), 50, NOW)
    for starts, minutes, field in (
        (NOW - timedelta(hours=1), 50, "starts_at"),
        (NOW + timedelta(days=400), 50, "starts_at"),
        (NOW + timedelta(days=1), 4, "minutes"),
        (NOW + timedelta(days=1), 481, "minutes"),
    ):
        with pytest.raises(InvalidInput) as refused:
            sessions_schedule.check_booking(starts, minutes, NOW)
        assert refused.value.field == field


def test_attendance_is_recorded_once_the_session_started_and_cancelled_while_booked() -> None:
    past, future = NOW - timedelta(hours=1), NOW + timedelta(hours=1)
    sessions_schedule.check_attendance("booked", "attended", past, NOW)
    sessions_schedule.check_attendance("booked", "cancelled", future, NOW)
    sessions_schedule.check_attendance("attended", "missed", past, NOW)  # a correction
    for status, wanted, starts in (
        ("booked", "attended", future),
        ("cancelled", "attended", past),
        ("attended", "cancelled", past),
        ("booked", "booked", past),
        ("missed", "missed", past),
    ):
        with pytest.raises(InvalidInput):
            sessions_schedule.check_attendance(status, wanted, starts, NOW)
