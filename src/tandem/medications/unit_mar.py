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
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, defer, selectinload

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.access.queries import audit_shown, load_patient, patient_ref, visible
from tandem.clock import utcnow, zone
from tandem.errors import InvalidInput
from tandem.medications.adherence import planned_doses
from tandem.medications.dose_plan import DosePlan
from tandem.medications.doses import record_administration
from tandem.medications.errors import ImplausibleValue
from tandem.medications.monograph import load_monograph
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
)
from tandem.medications.validation import GIVEN_WINDOW, check_note, recordable
from tandem.storage.models import Patient, Program

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


def _shifts(access: Access, which: str, now: datetime) -> list[ProgramShift]:
    programs = sorted(access.visibility(PLAN).program_ids)
    if not programs:
        return []
    settings = {
        r.program_id: r
        for r in access.db.scalars(
            select(ShiftSettingRow).where(ShiftSettingRow.program_id.in_(programs))
        )
    }
    out = []
    for program in access.db.scalars(
        select(Program).where(Program.id.in_(programs)).order_by(Program.name)
    ):
        times = program_shift_times(settings, program.id)
        shift = shift_at(times, now, zone(program.time_zone), _offset(which))
        out.append(ProgramShift(program.id, program.name, program.time_zone, times, shift))
    return out


def _records(
    access: Access, plan_ids: Sequence[int], start: datetime, end: datetime
) -> tuple[dict[int, list[DoseRecord]], dict[int, MedicationAdministrationRow], set[str], set[str]]:
    """What was recorded against these plans' doses near `start`..`end`, by plan: the nurses'
    administrations (with the planned dose each was) and the patients' reports."""
    by_plan: dict[int, list[DoseRecord]] = defaultdict(list)
    admins: dict[int, MedicationAdministrationRow] = {}
    if not plan_ids:
        return by_plan, admins, set(), set()
    m = MedicationAdministrationRow
    # A dose given is within GIVEN_WINDOW of its planned time; an unlinked one matches a
    # planned dose within MATCH_WINDOW: either way within the wider of the two.
    margin = max(GIVEN_WINDOW, MATCH_WINDOW)
    given = access.db.execute(
        select(m, AdministrationDueRow.due_at)
        .outerjoin(AdministrationDueRow, AdministrationDueRow.administration_id == m.id)
        .where(
            m.dose_plan_id.in_(plan_ids),
            m.administered_at >= start - margin,
            m.administered_at < end + margin,
            visible(access, ADMINISTRATION, m.patient_id, m.program_id),
        )
    ).all()
    admin_patients: set[str] = set()
    for row, due_at in given:
        assert row.dose_plan_id is not None
        admins[row.id] = row
        admin_patients.add(row.patient_id)
        by_plan[row.dose_plan_id].append(
            DoseRecord(
                "administration", row.id, row.status == "completed", row.administered_at, due_at
            )
        )
    s = MedicationStatementRow
    reports = access.db.scalars(
        select(s).where(
            s.dose_plan_id.in_(plan_ids),
            s.due_at >= start,
            s.due_at < end,
            visible(access, STATEMENT, s.patient_id, s.program_id),
        )
    ).all()
    statement_patients: set[str] = set()
    for report in reports:
        statement_patients.add(report.patient_id)
        by_plan[report.dose_plan_id].append(
            DoseRecord("statement", report.id, report.taken, report.due_at, report.due_at)
        )
    return by_plan, admins, admin_patients, statement_patients


def _recorded_text(
    dose: CalendarDose,
    admins: dict[int, MedicationAdministrationRow],
    names: dict[int, str],
    time_zone: str,
) -> str:
    record = dose.record
    if record is None:
        return ""
    at = record.at.astimezone(zone(time_zone))
    if record.kind == "statement":
        return "reported taken by the patient" if record.taken else "reported missed by the patient"
    row = admins.get(record.record_id)
    who = f" by {names[row.performer_id]}" if row is not None and row.performer_id in names else ""
    if record.taken:
        return f"given {at:%H:%M}{who}"
    reason = row.status_reason if row is not None else ""
    return f"{reason or 'not given'} ({at:%H:%M}{who})"


