"""The missed-dose alert: raised for the prescriber when a plan's doses go missed (or
unrecorded) in a run as long as the monograph's threshold, once per run. Checked whenever a
dose is recorded, and swept over every active plan on a schedule (`sweep_missed_doses_everywhere`,
a job in the medications DOMAIN; `tandem med sweep` runs it by hand)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from tandem.access.guard import Access, system_access
from tandem.access.policy import Permission
from tandem.access.queries import visible
from tandem.alerts.models import Alert
from tandem.alerts.service import raise_alert
from tandem.clock import local, program_today, utcnow, zone
from tandem.medications.adherence import MissedRunAlert
from tandem.medications.dose_calendar import recorded_doses
from tandem.medications.dose_plan import DosePlan
from tandem.medications.monograph import all_monographs, load_monograph
from tandem.medications.plans import plan_of, stored_plan
from tandem.medications.resources import ALERT, PLAN
from tandem.medications.schedule import (
    DEFAULT_SLOT_TIMES,
    MATCH_WINDOW,
    DoseRecord,
    check_missed_run,
    dose_states,
    planned_through,
)
from tandem.medications.search import patient_rows
from tandem.medications.storage import (
    AdministrationDueRow,
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationStatementRow,
)
from tandem.medications.validation import GIVEN_WINDOW
from tandem.storage.db import session_scope
from tandem.storage.models import Patient, Program

__all__ = [
    "JOB",
    "due_for_check",
    "open_missed_dose_alerts",
    "raise_missed_dose_alert",
    "sweep_missed_doses",
    "sweep_missed_doses_everywhere",
    "thresholds",
]

JOB = "medications.missed_doses"
KIND = "missed_doses"


def raise_missed_dose_alert(
    access: Access, patient: Patient, row: DosePlanRow, now: datetime
) -> Alert | None:
    """Raise the monograph's missed-run alert for the prescriber, once per run of missed doses.
    A consequence of a change the caller was allowed (a dose recorded) or of the sweep."""
    line = _PlanLine(
        row.id,
        patient.id,
        patient.program_id,
        row.medication_id,
        row.status,
        row.ends_on,
        row.created_at,
        patient.program.time_zone,
        plan_of(row),
    )
    found = _missed_run(line, recorded_doses(access.db, row), now)
    if found is None:
        return None
    already = access.db.scalar(
        select(Alert.id).where(
            Alert.kind == KIND,
            Alert.related_type == PLAN,
            Alert.related_id == str(row.id),
            Alert.raised_at >= found.since,
        )
    )
    if already is not None:
        return None
    return _raise(access, line, found, now)


@dataclass(frozen=True)
class _PlanLine:
    """What the missed-run check needs of a stored plan (read as columns by the sweep)."""

    plan_id: int
    patient_id: str
    program_id: int
    medication_id: str
    status: str
    ends_on: date | None
    created_at: datetime
    time_zone: str  # the patient's program's
    plan: DosePlan


def _missed_run(
    line: _PlanLine, records: Iterable[DoseRecord], now: datetime
) -> MissedRunAlert | None:
    """The pure check: the plan's doses through today, each with what was recorded, and the
    monograph's run of missed doses ending now (None while the plan is not active)."""
    today = program_today(line.time_zone, now)
    if line.status != "active" or (line.ends_on is not None and line.ends_on <= today):
        return None  # `plans.effective_status`: stopped, or a taper past its stop date
    tz = zone(line.time_zone)
    planned = planned_through(line.plan, today, tz, line.ends_on)
    doses = dose_states(planned, records, now, tz, written_at=line.created_at)
    return check_missed_run(line.medication_id, doses, now)


def _raise(access: Access, line: _PlanLine, found: MissedRunAlert, now: datetime) -> Alert:
    mono = load_monograph(line.medication_id)
    time_zone = line.time_zone
    title = f"{mono.name}: {found.missed} doses in a row missed or not recorded"
    detail = (
        f"{found.reason} From {local(found.since, time_zone):%d %b %H:%M} to "
        f"{local(found.last_missed, time_zone):%d %b %H:%M} ({time_zone}), no dose of "
        f"plan {line.plan_id} was recorded as given or taken (a dose with no record 12 hours "
        f"after it was due counts as missed)."
    )
    if found.threshold_unverified and found.note:
        detail += f" Threshold {found.threshold} is unverified: {found.note}"
    return raise_alert(
        access,
        patient_id=line.patient_id,
        program_id=line.program_id,
        kind=KIND,
        severity="high",
        title=title,
        detail=detail,
        source="; ".join(s.citation for s in found.source),
        rule_id=f"{line.medication_id}.missed_run",
        related_type=PLAN,
        related_id=str(line.plan_id),
        raised_at=now,
    )


# --------------------------------------------------------------------------- the sweep

CHUNK = 500  # plans whose history is read in one statement
# How far apart the planned doses can be, at the least: the gaps between the slots' clock times
# (every frequency's slots are some of these), less an hour for a daylight-saving change.
_DST = timedelta(hours=1)


