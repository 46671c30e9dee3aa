"""A stored plan as a calendar: which doses fall on which day, what was recorded against each,
the week grid a chart shows, adherence, and the missed-run check. Pure: pass `today` / `now`.

Records come from two places, and each names the planned dose it is about (`due_at`): a
nurse's administration (MedicationAdministration) and a patient's report (MedicationStatement).
An administration without that link (written elsewhere with the plan's id) is matched to the
nearest planned dose on the same local day, within `MATCH_WINDOW`. When several records concern
one dose, an administration wins over a report (it was observed), and a later record over an
earlier one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Literal

from tandem.medications.adherence import (
    DoseEvent,
    MissedRunAlert,
    PlannedDose,
    adherence,
    missed_run_alert,
    planned_doses,
    reconcile,
)
from tandem.medications.dose_plan import DosePlan, PlanDay
from tandem.medications.errors import ImplausibleValue

__all__ = [
    "DEFAULT_SLOT_TIMES",
    "MATCH_WINDOW",
    "UNRECORDED_GRACE",
    "AdherenceSummary",
    "CalendarDay",
    "CalendarDose",
    "DoseRecord",
    "calendar_weeks",
    "check_missed_run",
    "days_through",
    "dose_states",
    "planned_through",
    "summarise",
]

# Clock times of the named slots. A Tandem default (no source gives dosing clock times); the
# program's own times would replace it.
DEFAULT_SLOT_TIMES: Mapping[str, time] = {
    "morning": time(8, 0),
    "midday": time(13, 0),
    "evening": time(19, 0),
    "bedtime": time(22, 0),
}
MATCH_WINDOW = timedelta(hours=6)
# A dose with nothing recorded this long after it was due counts as missed for the missed-run
# check (an operational setting of Tandem's, not a clinical threshold).
UNRECORDED_GRACE = timedelta(hours=12)

RecordKind = Literal["administration", "statement"]
# "before_plan": due before the plan was written and nothing recorded. Nobody could have given
# it by this plan, so it is neither due nor missed: adherence and the missed-run check skip it.
DoseState = Literal[
    "given", "not_given", "taken", "missed", "unrecorded", "upcoming", "before_plan"
]


@dataclass(frozen=True)
class DoseRecord:
    """Something recorded about a dose: a nurse gave it (or did not), or the patient reports."""

    kind: RecordKind
    record_id: int
    taken: bool
    at: datetime  # administered_at, or the planned due time a statement is about
    due_at: datetime | None = None  # statements name the planned dose

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ImplausibleValue("at", "must carry a time zone")


@dataclass(frozen=True)
class CalendarDose:
    planned: PlannedDose
    state: DoseState
    record: DoseRecord | None = None


@dataclass(frozen=True)
class CalendarDay:
    date: date
    doses: tuple[CalendarDose, ...]
    is_today: bool = False

    @property
    def total_mg(self) -> float:
        return round(sum(d.planned.mg for d in self.doses), 4)


@dataclass(frozen=True)
class AdherenceSummary:
    due: int
    taken: int
    missed: int
    unrecorded: int
    share: float | None  # taken / due; None when nothing is due yet

    @property
    def percent(self) -> int | None:
        return None if self.share is None else round(self.share * 100)


def days_through(plan: DosePlan, through: date, ends_on: date | None = None) -> list[PlanDay]:
    """The plan's days, before `ends_on` (the day a stopped or replaced plan gave way); a plan
    that continues repeats its last day's doses through `through`."""
    days = [d for d in plan.days if ends_on is None or d.date < ends_on]
    if plan.continues and days and days[-1].date == plan.days[-1].date:
        last = plan.days[-1]
        current = last.date + timedelta(days=1)
        while current <= through and (ends_on is None or current < ends_on):
            days.append(PlanDay(current, last.doses))
            current += timedelta(days=1)
    return days


def planned_through(
    plan: DosePlan,
    through: date,
    tz: tzinfo,
    ends_on: date | None = None,
    slot_times: Mapping[str, time] = DEFAULT_SLOT_TIMES,
) -> list[PlannedDose]:
    days = days_through(plan, through, ends_on)
    if not days:
        return []
    return planned_doses(dataclasses.replace(plan, days=tuple(days)), slot_times, tz)


def _local_date(at: datetime, tz: tzinfo) -> date:
    return at.astimezone(tz).date()


