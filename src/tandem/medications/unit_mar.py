"""The unit's medication administration record (MAR): every planned dose due in a shift across
the programs a nurse works in, one list by due time, overdue doses marked; and a dose recorded
from it as given, held or refused (held and refused with the reason).

Reads go through the data-access layer (`visible`, `audit_shown`, `load_patient`): the list
records every patient it showed. The doses and their states are the chart's (`schedule`'s
planned doses and `dose_states`, the missed-dose grace); a dose is written by
`doses.record_administration`, the one writer of a plan's doses given.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from sqlalchemy import bindparam, or_, select
from sqlalchemy.orm import Session

from tandem.access.guard import Access
from tandem.access.policy import PatientRef, Permission, decide
from tandem.access.queries import audit_shown, load_patient, visible
from tandem.clock import utcnow, zone
from tandem.errors import InvalidInput
from tandem.medications.adherence import PlannedDose, planned_doses
from tandem.medications.dose_plan import DosePlan
from tandem.medications.doses import record_administration
from tandem.medications.errors import ImplausibleValue
from tandem.medications.monograph import load_monograph
from tandem.medications.plans import plan_of, plans_by_id
from tandem.medications.resources import ADMINISTRATION, PLAN, STATEMENT
from tandem.medications.schedule import (
    DEFAULT_SLOT_TIMES,
    MATCH_WINDOW,
    UNRECORDED_GRACE,
    CalendarDose,
    DoseRecord,
    days_through,
    dose_states,
)
from tandem.medications.shifts import (
    DEFAULT_SHIFT_STARTS,
    DEFAULT_SOURCE,
    PROGRAM_SOURCE,
    SHIFTS,
    Shift,
    ShiftTimes,
    parse_shift_starts,
    shift_at,
)
from tandem.medications.storage import (
    AdministrationDueRow,
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationStatementRow,
    ShiftSettingRow,
    plan_digest,
)
from tandem.medications.validation import GIVEN_WINDOW, check_note, recordable
from tandem.storage.models import (
    Patient,
    PatientIdentifier,
    Program,
    User,
    display_name,
    mrn_of,
    mrn_system_of,
)

__all__ = [
    "OUTCOMES",
    "DueDose",
    "ProgramShift",
    "UnitRecord",
    "due_dose",
    "program_shift_times",
    "record_from_unit",
    "set_program_shifts",
    "unit_record",
]

Outcome = Literal["given", "held", "refused"]
# What a nurse records from the list; held and refused are doses not given, with the reason.
OUTCOMES: dict[str, str] = {"given": "Given", "held": "Held", "refused": "Refused by the patient"}


@dataclass(frozen=True)
class ProgramShift:
    program_id: int
    program_name: str
    time_zone: str
    times: ShiftTimes
    shift: Shift


@dataclass(frozen=True)
class DueDose:
    """One planned dose in the list, with what was recorded and what may be done now."""

    patient_id: str
    patient_name: str
    mrn: str | None
    program_name: str
    plan_id: int
    medication: str
    dose: CalendarDose
    due_local: datetime
    overdue: bool  # due, nothing recorded (the chart's "no record")
    counts_missed: bool  # overdue past the missed-dose grace (counts toward a missed run)
    recorded: str  # what was recorded, as the list says it ("" when nothing)
    recordable: bool  # may be recorded from the list now (given or not, at this time)
    may_record: bool  # the policy lets the actor record this patient's doses

    @property
    def key(self) -> str:
        return f"dose-{self.plan_id}-{int(self.dose.planned.due_at.timestamp())}"

    @property
    def due_at(self) -> datetime:
        return self.dose.planned.due_at

    @property
    def mg(self) -> float:
        return self.dose.planned.mg

    @property
    def state(self) -> str:
        return self.dose.state

    @property
    def actionable(self) -> bool:
        return self.may_record and self.recordable and self.dose.record is None


@dataclass(frozen=True)
class UnitRecord:
    which: str
    shifts: list[ProgramShift]
    doses: list[DueDose]

    @property
    def overdue(self) -> int:
        return sum(1 for d in self.doses if d.overdue)

    @property
    def may_record(self) -> bool:
        return any(d.may_record for d in self.doses)


# --------------------------------------------------------------------------- shift settings


def program_shift_times(rows: dict[int, ShiftSettingRow], program_id: int) -> ShiftTimes:
    row = rows.get(program_id)
    if row is None:
        return ShiftTimes(DEFAULT_SHIFT_STARTS, DEFAULT_SOURCE)
    return parse_shift_starts(row.shift_starts, row.source)


def set_program_shifts(
    db: Session, program_id: int, text: str, source: str = PROGRAM_SOURCE, by: int | None = None
) -> ShiftSettingRow:
    """Set a program's shift start times (e.g. "07:00 19:00"): a program setting, kept with its
    source. For the operator's command and the demo (the caller audits)."""
    times = parse_shift_starts(text, check_note("source", source, "source") or PROGRAM_SOURCE)
    row = db.get(ShiftSettingRow, program_id)
    if row is None:
        row = ShiftSettingRow(program_id=program_id)
        db.add(row)
    row.shift_starts = times.text
    row.source = times.source
    row.set_at = utcnow()
    row.set_by = by
    db.flush()
    return row