def _shortest_span(gaps: int) -> timedelta:
    """The least time `gaps` consecutive gaps between planned doses can span, on any plan."""
    times = sorted(t.hour * 60 + t.minute for t in DEFAULT_SLOT_TIMES.values())
    cycle = [b - a for a, b in itertools.pairwise(times)] + [times[0] + 24 * 60 - times[-1]]
    spans = [sum(cycle[(i + k) % len(cycle)] for k in range(gaps)) for i in range(len(cycle))]
    return max(timedelta(minutes=min(spans)) - _DST, timedelta(0))


def thresholds() -> dict[str, int]:
    """The medications whose monograph raises a missed-run alert, with their thresholds."""
    out = {}
    for mono in all_monographs():
        policy = mono.adherence
        if policy is not None and policy.missed_run_threshold is not None:
            out[mono.id] = policy.missed_run_threshold
    return out


def due_for_check(access: Access, now: datetime) -> list[int]:
    """The active plans that can have reached a run of missed doses by `now`, in one statement:
    only medications with a threshold, and not a plan with a dose certainly taken too recently
    for `threshold` missed doses to have followed it.

    A run of T missed doses ending by `now` follows the last dose taken, so T more planned
    doses fit between that dose and now: at least `_shortest_span(T)`. A dose is certainly
    taken when the record that decides its state (`schedule.dose_states`) says so: the latest
    administration linked to that planned dose, given; or a patient's report of it taken with
    no administration that could stand for that dose instead. Plans left in are checked in
    full (`_missed_run`); a plan left out could not alert."""
    p = DosePlanRow
    due, given, later, later_admin = (
        aliased(AdministrationDueRow),
        aliased(MedicationAdministrationRow),
        aliased(AdministrationDueRow),
        aliased(MedicationAdministrationRow),
    )
    s = MedicationStatementRow
    linked, other = aliased(AdministrationDueRow), aliased(MedicationAdministrationRow)
    unlinked = aliased(AdministrationDueRow)
    found: list[int] = []
    for medication_id, threshold in sorted(thresholds().items()):
        cutoff = now - _shortest_span(threshold)
        given_recently = (
            select(due.administration_id)
            .join(given, given.id == due.administration_id)
            .where(
                due.dose_plan_id == p.id,
                due.due_at >= cutoff,
                due.due_at <= now,
                given.status == "completed",
                ~select(later.administration_id)
                .join(later_admin, later_admin.id == later.administration_id)
                .where(
                    later.dose_plan_id == p.id,
                    later.due_at == due.due_at,
                    later.administration_id > due.administration_id,
                    later_admin.status != "completed",
                )
                # Two levels down: name what it refers to (auto-correlation is one level only).
                .correlate(p, due)
                .exists(),
            )
            .exists()
        )
        reported_recently = (
            select(s.id)
            .where(
                s.dose_plan_id == p.id,
                s.due_at >= cutoff,
                s.due_at <= now,
                s.taken.is_(True),
                ~select(linked.administration_id)
                .where(linked.dose_plan_id == p.id, linked.due_at == s.due_at)
                .correlate(p, s)
                .exists(),
                # An administration linked to no planned dose may be matched to this one.
                ~select(other.id)
                .where(
                    other.patient_id == p.patient_id,
                    other.dose_plan_id == p.id,
                    other.administered_at >= cutoff - MATCH_WINDOW,
                    other.administered_at <= now + MATCH_WINDOW,
                    ~select(unlinked.administration_id)
                    .where(unlinked.administration_id == other.id)
                    .exists(),
                )
                .correlate(p)
                .exists(),
            )
            .exists()
        )
        found += access.db.scalars(
            select(p.id)
            .where(
                p.medication_id == medication_id,
                p.status == "active",
                # ends_on is a program's calendar day: the exact test is `_missed_run`'s.
                or_(p.ends_on.is_(None), p.ends_on >= (now - timedelta(days=1)).date()),
                p.start_date <= (now + timedelta(days=1)).date(),
                visible(access, PLAN, p.patient_id, p.program_id),
                ~given_recently,
                ~reported_recently,
            )
            .order_by(p.id)
        )
    return sorted(found)


def _lines(db: Session, plan_ids: Sequence[int]) -> list[_PlanLine]:
    p = DosePlanRow
    rows = db.execute(
        select(
            p.id,
            p.patient_id,
            Patient.program_id,
            p.medication_id,
            p.status,
            p.ends_on,
            p.created_at,
            Program.time_zone,
            cast(p.plan, Text),
        )
        .join(Patient, Patient.id == p.patient_id)
        .join(Program, Program.id == Patient.program_id)
        .where(p.id.in_(plan_ids))
        .order_by(p.id)
    )
    return [_PlanLine(*row[:8], stored_plan(row[8])) for row in rows]


