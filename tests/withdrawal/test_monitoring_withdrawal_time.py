"""Due times and overdue across daylight-saving changes, and a property over random histories.

Intervals are elapsed time. US 2024: spring forward 10 March 02:00 EST -> 03:00 EDT, fall back
3 November 02:00 EDT -> 01:00 EST. EU 2024: 31 March 02:00 CET -> 03:00 CEST, 27 October
03:00 CEST -> 02:00 CET.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.withdrawal.monitoring import ScoredAssessment, evaluate, next_due
from tandem.withdrawal.protocol import Protocol, protocol_from_mapping

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = timedelta(hours=1)


@cache
def protocol_in(zone: str) -> Protocol:
    text = (
        resources.files("tandem.withdrawal")
        .joinpath("data", "example_protocol.yaml")
        .read_text(encoding="utf-8")
    )
    data: dict[str, Any] = yaml.safe_load(text)
    data["time_zone"] = zone
    for rule in data["instruments"]["ciwa_ar"]["escalations"]:
        if rule["kind"] == "overdue":
            rule["minutes"] = 30  # test-only grace period; the sources give none
    return protocol_from_mapping(data)


def ciwa(total: int, at: datetime) -> ScoredAssessment:
    return ScoredAssessment("ciwa_ar", total, None, at)


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def offset_hours(value: datetime) -> float:
    offset = value.utcoffset()
    assert offset is not None
    return offset.total_seconds() / 3600


# --------------------------------------------------------------------------- New York


def test_spring_forward_due_time_is_two_elapsed_hours() -> None:
    protocol = protocol_in("America/New_York")
    latest = datetime(2024, 3, 10, 1, 30, tzinfo=NEW_YORK)  # EST
    due = next_due(protocol, "ciwa_ar", [ciwa(9, latest)], latest)
    assert utc(due) - utc(latest) == 2 * HOUR
    assert (due.hour, due.minute, offset_hours(due)) == (4, 30, -4)  # 04:30 EDT, not 03:30


def test_spring_forward_overdue_boundary() -> None:
    protocol = protocol_in("America/New_York")
    history = [ciwa(9, datetime(2024, 3, 10, 1, 30, tzinfo=NEW_YORK))]
    due = datetime(2024, 3, 10, 4, 30, tzinfo=NEW_YORK)
    before = evaluate(protocol, "ciwa_ar", history, due - timedelta(minutes=1))
    after = evaluate(protocol, "ciwa_ar", history, due + timedelta(minutes=1))
    assert not before.overdue
    assert after.overdue and after.minutes_overdue == 1
    # 03:31 EDT looks "two hours later" on the wall clock but only one hour has passed.
    wall = evaluate(protocol, "ciwa_ar", history, datetime(2024, 3, 10, 3, 31, tzinfo=NEW_YORK))
    assert not wall.overdue
    grace = evaluate(protocol, "ciwa_ar", history, due + timedelta(minutes=29))
    assert "ciwa_overdue" not in {e.rule_id for e in grace.escalations}
    late = evaluate(protocol, "ciwa_ar", history, due + timedelta(minutes=30))
    assert "ciwa_overdue" in {e.rule_id for e in late.escalations}
    overdue_rule = next(e for e in late.escalations if e.rule_id == "ciwa_overdue")
    assert "2024-03-10 04:30 EDT" in overdue_rule.detail


def test_fall_back_due_time_is_two_elapsed_hours() -> None:
    protocol = protocol_in("America/New_York")
    latest = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK)  # first 01:30, EDT
    due = next_due(protocol, "ciwa_ar", [ciwa(9, latest)], latest)
    assert utc(due) - utc(latest) == 2 * HOUR
    assert (due.hour, due.minute, offset_hours(due)) == (2, 30, -5)  # 02:30 EST, not 03:30


def test_fall_back_due_inside_the_repeated_hour() -> None:
    protocol = protocol_in("America/New_York")
    latest = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK)  # 01:30 EDT, score 12 -> 60 min
    history = [ciwa(12, latest)]
    due = next_due(protocol, "ciwa_ar", history, latest)
    assert (due.hour, due.minute, due.fold, offset_hours(due)) == (1, 30, 1, -5)  # 01:30 EST
    # 01:40 EDT is after 01:30 on the wall clock but 50 minutes before the due time.
    first_pass = datetime(2024, 11, 3, 1, 40, tzinfo=NEW_YORK)
    assert not evaluate(protocol, "ciwa_ar", history, first_pass).overdue
    second_pass = datetime(2024, 11, 3, 1, 31, fold=1, tzinfo=NEW_YORK)
    state = evaluate(protocol, "ciwa_ar", history, second_pass)
    assert state.overdue and state.minutes_overdue == 1


def test_step_down_interval_across_spring_forward() -> None:
    protocol = protocol_in("America/New_York")
    start = datetime(2024, 3, 9, 16, 0, tzinfo=NEW_YORK)
    history = [ciwa(5, start + i * 4 * HOUR) for i in range(3)]  # 16:00, 20:00, 00:00 EST
    due = next_due(protocol, "ciwa_ar", history, history[-1].scored_at)
    assert utc(due) - utc(history[-1].scored_at) == 4 * HOUR
    assert (due.hour, offset_hours(due)) == (5, -4)  # 00:00 EST + 4 h = 05:00 EDT


def test_48_hour_stop_rule_counts_elapsed_hours_across_fall_back() -> None:
    protocol = protocol_in("America/New_York")
    first = datetime(2024, 11, 2, 12, 0, tzinfo=NEW_YORK)  # EDT
    last = datetime(2024, 11, 4, 11, 0, tzinfo=NEW_YORK)  # EST: 47 wall hours, 48 elapsed
    middle = [first + timedelta(hours=4 * i) for i in range(1, 12)]
    history = [ciwa(6, t) for t in (first, *middle, last)]
    assert evaluate(protocol, "ciwa_ar", history, last).monitoring_may_end


def test_48_hour_stop_rule_counts_elapsed_hours_across_spring_forward() -> None:
    protocol = protocol_in("America/New_York")
    first = datetime(2024, 3, 9, 12, 0, tzinfo=NEW_YORK)  # EST
    last = datetime(2024, 3, 11, 12, 59, tzinfo=NEW_YORK)  # EDT: 48:59 wall, 47:59 elapsed
    middle = [utc(first) + timedelta(hours=4 * i) for i in range(1, 12)]
    history = [ciwa(6, t) for t in (first, *middle, last)]
    assert not evaluate(protocol, "ciwa_ar", history, last).monitoring_may_end
    done = [*history, ciwa(6, datetime(2024, 3, 11, 13, 0, tzinfo=NEW_YORK))]
    assert evaluate(protocol, "ciwa_ar", done, done[-1].scored_at).monitoring_may_end


def test_history_in_utc_is_rendered_in_the_program_zone() -> None:
    protocol = protocol_in("America/New_York")
    latest = datetime(2024, 3, 10, 6, 30, tzinfo=UTC)  # 01:30 EST
    state = evaluate(protocol, "ciwa_ar", [ciwa(9, latest)], latest)
    assert state.due_at is not None
    assert (state.due_at.hour, state.due_at.minute, offset_hours(state.due_at)) == (4, 30, -4)


# --------------------------------------------------------------------------- Berlin


def test_berlin_spring_forward() -> None:
    protocol = protocol_in("Europe/Berlin")
    latest = datetime(2024, 3, 31, 1, 30, tzinfo=BERLIN)  # CET
    due = next_due(protocol, "ciwa_ar", [ciwa(9, latest)], latest)
    assert utc(due) - utc(latest) == 2 * HOUR
    assert (due.hour, due.minute, offset_hours(due)) == (4, 30, 2)  # 04:30 CEST
    assert not evaluate(protocol, "ciwa_ar", [ciwa(9, latest)], due).overdue
    assert evaluate(protocol, "ciwa_ar", [ciwa(9, latest)], due + timedelta(minutes=1)).overdue


def test_berlin_fall_back() -> None:
    protocol = protocol_in("Europe/Berlin")
    latest = datetime(2024, 10, 27, 2, 30, tzinfo=BERLIN)  # first 02:30, CEST
    history = [ciwa(12, latest)]  # 60 min
    due = next_due(protocol, "ciwa_ar", history, latest)
    assert (due.hour, due.minute, due.fold, offset_hours(due)) == (2, 30, 1, 1)  # 02:30 CET
    # utc() first: adding to a zoned datetime moves the wall clock (03:29 CET, 2 h later).
    assert not evaluate(protocol, "ciwa_ar", history, utc(latest) + timedelta(minutes=59)).overdue
    assert evaluate(
        protocol, "ciwa_ar", history, datetime(2024, 10, 27, 2, 31, fold=1, tzinfo=BERLIN)
    ).overdue


def test_program_in_berlin_with_history_from_new_york() -> None:
    protocol = protocol_in("Europe/Berlin")
    latest = datetime(2024, 3, 10, 1, 30, tzinfo=NEW_YORK)  # 06:30 UTC = 07:30 CET
    due = next_due(protocol, "ciwa_ar", [ciwa(9, latest)], latest)
    assert getattr(due.tzinfo, "key", None) == "Europe/Berlin"
    assert (due.hour, due.minute) == (9, 30)


# --------------------------------------------------------------------------- property

ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "UTC"]
INTERVALS = {15, 60, 120, 240, 480}


@st.composite
def histories(draw: st.DrawFn) -> tuple[str, list[ScoredAssessment], datetime]:
    zone = draw(st.sampled_from(ZONES))
    start = draw(
        st.datetimes(
            min_value=datetime(2024, 3, 1),  # noqa: DTZ001 - hypothesis bounds are naive
            max_value=datetime(2024, 11, 30),  # noqa: DTZ001
            timezones=st.just(ZoneInfo(zone)),
        )
    )
    totals = draw(st.lists(st.integers(0, 67), min_size=1, max_size=12))
    gaps = draw(st.lists(st.integers(1, 600), min_size=len(totals), max_size=len(totals)))
    at = start
    history = []
    for total, gap in zip(totals, gaps, strict=True):
        history.append(ciwa(total, at))
        at = (utc(at) + timedelta(minutes=gap)).astimezone(ZoneInfo(zone))
    later = draw(st.integers(0, 24 * 60))
    now = utc(history[-1].scored_at) + timedelta(minutes=later)
    return zone, history, now


@settings(max_examples=300, deadline=None)
@given(histories(), st.sampled_from(ZONES))
def test_due_at_is_always_after_the_latest_assessment(
    case: tuple[str, list[ScoredAssessment], datetime], program_zone: str
) -> None:
    _, history, now = case
    protocol = protocol_in(program_zone)
    state = evaluate(protocol, "ciwa_ar", history, now)
    latest = max(history, key=lambda a: utc(a.scored_at))
    assert state.due_at is not None
    assert utc(state.due_at) > utc(latest.scored_at)
    elapsed = utc(state.due_at) - utc(latest.scored_at)
    assert elapsed.total_seconds() / 60 in INTERVALS
    assert getattr(state.due_at.tzinfo, "key", None) == program_zone
    assert state.overdue == (utc(now) > utc(state.due_at))
    assert state.minutes_overdue == (
        int((utc(now) - utc(state.due_at)).total_seconds() // 60) if state.overdue else 0
    )