# --------------------------------------------------------------------------- the list


def _offset(which: str) -> int:
    if which not in SHIFTS:
        raise InvalidInput("shift", f"choose one of {', '.join(SHIFTS)}")
    return SHIFTS[which]


_PROGRAM_SHIFTS = (
    select(
        Program.id,
        Program.name,
        Program.time_zone,
        ShiftSettingRow.shift_starts,
        ShiftSettingRow.source,
    )
    .outerjoin(ShiftSettingRow, ShiftSettingRow.program_id == Program.id)
    .where(Program.id.in_(bindparam("program_ids", expanding=True)))
    .order_by(Program.name, Program.id)
)


def _shifts(access: Access, which: str, now: datetime) -> list[ProgramShift]:
    """The actor's programs with their shift times (one statement)."""
    programs = sorted(access.visibility(PLAN).program_ids)
    if not programs:
        return []
    out = []
    rows = access.db.execute(_PROGRAM_SHIFTS, {"program_ids": programs})
    for program_id, name, time_zone, starts, source in rows:
        times = (
            ShiftTimes(DEFAULT_SHIFT_STARTS, DEFAULT_SOURCE)
            if starts is None
            else parse_shift_starts(starts, source)
        )
        shift = shift_at(times, now, zone(time_zone), _offset(which))
        out.append(ProgramShift(program_id, name, time_zone, times, shift))
    return out


@dataclass(frozen=True)
class _Given:
    """What the list says of a dose given or not given: who recorded it, and why not."""

    performer_id: int | None
    performer_name: str | None
    status_reason: str


def _records(
    access: Access, plan_ids: Sequence[int], start: datetime, end: datetime
) -> tuple[dict[int, list[DoseRecord]], dict[int, _Given], set[str], set[str]]:
    """What was recorded against these plans' doses near `start`..`end`, by plan: the nurses'
    administrations (with the planned dose each was) and the patients' reports. Columns, not
    entities: the list reads a few hundred of them on every view."""
    by_plan: dict[int, list[DoseRecord]] = defaultdict(list)
    admins: dict[int, _Given] = {}
    if not plan_ids:
        return by_plan, admins, set(), set()
    m = MedicationAdministrationRow
    # A dose given is within GIVEN_WINDOW of its planned time; an unlinked one matches a
    # planned dose within MATCH_WINDOW: either way within the wider of the two.
    margin = max(GIVEN_WINDOW, MATCH_WINDOW)
    ids = {"plan_ids": sorted(plan_ids)}
    given = access.db.execute(
        select(
            m.id,
            m.dose_plan_id,
            m.patient_id,
            m.status,
            m.status_reason,
            m.administered_at,
            m.performer_id,
            AdministrationDueRow.due_at,
            User.display_name,
        )
        .outerjoin(AdministrationDueRow, AdministrationDueRow.administration_id == m.id)
        .outerjoin(User, User.id == m.performer_id)
        .where(
            m.dose_plan_id.in_(bindparam("plan_ids", expanding=True)),
            m.administered_at >= start - margin,
            m.administered_at < end + margin,
            visible(access, ADMINISTRATION, m.patient_id, m.program_id),
        ),
        ids,
    ).all()
    admin_patients: set[str] = set()
    for admin_id, plan_id, patient_id, status, reason, at, performer, due_at, name in given:
        assert plan_id is not None
        admins[admin_id] = _Given(performer, name, reason)
        admin_patients.add(patient_id)
        by_plan[plan_id].append(
            DoseRecord("administration", admin_id, status == "completed", at, due_at)
        )
    s = MedicationStatementRow
    reports = access.db.execute(
        select(s.id, s.dose_plan_id, s.patient_id, s.taken, s.due_at).where(
            s.dose_plan_id.in_(bindparam("plan_ids", expanding=True)),
            s.due_at >= start,
            s.due_at < end,
            visible(access, STATEMENT, s.patient_id, s.program_id),
        ),
        ids,
    ).all()
    statement_patients: set[str] = set()
    for report_id, plan_id, patient_id, taken, due_at in reports:
        statement_patients.add(patient_id)
        by_plan[plan_id].append(DoseRecord("statement", report_id, taken, due_at, due_at))
    return by_plan, admins, admin_patients, statement_patients


