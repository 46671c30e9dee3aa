"""The calendar of a stored plan (pure): continuation, records matched to planned doses, the
week grid, adherence and the missed-run check, with the program's clock across a DST change."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from tandem.medications.dose_plan import maintenance, taper, titration
from tandem.medications.schedule import (
    DoseRecord,
    calendar_weeks,
    check_missed_run,
    days_through,
    dose_states,
    planned_through,
    summarise,
)

NY = ZoneInfo("America/New_York")
D0 = date(2026, 3, 2)  # a Monday


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)


def test_a_continuing_plan_repeats_its_last_day_until_replaced() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0)  # 6 days listed, then continues
    days = days_through(plan, D0 + timedelta(days=9))
    assert len(days) == 10 and days[-1].total_mg == 30
    assert len(days_through(plan, D0 + timedelta(days=9), ends_on=D0 + timedelta(days=4))) == 4
    finished = taper("baclofen", "10mg-tid", 7, D0)  # the monograph's shortest taper
    assert len(days_through(finished, D0 + timedelta(days=30))) == 7


def test_planned_doses_keep_the_clock_across_daylight_saving() -> None:
    plan = maintenance(
        "acamprosate", "666mg-tid", date(2026, 3, 7)
    )  # DST starts 8 March in New York
    doses = planned_through(plan, date(2026, 3, 9), NY)
    mornings = [d.due_at for d in doses if d.time_slot == "morning"][:3]  # 7, 8 and 9 March
    assert [m.hour for m in mornings] == [8, 8, 8]
    assert [m.utcoffset() for m in mornings][0] != [m.utcoffset() for m in mornings][-1]


def test_records_match_the_planned_dose_they_are_about() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0)
    planned = planned_through(plan, D0 + timedelta(days=1), NY)
    now = at(D0 + timedelta(days=1), 14)
    records = [
        DoseRecord("administration", 1, True, at(D0, 8, 40)),  # given 40 min late
        DoseRecord("statement", 2, False, at(D0, 13), at(D0, 13)),  # reported missed
        DoseRecord("administration", 3, False, at(D0, 19, 5)),  # not given
        DoseRecord("statement", 4, True, at(D0, 19), at(D0, 19)),  # the nurse's record wins
        DoseRecord("administration", 5, True, at(D0 + timedelta(days=1), 1)),  # 7 h from any dose
    ]
    states = [d.state for d in dose_states(planned, records, now, NY)][:6]
    assert states == ["given", "missed", "not_given", "unrecorded", "unrecorded", "upcoming"]


def test_adherence_counts_due_doses_only() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0)
    planned = planned_through(plan, D0 + timedelta(days=1), NY)
    now = at(D0 + timedelta(days=1), 14)
    records = [
        DoseRecord("statement", i, True, p.due_at, p.due_at) for i, p in enumerate(planned[:3])
    ]
    summary = summarise(dose_states(planned, records, now, NY), now)
    assert (summary.due, summary.taken, summary.unrecorded, summary.percent) == (5, 3, 2, 60)
    assert summarise(dose_states(planned, [], at(D0, 7), NY), at(D0, 7)).share is None


def test_doses_due_before_the_plan_was_written_are_neither_due_nor_missed() -> None:
    # Written at 14:00 on its first day: nobody was asked for that day's 08:00 and 13:00 doses.
    plan = titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0)
    planned = planned_through(plan, D0 + timedelta(days=1), NY)
    written = at(D0, 14)
    now = at(D0 + timedelta(days=1), 14)
    doses = dose_states(planned, [], now, NY, written_at=written)
    assert [d.state for d in doses][:4] == ["before_plan", "before_plan", "unrecorded"] + [
        "unrecorded"
    ]
    summary = summarise(doses, now)
    assert (summary.due, summary.unrecorded, summary.share) == (3, 3, 0)  # not 5 due
    # A dose given before the plan was written and recorded against it counts as given.
    given = DoseRecord("administration", 1, True, at(D0, 8, 10))
    recorded = dose_states(planned, [given], now, NY, written_at=written)
    assert recorded[0].state == "given" and recorded[1].state == "before_plan"
    assert (summarise(recorded, now).due, summarise(recorded, now).taken) == (4, 1)
    # Nor are they a run of missed doses: at 09:00 next day only the 19:00 dose is 12 h silent.
    morning = at(D0 + timedelta(days=1), 9)
    unwritten = dose_states(planned, [], morning, NY)
    assert check_missed_run("baclofen", unwritten, morning, threshold=2) is not None
    written_doses = dose_states(planned, [], morning, NY, written_at=written)
    assert check_missed_run("baclofen", written_doses, morning, threshold=2) is None


def test_missed_run_counts_silence_after_the_grace_period() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0)
    planned = planned_through(plan, D0 + timedelta(days=2), NY)
    taken_first = [DoseRecord("statement", 1, True, planned[0].due_at, planned[0].due_at)]
    # Day 0: 08:00 taken, 13:00 and 19:00 no record. At 06:00 next day only 13:00 is 12 h past due.
    early = at(D0 + timedelta(days=1), 6)
    assert check_missed_run("baclofen", dose_states(planned, taken_first, early, NY), early) is None
    # Next day 09:00: 13:00, 19:00 beyond grace, and a reported missed 08:00 dose make three.
    later = at(D0 + timedelta(days=1), 9)
    missed = [*taken_first, DoseRecord("statement", 2, False, planned[3].due_at, planned[3].due_at)]
    alert = check_missed_run("baclofen", dose_states(planned, missed, later, NY), later)
    assert alert is not None and alert.missed == 3 and alert.since == planned[1].due_at
    assert check_missed_run("naltrexone", [], later) is None


def test_week_grid_starts_on_monday_and_marks_today() -> None:
    plan = titration(
        "baclofen", "5mg-tid", 5, 3, "10mg-tid", D0 + timedelta(days=2)
    )  # starts Wednesday
    planned = planned_through(plan, D0 + timedelta(days=9), NY)
    today = D0 + timedelta(days=4)
    doses = dose_states(planned, [], at(today, 12), NY)
    weeks = calendar_weeks(doses, D0 + timedelta(days=2), D0 + timedelta(days=9), today, NY)
    assert len(weeks) == 2 and all(len(w) == 7 for w in weeks)
    assert (
        weeks[0][0] is None and weeks[0][1] is None and weeks[0][2].date == D0 + timedelta(days=2)
    )
    assert [d.is_today for d in weeks[0] if d] == [False, False, True, False, False]
    assert weeks[0][2].total_mg == 15 and weeks[1][2].total_mg == 30
    assert weeks[1][3] is None
    assert calendar_weeks(doses, D0, D0 - timedelta(days=1), today, NY) == []


def test_a_linked_administration_counts_for_its_dose_even_after_midnight() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0)
    planned = planned_through(plan, D0 + timedelta(days=1), NY)
    now = at(D0 + timedelta(days=1), 6)
    late = DoseRecord("administration", 1, True, at(D0 + timedelta(days=1), 0, 30), at(D0, 19))
    corrected = [
        DoseRecord("statement", 1, False, at(D0, 8), at(D0, 8)),
        DoseRecord("statement", 2, True, at(D0, 8), at(D0, 8)),
    ]  # a later report replaces
    states = [d.state for d in dose_states(planned, [late, *corrected], now, NY)][:4]
    assert states == ["taken", "unrecorded", "given", "upcoming"]
