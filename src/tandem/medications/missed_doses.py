"""The missed-dose alert: raised for the prescriber when a plan's doses go missed (or
unrecorded) in a run as long as the monograph's threshold, once per run. Checked whenever a
dose is recorded, and swept over every active plan on a schedule (`sweep_missed_doses_everywhere`,
a job in the medications DOMAIN; `tandem med sweep` runs it by hand).

The sweep keeps, per plan, the earliest time its next alert can fall due
(`MissedDoseCheckRow`), valid while the plan's records are the ones it was computed from (its
`PlanRecordsRow.records_version`, counted up by triggers on every write to its records); each
sweep looks only at the plans without a valid one."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple, cast

from sqlalchemy import Select, Table, bindparam, delete, func, insert, or_, select
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
from tandem.medications.plans import plan_of, plans_by_id
from tandem.medications.resources import ALERT, PLAN
from tandem.medications.schedule import (
    DEFAULT_SLOT_TIMES,
    MATCH_WINDOW,
    UNRECORDED_GRACE,
    CalendarDose,
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
    MissedDoseCheckRow,
    PlanRecordsRow,
)
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
    return _run_in(line, _doses(line, records, now, program_today(line.time_zone, now)), now)


def _doses(
    line: _PlanLine, records: Iterable[DoseRecord], now: datetime, through: date
) -> list[CalendarDose]:
    tz = zone(line.time_zone)
    planned = planned_through(line.plan, through, tz, line.ends_on)
    return dose_states(planned, records, now, tz, written_at=line.created_at)


def _run_in(line: _PlanLine, doses: Sequence[CalendarDose], now: datetime) -> MissedRunAlert | None:
    """`_missed_run` on the plan's doses through today or later: the doses due after `now`
    do not count, and a dose's state is decided by its own day's records."""
    today = program_today(line.time_zone, now)
    if line.status != "active" or (line.ends_on is not None and line.ends_on <= today):
        return None  # `plans.effective_status`: stopped, or a taper past its stop date
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


class _Candidate(NamedTuple):
    plan_id: int
    medication_id: str
    records_version: int
    time_zone: str  # the patient's program's: the plan's doses fall on its clock


def _active(access: Access, now: datetime, rules: str | None = None) -> list[_Candidate]:
    """The active plans of medications with a missed-run threshold that the actor may see;
    with `rules`, only those without a stored check valid at `now`: made under these rules,
    on the plan's records as they are (its records_version), on the clock of the patient's
    program as it is."""
    p, c, r = DosePlanRow, MissedDoseCheckRow, PlanRecordsRow
    version = func.coalesce(r.records_version, 0)
    query = (
        select(p.id, p.medication_id, version, Program.time_zone)
        .join(Patient, Patient.id == p.patient_id)
        .join(Program, Program.id == Patient.program_id)
        .outerjoin(r, r.dose_plan_id == p.id)
        .where(
            p.medication_id.in_(sorted(thresholds())),
            p.status == "active",
            # ends_on is a program's calendar day: the exact test is `_missed_run`'s.
            or_(p.ends_on.is_(None), p.ends_on >= (now - timedelta(days=1)).date()),
            p.start_date <= (now + timedelta(days=1)).date(),
            visible(access, PLAN, p.patient_id, p.program_id),
        )
    )
    if rules is not None:
        query = query.where(
            ~select(c.dose_plan_id)
            .where(
                c.dose_plan_id == p.id,
                c.records_version == version,
                c.time_zone == Program.time_zone,
                c.basis == rules,
                c.checked_at <= now,
                c.next_check_at > now,
            )
            .exists()
        )
    return [_Candidate(*row) for row in access.db.execute(query.order_by(p.id))]


def _quiet_until(db: Session, plans: Sequence[_Candidate], now: datetime) -> dict[int, datetime]:
    """The plans that cannot have reached a run of missed doses by `now`, each with the time
    until which that stays so if nothing more is recorded: a plan with a dose certainly taken
    at `due`, and `due` no earlier than `now - _shortest_span(T)`, cannot alert before
    `due + _shortest_span(T)`.

    A run of T missed doses ending at t follows the last dose taken, so T more planned doses
    fit between that dose and t: at least `_shortest_span(T)`. A dose is certainly taken when
    the record that decides its state (`schedule.dose_states`) says so: the latest
    administration linked to that planned dose, given; or a patient's report of it taken with
    no administration that could stand for that dose instead (none linked to it, and none of
    the plan's unlinked ones given from `now - _shortest_span(T) - MATCH_WINDOW` on, at any
    later time: so the answer holds for every t until the time returned)."""
    limits = thresholds()
    by_medication: dict[str, list[int]] = defaultdict(list)
    for plan in plans:
        by_medication[plan.medication_id].append(plan.plan_id)
    out: dict[int, datetime] = {}
    for medication_id, plan_ids in sorted(by_medication.items()):
        span = _shortest_span(limits[medication_id])
        cutoff = now - span
        params = {
            "plan_ids": plan_ids,
            "cutoff": cutoff,
            "now": now,
            "unlinked_from": cutoff - MATCH_WINDOW,
        }
        for query in (_GIVEN_RECENTLY, _REPORTED_RECENTLY):
            for plan_id, taken_due in db.execute(query, params):
                until = taken_due + span
                out[plan_id] = max(out.get(plan_id, until), until)
    return out


def _taken_recently() -> tuple[Select[int, datetime], Select[int, datetime]]:
    """`_quiet_until`'s two statements, built once (their parameters: plan_ids, cutoff, now,
    unlinked_from)."""
    due, given, later, later_admin = (
        aliased(AdministrationDueRow),
        aliased(MedicationAdministrationRow),
        aliased(AdministrationDueRow),
        aliased(MedicationAdministrationRow),
    )
    s = MedicationStatementRow
    linked, other = aliased(AdministrationDueRow), aliased(MedicationAdministrationRow)
    unlinked = aliased(AdministrationDueRow)
    given_recently = (
        select(due.dose_plan_id, func.max(due.due_at))
        .join(given, given.id == due.administration_id)
        .where(
            due.dose_plan_id.in_(bindparam("plan_ids", expanding=True)),
            due.due_at >= bindparam("cutoff"),
            due.due_at <= bindparam("now"),
            given.status == "completed",
            ~select(later.administration_id)
            .join(later_admin, later_admin.id == later.administration_id)
            .where(
                later.dose_plan_id == due.dose_plan_id,
                later.due_at == due.due_at,
                later.administration_id > due.administration_id,
                later_admin.status != "completed",
            )
            .exists(),
        )
        .group_by(due.dose_plan_id)
    )
    reported_recently = (
        select(s.dose_plan_id, func.max(s.due_at))
        .where(
            s.dose_plan_id.in_(bindparam("plan_ids", expanding=True)),
            s.due_at >= bindparam("cutoff"),
            s.due_at <= bindparam("now"),
            s.taken.is_(True),
            ~select(linked.administration_id)
            .where(linked.dose_plan_id == s.dose_plan_id, linked.due_at == s.due_at)
            .exists(),
            # An administration linked to no planned dose may be matched to this one.
            ~select(other.id)
            .where(
                other.dose_plan_id == s.dose_plan_id,
                other.administered_at >= bindparam("unlinked_from"),
                ~select(unlinked.administration_id)
                .where(unlinked.administration_id == other.id)
                .exists(),
            )
            .exists(),
        )
        .group_by(s.dose_plan_id)
    )
    return given_recently, reported_recently


_GIVEN_RECENTLY, _REPORTED_RECENTLY = _taken_recently()


def due_for_check(access: Access, now: datetime) -> list[int]:
    """The active plans that can have reached a run of missed doses by `now`: only
    medications with a threshold, and not a plan with a dose certainly taken too recently for
    `threshold` missed doses to have followed it (`_quiet_until`). Plans left in are checked
    in full (`_missed_run`); a plan left out could not alert."""
    found: list[int] = []
    plans = _active(access, now)
    for first in range(0, len(plans), CHUNK):
        chunk = plans[first : first + CHUNK]
        quiet = _quiet_until(access.db, chunk, now)
        found += [plan.plan_id for plan in chunk if plan.plan_id not in quiet]
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
            p.plan_digest,
        )
        .join(Patient, Patient.id == p.patient_id)
        .join(Program, Program.id == Patient.program_id)
        .where(p.id.in_(bindparam("plan_ids", expanding=True)))
        .order_by(p.id),
        {"plan_ids": list(plan_ids)},
    ).all()
    calendars = plans_by_id(db, [(row[0], row[8]) for row in rows])
    return [_PlanLine(*row[:8], calendars[row[0]][1]) for row in rows]


def _histories(db: Session, plan_ids: Sequence[int]) -> dict[int, list[DoseRecord]]:
    """Every record against these plans (as `dose_calendar.recorded_doses` reads one plan's),
    in two statements for the lot."""
    a, d, s = MedicationAdministrationRow, AdministrationDueRow, MedicationStatementRow
    ids = {"plan_ids": list(plan_ids)}
    out: dict[int, list[DoseRecord]] = defaultdict(list)
    for admin_id, plan_id, status, at, due_at in db.execute(
        select(a.id, a.dose_plan_id, a.status, a.administered_at, d.due_at)
        .outerjoin(d, d.administration_id == a.id)
        .where(a.dose_plan_id.in_(bindparam("plan_ids", expanding=True))),
        ids,
    ):
        assert plan_id is not None
        out[plan_id].append(
            DoseRecord("administration", admin_id, status == "completed", at, due_at)
        )
    for report_id, plan_id, taken, due_at in db.execute(
        select(s.id, s.dose_plan_id, s.taken, s.due_at).where(
            s.dose_plan_id.in_(bindparam("plan_ids", expanding=True))
        ),
        ids,
    ):
        out[plan_id].append(DoseRecord("statement", report_id, taken, due_at, due_at))
    return out


def _alerted_since(db: Session, patient_ids: Iterable[str]) -> dict[str, datetime]:
    """The latest missed-dose alert of each plan of these patients, by plan id (as alerts
    name it)."""
    rows = db.execute(
        select(Alert.related_id, func.max(Alert.raised_at))
        .where(
            Alert.patient_id.in_(bindparam("patient_ids", expanding=True)),
            Alert.kind == KIND,
            Alert.related_type == PLAN,
        )
        .group_by(Alert.related_id),
        {"patient_ids": sorted(set(patient_ids))},
    )
    return {related_id: at for related_id, at in rows if related_id is not None}


# How far ahead a check looks for the plan's next alert; a plan with none in sight is looked at
# again after this long (or as soon as something is recorded against it).
HORIZON = timedelta(days=2)
# Counted up whenever what a stored check means changes (the rules below are in it too).
_CHECK_VERSION = 1


def _rules() -> str:
    """What a stored check was computed under: a check made under other rules (thresholds,
    the unrecorded grace, the slot times) is not used."""
    limits = ",".join(f"{m}={t}" for m, t in sorted(thresholds().items()))
    slots = ",".join(f"{k}={v:%H:%M}" for k, v in sorted(DEFAULT_SLOT_TIMES.items()))
    grace, horizon = UNRECORDED_GRACE.total_seconds(), HORIZON.total_seconds()
    return f"v{_CHECK_VERSION};{limits};grace={grace:.0f};{slots};horizon={horizon:.0f}"


def _horizon_day(line: _PlanLine, now: datetime) -> date:
    """The last day whose doses `_next_alert_at` needs: through the horizon and the grace
    after it (a dose's state is decided by that day's doses only: an unlinked record matches
    a dose of its own day)."""
    return (now + HORIZON + UNRECORDED_GRACE).astimezone(zone(line.time_zone)).date()


def _next_alert_at(
    line: _PlanLine, doses: Sequence[CalendarDose], now: datetime, alerted: datetime | None
) -> datetime:
    """The earliest time after `now`, and no later than `now + HORIZON`, at which the plan can
    raise a missed-run alert if nothing more is recorded against it (`alerted`: its latest
    alert, which silences the run it was raised for).

    With the records fixed, what the check sees changes only when a dose enters its count: a
    recorded dose when it falls due, an unrecorded one `UNRECORDED_GRACE` after (then missed);
    so the check is run at each of those times, on the same doses and states as
    `_missed_run` (a dose's state does not depend on the time but for due or not yet). Whether
    the plan is still active is left out: that only takes alerts away."""
    limit = now + HORIZON
    threshold = thresholds().get(line.medication_id)
    if threshold is None or line.status != "active":
        return limit
    # (due, when it enters the count, missed); `doses` run through `_horizon_day`.
    events: list[tuple[datetime, datetime, bool]] = []
    for d in doses:
        if d.state == "before_plan":
            continue
        due_at = d.planned.due_at
        if d.record is None:
            events.append((due_at, due_at + UNRECORDED_GRACE, True))
        else:
            events.append((due_at, due_at, d.state in ("missed", "not_given")))
    events.sort()
    for at in sorted({enters for _due, enters, _missed in events if now < enters <= limit}):
        run: list[datetime] = []
        for due_at, enters, missed in reversed(events):
            if due_at > at or enters > at:
                continue  # not yet in the count at `at`
            if not missed:
                break
            run.append(due_at)
        if len(run) >= threshold and (alerted is None or alerted < run[-1]):
            return at
    return limit


_CHECKS = cast(Table, MissedDoseCheckRow.__table__)  # rows inserted in bulk, never loaded


def _store_checks(
    db: Session,
    checks: dict[int, datetime],
    plans: dict[int, _Candidate],
    now: datetime,
    rules: str,
) -> None:
    if not checks:
        return
    c = MissedDoseCheckRow
    ids = sorted(checks)
    db.execute(
        delete(c).where(c.dose_plan_id.in_(bindparam("plan_ids", expanding=True))),
        {"plan_ids": ids},
    )
    db.execute(
        insert(_CHECKS),
        [
            {
                "dose_plan_id": plan_id,
                "checked_at": now,
                "next_check_at": checks[plan_id],
                "records_version": plans[plan_id].records_version,
                "time_zone": plans[plan_id].time_zone,
                "basis": rules,
            }
            for plan_id in ids
        ],
    )


def sweep_missed_doses(access: Access, now: datetime | None = None) -> list[Alert]:
    """Check every active plan the actor may see for a missed run (run it on a schedule).
    Audited as one search of plans; it shows nobody a record (each alert raised is audited).

    Set-based, and only what may have changed: one statement finds the plans with no stored
    check valid now (`_active` with the rules); of those, the ones with a dose certainly taken
    too recently to alert (`_quiet_until`) are stored as quiet until then; the others'
    calendars and records are read a few hundred plans per statement, the pure check runs per
    plan, and the time its next alert can fall due is stored (`_next_alert_at`). The records'
    version is read before the records, so a record written meanwhile makes the stored check
    stale, never wrong."""
    now = now or utcnow()
    access.require(Permission.SEARCH, PLAN)
    rules = _rules()
    raised = []
    plans = _active(access, now, rules)
    for first in range(0, len(plans), CHUNK):
        chunk = plans[first : first + CHUNK]
        by_id = {plan.plan_id: plan for plan in chunk}
        checks = _quiet_until(access.db, chunk, now)
        todo = [plan.plan_id for plan in chunk if plan.plan_id not in checks]
        if todo:
            lines = _lines(access.db, todo)
            alerted = _alerted_since(access.db, (line.patient_id for line in lines))
            histories = _histories(access.db, todo)
            for line in lines:
                records = histories.get(line.plan_id, [])
                doses = _doses(line, records, now, _horizon_day(line, now))
                last = alerted.get(str(line.plan_id))
                found = _run_in(line, doses, now)
                if found is not None and (last is None or last < found.since):
                    raised.append(_raise(access, line, found, now))
                    last = now if last is None else max(last, now)
                checks[line.plan_id] = _next_alert_at(line, doses, now, last)
        _store_checks(access.db, checks, by_id, now, rules)
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