def _recorded_text(dose: CalendarDose, admins: dict[int, _Given], time_zone: str) -> str:
    record = dose.record
    if record is None:
        return ""
    at = record.at.astimezone(zone(time_zone))
    if record.kind == "statement":
        return "reported taken by the patient" if record.taken else "reported missed by the patient"
    row = admins.get(record.record_id)
    who = f" by {row.performer_name}" if row is not None and row.performer_name is not None else ""
    if record.taken:
        return f"given {at:%H:%M}{who}"
    reason = row.status_reason if row is not None else ""
    return f"{reason or 'not given'} ({at:%H:%M}{who})"


def _plan_around(plan: DosePlan, first: date, last: date) -> DosePlan:
    """The plan with only the days a shift from `first` to `last` needs: those days, and the
    plan's last day (a continuing plan repeats it)."""
    keep = [d for d in plan.days if first <= d.date <= last]
    if plan.days and (not keep or keep[-1] is not plan.days[-1]):
        keep.append(plan.days[-1])
    return dataclasses.replace(plan, days=tuple(keep))


@dataclass(frozen=True)
class _PlanLine:
    """What the list needs of one stored plan and its patient (columns, not entities)."""

    plan_id: int
    patient_id: str
    program_id: int  # the patient's program
    medication_id: str
    ends_on: date | None
    created_at: datetime
    key: bytes | str  # the calendar's content key (`plans.plans_by_id`)
    plan: DosePlan
    patient_name: str
    mrn: str | None

    @classmethod
    def of(cls, row: DosePlanRow, patient: Patient) -> _PlanLine:
        return cls(
            row.id,
            patient.id,
            patient.program_id,
            row.medication_id,
            row.ends_on,
            row.created_at,
            row.plan_digest or plan_digest(row.plan),
            plan_of(row),
            patient.display_name,
            patient.mrn,
        )


# Each plan's planned doses in a shift, by the calendar's content key, the day the plan gave
# way, the program's zone and the shift: all that decides them, so an entry is never stale (a
# stored calendar never changes; a stopped plan's new `ends_on` is a new key). What was
# recorded against the doses is read on every view and never kept here. Bounded: the unit's
# plans in three shifts, for a few hundred beds.
_WINDOW_LIMIT = 8192
_windows: OrderedDict[tuple[object, ...], tuple[PlannedDose, ...]] = OrderedDict()
_windows_lock = threading.Lock()


