"""Adherence over a dose plan, and the alert for a run of missed doses. Pure: pass `now`.

A run of missed baclofen doses amounts to stopping abruptly. How many missed doses in a row
should raise an alert is not given by any source Tandem holds, so the number lives in the
monograph (`adherence.missed_run_threshold`) marked `unverified`, and the alert carries that
flag and note so nobody mistakes the placeholder for a clinical threshold. A program sets its
own number by passing `threshold`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Literal

from tandem.medications.dose_plan import DosePlan
from tandem.medications.errors import ImplausibleValue
from tandem.medications.monograph import Source, load_monograph

__all__ = [
    "DoseEvent",
    "MissedRunAlert",
    "PlannedDose",
    "adherence",
    "missed_run_alert",
    "planned_doses",
    "reconcile",
]

DoseStatus = Literal["taken", "missed"]


def _aware(value: datetime, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise ImplausibleValue(field, f"must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ImplausibleValue(field, "must carry a time zone (naive datetimes are refused)")
    return value


@dataclass(frozen=True)
class PlannedDose:
    medication_id: str
    due_at: datetime
    mg: float
    time_slot: str = ""

    def __post_init__(self) -> None:
        _aware(self.due_at, "due_at")


@dataclass(frozen=True)
class DoseEvent:
    """What happened to one planned dose, identified by its medication and `due_at`."""

    medication_id: str
    due_at: datetime
    status: DoseStatus

    def __post_init__(self) -> None:
        _aware(self.due_at, "due_at")
        if self.status not in ("taken", "missed"):
            raise ImplausibleValue("status", f"must be taken or missed, got {self.status!r}")


def planned_doses(plan: DosePlan, slot_times: Mapping[str, time], tz: tzinfo) -> list[PlannedDose]:
    """The plan's doses as instants, given the program's clock time for each slot."""
    out: list[PlannedDose] = []
    for day in plan.days:
        for dose in day.doses:
            if dose.time_slot not in slot_times:
                raise ImplausibleValue("slot_times", f"no clock time for slot {dose.time_slot!r}")
            due = datetime.combine(day.date, slot_times[dose.time_slot], tzinfo=tz)
            out.append(PlannedDose(plan.medication_id, due, dose.mg, dose.time_slot))
    return out


def _key(medication_id: str, due_at: datetime) -> tuple[str, datetime]:
    return medication_id, due_at


def adherence(
    planned_doses: Sequence[PlannedDose],
    taken_events: Iterable[DoseEvent],
    *,
    now: datetime | None = None,
) -> float | None:
    """Share of planned doses (due by `now`, if given) with a 'taken' event. None if none due."""
    if now is not None:
        _aware(now, "now")
    due = [p for p in planned_doses if now is None or p.due_at <= now]
    if not due:
        return None
    taken = {_key(e.medication_id, e.due_at) for e in taken_events if e.status == "taken"}
    hits = sum(1 for p in due if _key(p.medication_id, p.due_at) in taken)
    return hits / len(due)


def reconcile(
    planned: Sequence[PlannedDose],
    events: Iterable[DoseEvent],
    now: datetime,
    *,
    grace: timedelta = timedelta(0),
) -> list[DoseEvent]:
    """Recorded events plus a 'missed' event for every planned dose more than `grace` past due
    with nothing recorded. Sorted by due time."""
    _aware(now, "now")
    if grace < timedelta(0):
        raise ImplausibleValue("grace", "must not be negative")
    recorded = {(_key(e.medication_id, e.due_at)): e for e in events}
    for p in planned:
        k = _key(p.medication_id, p.due_at)
        if k not in recorded and p.due_at + grace <= now:
            recorded[k] = DoseEvent(p.medication_id, p.due_at, "missed")
    return sorted(recorded.values(), key=lambda e: e.due_at)


@dataclass(frozen=True)
class MissedRunAlert:
    medication_id: str
    missed: int
    since: datetime
    last_missed: datetime
    threshold: int
    threshold_unverified: bool
    reason: str
    source: tuple[Source, ...]
    note: str | None = None


def missed_run_alert(
    medication: str,
    events: Iterable[DoseEvent],
    now: datetime,
    *,
    threshold: int | None = None,
) -> MissedRunAlert | None:
    """An alert when the latest doses due by `now` were missed `threshold` or more times in a row.

    `threshold` defaults to the monograph's (unverified) number; with neither, no alert is
    possible and None is returned.
    """
    _aware(now, "now")
    mono = load_monograph(medication)
    policy = mono.adherence
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ImplausibleValue(
                "threshold", f"must be a whole number of at least 1, got {threshold!r}"
            )
        limit, unverified = threshold, False
    elif policy is not None and policy.missed_run_threshold is not None:
        limit, unverified = policy.missed_run_threshold, policy.unverified
    else:
        return None
    mine = sorted(
        (e for e in events if e.medication_id == mono.id and e.due_at <= now),
        key=lambda e: e.due_at,
    )
    run: list[DoseEvent] = []
    for event in reversed(mine):
        if event.status != "missed":
            break
        run.append(event)
    if len(run) < limit:
        return None
    reason = (
        policy.reason if policy is not None else f"{len(run)} {mono.name} doses missed in a row."
    )
    return MissedRunAlert(
        medication_id=mono.id,
        missed=len(run),
        since=run[-1].due_at,
        last_missed=run[0].due_at,
        threshold=limit,
        threshold_unverified=unverified,
        reason=reason,
        source=() if policy is None else policy.source,
        note=None if policy is None or threshold is not None else policy.note,
    )