def dose_states(
    planned: Sequence[PlannedDose],
    records: Iterable[DoseRecord],
    now: datetime,
    tz: tzinfo,
    written_at: datetime | None = None,
) -> list[CalendarDose]:
    """Each planned dose with what was recorded against it (see the module notes). A dose due
    before the plan was written (`written_at`, the plan's creation) with no record is
    "before_plan": a plan written at noon to start that day holds that morning's dose, which
    nobody was asked to give. One with a record keeps what was recorded."""
    by_due: dict[datetime, DoseRecord] = {}
    matched: dict[datetime, DoseRecord] = {}
    unlinked: list[DoseRecord] = []
    for rec in sorted(records, key=lambda r: r.record_id):
        if rec.due_at is None:
            if rec.kind == "administration":
                unlinked.append(rec)
        elif rec.kind == "statement":
            by_due[rec.due_at] = rec
        else:
            matched[rec.due_at] = rec
    free = sorted(planned, key=lambda p: p.due_at)
    for rec in sorted(unlinked, key=lambda r: r.at):
        same_day = [
            p
            for p in free
            if p.due_at not in matched
            and _local_date(p.due_at, tz) == _local_date(rec.at, tz)
            and abs(p.due_at - rec.at) <= MATCH_WINDOW
        ]
        if same_day:
            best = min(same_day, key=lambda p: abs(p.due_at - rec.at))
            matched[best.due_at] = rec
    out: list[CalendarDose] = []
    for p in planned:
        record = matched.get(p.due_at) or by_due.get(p.due_at)
        state: DoseState
        if record is None and written_at is not None and p.due_at < written_at:
            state = "before_plan"
        elif record is None:
            state = "upcoming" if p.due_at > now else "unrecorded"
        elif record.kind == "administration":
            state = "given" if record.taken else "not_given"
        else:
            state = "taken" if record.taken else "missed"
        out.append(CalendarDose(p, state, record))
    return out


def _events(doses: Iterable[CalendarDose]) -> list[DoseEvent]:
    return [
        DoseEvent(
            d.planned.medication_id,
            d.planned.due_at,
            "taken" if d.state in ("given", "taken") else "missed",
        )
        for d in doses
        if d.state in ("given", "taken", "missed", "not_given")
    ]


def summarise(
    doses: Sequence[CalendarDose], now: datetime, since: datetime | None = None
) -> AdherenceSummary:
    """Adherence: the share of planned doses due by `now` (and from `since`) that were taken
    or given. A dose with nothing recorded counts as not taken; one due before the plan was
    written (and not recorded) does not count at all."""
    window = [
        d
        for d in doses
        if (since is None or d.planned.due_at >= since) and d.state != "before_plan"
    ]
    due = [d for d in window if d.planned.due_at <= now]
    share = adherence([d.planned for d in window], _events(window), now=now)
    return AdherenceSummary(
        due=len(due),
        taken=sum(1 for d in due if d.state in ("given", "taken")),
        missed=sum(1 for d in due if d.state in ("missed", "not_given")),
        unrecorded=sum(1 for d in due if d.state == "unrecorded"),
        share=share,
    )


def check_missed_run(
    medication_id: str,
    doses: Sequence[CalendarDose],
    now: datetime,
    *,
    threshold: int | None = None,
    grace: timedelta = UNRECORDED_GRACE,
) -> MissedRunAlert | None:
    """The monograph's missed-run alert, counting a dose with no record `grace` after it was
    due as missed (nobody knows it was taken). A dose due before the plan was written is not
    one the patient missed."""
    counted = [d for d in doses if d.state != "before_plan"]
    events = reconcile([d.planned for d in counted], _events(counted), now, grace=grace)
    return missed_run_alert(medication_id, events, now, threshold=threshold)


def calendar_weeks(
    doses: Sequence[CalendarDose],
    first: date,
    last: date,
    today: date,
    tz: tzinfo,
) -> list[list[CalendarDay | None]]:
    """Monday-first weeks covering `first`..`last`; a day outside that range is None, a day in
    range without doses has an empty `doses`."""
    if last < first:
        return []
    by_day: dict[date, list[CalendarDose]] = {}
    for d in doses:
        by_day.setdefault(_local_date(d.planned.due_at, tz), []).append(d)
    start = first - timedelta(days=first.weekday())
    weeks: list[list[CalendarDay | None]] = []
    current = start
    while current <= last:
        week: list[CalendarDay | None] = []
        for _ in range(7):
            if first <= current <= last:
                week.append(CalendarDay(current, tuple(by_day.get(current, ())), current == today))
            else:
                week.append(None)
            current += timedelta(days=1)
        weeks.append(week)
    return weeks