def _shift_doses(line: _PlanLine, program: ProgramShift) -> tuple[PlannedDose, ...]:
    """The plan's planned doses in the program's shift, computed once per process."""
    shift = program.shift
    key = (line.key, line.ends_on, program.time_zone, shift.start, shift.end)
    with _windows_lock:
        found = _windows.get(key)
        if found is not None:
            _windows.move_to_end(key)
            return found
    first, last = shift.days
    plan = _plan_around(line.plan, first, last)
    days = [d for d in days_through(plan, last, line.ends_on) if first <= d.date <= last]
    planned: tuple[PlannedDose, ...] = ()
    if days:
        tz = zone(program.time_zone)
        planned = tuple(
            p
            for p in planned_doses(
                dataclasses.replace(plan, days=tuple(days)), DEFAULT_SLOT_TIMES, tz
            )
            if shift.holds(p.due_at)
        )
    with _windows_lock:
        _windows[key] = planned
        if len(_windows) > _WINDOW_LIMIT:
            _windows.popitem(last=False)
    return planned


def _doses(
    access: Access,
    plans: Iterable[_PlanLine],
    shifts: dict[int, ProgramShift],
    now: datetime,
    only_due: datetime | None = None,
) -> tuple[list[DueDose], set[str], set[str]]:
    pairs = list(plans)
    if not pairs:
        return [], set(), set()
    start = min(shifts[line.program_id].shift.start for line in pairs)
    end = max(shifts[line.program_id].shift.end for line in pairs)
    records, admins, admin_patients, statement_patients = _records(
        access, [line.plan_id for line in pairs], start, end
    )
    out: list[DueDose] = []
    for line in pairs:
        program = shifts[line.program_id]
        planned = _shift_doses(line, program)
        if only_due is not None:
            planned = tuple(p for p in planned if p.due_at == only_due)
        if not planned:
            continue
        tz = zone(program.time_zone)
        mono = load_monograph(line.medication_id)
        may = bool(
            decide(
                access.actor,
                Permission.CREATE,
                ADMINISTRATION,
                PatientRef(line.patient_id, line.program_id),
            )
        )
        for dose in dose_states(
            planned, records.get(line.plan_id, ()), now, tz, written_at=line.created_at
        ):
            if dose.state == "before_plan":
                continue  # due before the plan was written: nobody was asked to give it
            overdue = dose.state == "unrecorded"
            out.append(
                DueDose(
                    patient_id=line.patient_id,
                    patient_name=line.patient_name,
                    mrn=line.mrn,
                    program_name=program.program_name,
                    plan_id=line.plan_id,
                    medication=mono.name,
                    dose=dose,
                    due_local=dose.planned.due_at.astimezone(tz),
                    overdue=overdue,
                    counts_missed=overdue and now - dose.planned.due_at >= UNRECORDED_GRACE,
                    recorded=_recorded_text(dose, admins, program.time_zone),
                    recordable=recordable(dose.planned.due_at, now)
                    and abs(now - dose.planned.due_at) <= GIVEN_WINDOW,
                    may_record=may,
                )
            )
    out.sort(key=lambda d: (d.due_at, d.patient_name, d.medication, d.plan_id))
    return out, admin_patients, statement_patients


_IDENTIFIERS = (
    select(PatientIdentifier.patient_id, PatientIdentifier.system, PatientIdentifier.value)
    .where(PatientIdentifier.patient_id.in_(bindparam("patient_ids", expanding=True)))
    .order_by(PatientIdentifier.id)
)


def _plans_in(access: Access, shifts: Sequence[ProgramShift]) -> list[_PlanLine]:
    """The plans with doses in the shifts' days that the actor may see, with their patients'
    names and record numbers: two statements, whatever the number of plans, and a third for
    the calendars this process has not parsed yet (`plans.plans_by_id`)."""
    if not shifts:
        return []
    first = min(s.shift.days[0] for s in shifts)
    last = max(s.shift.days[1] for s in shifts)
    p = DosePlanRow
    rows = access.db.execute(
        select(
            p.id,
            p.patient_id,
            Patient.program_id,
            p.medication_id,
            p.ends_on,
            p.created_at,
            p.plan_digest,
            Patient.family,
            Patient.given,
            Program.code,
        )
        .join(Patient, Patient.id == p.patient_id)
        .join(Program, Program.id == Patient.program_id)
        .where(
            p.start_date <= last,
            or_(p.ends_on.is_(None), p.ends_on > first),
            visible(access, PLAN, p.patient_id, p.program_id),
        )
        .order_by(p.id)
    ).all()
    if not rows:
        return []
    identifiers: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for patient_id, system, value in access.db.execute(
        _IDENTIFIERS, {"patient_ids": sorted({r[1] for r in rows})}
    ):
        identifiers[patient_id].append((system, value))
    calendars = plans_by_id(access.db, [(r[0], r[6]) for r in rows])
    return [
        _PlanLine(
            plan_id,
            patient_id,
            program_id,
            medication_id,
            ends_on,
            created_at,
            *calendars[plan_id],
            display_name(family, given),
            mrn_of(identifiers.get(patient_id, ()), mrn_system_of(code)),
        )
        for (
            plan_id,
            patient_id,
            program_id,
            medication_id,
            ends_on,
            created_at,
            _digest,
            family,
            given,
            code,
        ) in rows
    ]