def _histories(db: Session, plan_ids: Sequence[int]) -> dict[int, list[DoseRecord]]:
    """Every record against these plans (as `dose_calendar.recorded_doses` reads one plan's),
    in two statements for the lot."""
    a, d, s = MedicationAdministrationRow, AdministrationDueRow, MedicationStatementRow
    out: dict[int, list[DoseRecord]] = defaultdict(list)
    for admin_id, plan_id, status, at, due_at in db.execute(
        select(a.id, a.dose_plan_id, a.status, a.administered_at, d.due_at)
        .outerjoin(d, d.administration_id == a.id)
        .where(a.dose_plan_id.in_(plan_ids))
    ):
        assert plan_id is not None
        out[plan_id].append(
            DoseRecord("administration", admin_id, status == "completed", at, due_at)
        )
    for report_id, plan_id, taken, due_at in db.execute(
        select(s.id, s.dose_plan_id, s.taken, s.due_at).where(s.dose_plan_id.in_(plan_ids))
    ):
        out[plan_id].append(DoseRecord("statement", report_id, taken, due_at, due_at))
    return out


def _last_changes(db: Session, plan_ids: Sequence[int]) -> dict[int, datetime]:
    """For each plan, the last time one of its records can change its doses' states: when it
    was written, or when the dose it may stand for falls due (a dose may be given up to
    GIVEN_WINDOW before it is due; a report names its dose)."""
    a, s = MedicationAdministrationRow, MedicationStatementRow
    out: dict[int, datetime] = {}
    for plan_id, recorded, given in db.execute(
        select(a.dose_plan_id, func.max(a.recorded_at), func.max(a.administered_at))
        .where(a.dose_plan_id.in_(plan_ids))
        .group_by(a.dose_plan_id)
    ):
        assert plan_id is not None
        out[plan_id] = max(recorded, given + GIVEN_WINDOW)
    for plan_id, reported, due in db.execute(
        select(s.dose_plan_id, func.max(s.reported_at), func.max(s.due_at))
        .where(s.dose_plan_id.in_(plan_ids))
        .group_by(s.dose_plan_id)
    ):
        last = max(reported, due)
        out[plan_id] = max(out.get(plan_id, last), last)
    return out


def _alerted_since(db: Session, patient_ids: Iterable[str]) -> dict[str, datetime]:
    """The latest missed-dose alert of each plan of these patients, by plan id (as alerts
    name it)."""
    rows = db.execute(
        select(Alert.related_id, func.max(Alert.raised_at))
        .where(
            Alert.patient_id.in_(sorted(set(patient_ids))),
            Alert.kind == KIND,
            Alert.related_type == PLAN,
        )
        .group_by(Alert.related_id)
    )
    return {related_id: at for related_id, at in rows if related_id is not None}


def sweep_missed_doses(access: Access, now: datetime | None = None) -> list[Alert]:
    """Check every active plan the actor may see for a missed run (run it on a schedule).
    Audited as one search of plans; it shows nobody a record (each alert raised is audited).

    Set-based: one statement finds the plans that can have reached a run (`due_for_check`);
    a plan alerted for its run with no record since that could end it is left there; the
    others' calendars and records are read a few hundred plans per statement, and only the
    pure check runs per plan."""
    now = now or utcnow()
    access.require(Permission.SEARCH, PLAN)
    raised = []
    plan_ids = due_for_check(access, now)
    for first in range(0, len(plan_ids), CHUNK):
        chunk = plan_ids[first : first + CHUNK]
        owners = access.db.execute(
            select(DosePlanRow.patient_id).where(DosePlanRow.id.in_(chunk))
        ).scalars()
        alerted = _alerted_since(access.db, owners)
        changes = _last_changes(access.db, chunk)
        todo = []
        for plan_id in chunk:
            last, changed = alerted.get(str(plan_id)), changes.get(plan_id)
            if last is not None and (changed is None or changed <= last):
                # Raised for a run, and no record since can have ended it: time only adds
                # missed doses to that run, which was alerted once already.
                continue
            todo.append(plan_id)
        if not todo:
            continue
        histories = _histories(access.db, todo)
        for line in _lines(access.db, todo):
            found = _missed_run(line, histories.get(line.plan_id, ()), now)
            if found is None:
                continue
            last = alerted.get(str(line.plan_id))
            if last is not None and last >= found.since:
                continue  # raised once for this run already
            raised.append(_raise(access, line, found, now))
    access.audit("search", resource_type=PLAN, query="missed-dose sweep")
    return raised


def sweep_missed_doses_everywhere(sessions: sessionmaker[Session], now: datetime) -> int:
    """The scheduled job: `sweep_missed_doses` over every program. Returns alerts raised."""
    with session_scope(sessions) as db:
        return len(sweep_missed_doses(system_access(db, sessions, JOB), now))


def open_missed_dose_alerts(access: Access, patient: Patient) -> list[Alert]:
    """The patient's unacknowledged missed-dose alerts, newest first."""
    return patient_rows(
        access,
        ALERT,
        Alert,
        select(Alert)
        .where(Alert.kind == KIND, Alert.acknowledged_at.is_(None))
        .order_by(Alert.raised_at.desc()),
        patient,
        "missed_doses open",
    )