def _plan_around(row: DosePlanRow, first: date, last: date) -> DosePlan:
    """The stored plan with only the days a shift from `first` to `last` needs: those days,
    and the plan's last day (a continuing plan repeats it). A long plan is read in full by
    `plan_of`; the list reads sixty of them per view."""
    days = row.plan["days"]
    keep = [d for d in days if first.isoformat() <= d["date"] <= last.isoformat()]
    if days and (not keep or keep[-1] is not days[-1]):
        keep.append(days[-1])
    return DosePlan.from_dict({**row.plan, "days": keep})


def _doses(
    access: Access,
    plans: Iterable[tuple[DosePlanRow, Patient]],
    shifts: dict[int, ProgramShift],
    now: datetime,
    only_due: datetime | None = None,
) -> tuple[list[DueDose], set[str], set[str]]:
    pairs = list(plans)
    if not pairs:
        return [], set(), set()
    start = min(shifts[p.program_id].shift.start for _, p in pairs)
    end = max(shifts[p.program_id].shift.end for _, p in pairs)
    records, admins, admin_patients, statement_patients = _records(
        access, [row.id for row, _ in pairs], start, end
    )
    names = display_names(access.db, (a.performer_id for a in admins.values()))
    out: list[DueDose] = []
    for row, patient in pairs:
        program = shifts[patient.program_id]
        tz = zone(program.time_zone)
        first, last = program.shift.days
        plan = _plan_around(row, first, last)
        days = [d for d in days_through(plan, last, row.ends_on) if first <= d.date <= last]
        if not days:
            continue
        planned = [
            p
            for p in planned_doses(
                dataclasses.replace(plan, days=tuple(days)), DEFAULT_SLOT_TIMES, tz
            )
            if program.shift.holds(p.due_at) and (only_due is None or p.due_at == only_due)
        ]
        if not planned:
            continue
        mono = load_monograph(row.medication_id)
        may = bool(decide(access.actor, Permission.CREATE, ADMINISTRATION, patient_ref(patient)))
        for dose in dose_states(
            planned, records.get(row.id, ()), now, tz, written_at=row.created_at
        ):
            if dose.state == "before_plan":
                continue  # due before the plan was written: nobody was asked to give it
            overdue = dose.state == "unrecorded"
            out.append(
                DueDose(
                    patient_id=patient.id,
                    patient_name=patient.display_name,
                    mrn=patient.mrn,
                    program_name=program.program_name,
                    plan_id=row.id,
                    medication=mono.name,
                    dose=dose,
                    due_local=dose.planned.due_at.astimezone(tz),
                    overdue=overdue,
                    counts_missed=overdue and now - dose.planned.due_at >= UNRECORDED_GRACE,
                    recorded=_recorded_text(dose, admins, names, program.time_zone),
                    recordable=recordable(dose.planned.due_at, now)
                    and abs(now - dose.planned.due_at) <= GIVEN_WINDOW,
                    may_record=may,
                )
            )
    out.sort(key=lambda d: (d.due_at, d.patient_name, d.medication, d.plan_id))
    return out, admin_patients, statement_patients


def _plans_in(access: Access, shifts: Sequence[ProgramShift]) -> list[tuple[DosePlanRow, Patient]]:
    if not shifts:
        return []
    first = min(s.shift.days[0] for s in shifts)
    last = max(s.shift.days[1] for s in shifts)
    p = DosePlanRow
    statement = (
        select(p, Patient)
        .join(Patient, Patient.id == p.patient_id)
        .where(
            p.start_date <= last,
            or_(p.ends_on.is_(None), p.ends_on > first),
            visible(access, PLAN, p.patient_id, p.program_id),
        )
        .order_by(p.id)
        .options(
            defer(p.inputs),
            selectinload(Patient.identifiers),
            selectinload(Patient.program),
        )
    )
    return [(row, patient) for row, patient in access.db.execute(statement)]


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
    doses, _, _ = _doses(access, [(row, patient)], {program.id: shift}, now, only_due=due_at)
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