def unit_record(access: Access, which: str = "current", now: datetime | None = None) -> UnitRecord:
    """Every planned dose due in the actor's programs in the shift `which` (previous, current
    or next, each program on its own clock), by due time. Audited as searches of the plans,
    doses given and reports, each naming every patient the list showed."""
    now = now or utcnow()
    _offset(which)
    for resource_type in (PLAN, ADMINISTRATION, STATEMENT):
        access.require(Permission.SEARCH, resource_type)
    shifts = _shifts(access, which, now)
    by_program = {s.program_id: s for s in shifts}
    doses, admin_patients, statement_patients = _doses(
        access, _plans_in(access, shifts), by_program, now
    )
    shown = sorted({d.patient_id for d in doses})
    query = f"unit medication record, shift={which}"
    audit_shown(access, PLAN, shown, query)
    audit_shown(access, ADMINISTRATION, sorted(admin_patients & set(shown)), query)
    audit_shown(access, STATEMENT, sorted(statement_patients & set(shown)), query)
    return UnitRecord(which, shifts, doses)


def due_dose(
    access: Access, patient: Patient, plan_id: int, due_at: datetime, now: datetime | None = None
) -> DueDose | None:
    """One dose of the list again (after it was recorded), audited as a read of that patient's
    doses."""
    now = now or utcnow()
    row = access.db.get(DosePlanRow, plan_id)
    if row is None or row.patient_id != patient.id:
        return None
    settings = {
        r.program_id: r
        for r in access.db.scalars(
            select(ShiftSettingRow).where(ShiftSettingRow.program_id == patient.program_id)
        )
    }
    times = program_shift_times(settings, patient.program_id)
    program = patient.program
    shift = ProgramShift(
        program.id,
        program.name,
        program.time_zone,
        times,
        shift_at(times, due_at, zone(program.time_zone)),
    )
    doses, _, _ = _doses(
        access, [_PlanLine.of(row, patient)], {program.id: shift}, now, only_due=due_at
    )
    query = f"unit medication record, dose plan {plan_id}"
    for resource_type in (ADMINISTRATION, STATEMENT):
        audit_shown(access, resource_type, [patient.id] if doses else [], query, patient.id)
    return doses[0] if doses else None


# --------------------------------------------------------------------------- recording


def record_from_unit(
    access: Access,
    patient_id: str,
    plan_id: int,
    *,
    due_at: datetime,
    outcome: str,
    reason: str = "",
    now: datetime | None = None,
) -> tuple[Patient, MedicationAdministrationRow]:
    """A dose recorded from the unit's list: given now, or held or refused with the reason.
    The policy is asked before the input is checked."""
    now = now or utcnow()
    patient = load_patient(access, patient_id, (Permission.CREATE, ADMINISTRATION), audit=False)
    if outcome not in OUTCOMES:
        raise ImplausibleValue("outcome", f"choose one of {', '.join(OUTCOMES)}")
    reason = check_note("reason", reason, "reason")
    if outcome != "given" and not reason:
        raise ImplausibleValue("reason", f"say why the dose was {outcome}")
    admin = record_administration(
        access,
        patient.id,
        plan_id,
        due_at=due_at,
        given=outcome == "given",
        administered_at=now,
        reason="" if outcome == "given" else f"{OUTCOMES[outcome]}: {reason}",
        note=reason if outcome == "given" else "",
        now=now,
    )
    return patient, admin
