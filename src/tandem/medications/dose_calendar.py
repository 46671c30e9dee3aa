"""A stored plan's doses as the chart shows them: each planned dose with what was recorded
against it (a nurse's administration, a patient's report), the week grid, adherence, the
missed-run check, and which doses may be reported now. The states and sums are the pure core's
(`schedule`); this module reads the records."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from tandem.access.guard import Access
from tandem.clock import local, program_today, utcnow, zone
from tandem.medications.adherence import MissedRunAlert
from tandem.medications.dose_plan import DosePlan, PlanDay
from tandem.medications.errors import ImplausibleValue
from tandem.medications.monograph import Monograph, load_monograph
from tandem.medications.plans import dose_on, effective_status, plan_of
from tandem.medications.resources import ADMINISTRATION, STATEMENT
from tandem.medications.schedule import (
    AdherenceSummary,
    CalendarDay,
    CalendarDose,
    DoseRecord,
    calendar_weeks,
    check_missed_run,
    dose_states,
    planned_through,
    summarise,
)
from tandem.medications.search import patient_rows
from tandem.medications.storage import (
    AdministrationDueRow,
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationStatementRow,
)
from tandem.medications.validation import recordable
from tandem.storage.models import Patient

__all__ = [
    "DoseHistory",
    "PlanView",
    "dose_history",
    "plan_doses",
    "plan_view",
    "planned_dose",
    "recorded_doses",
]


@dataclass(frozen=True)
class DoseHistory:
    """What was recorded against one plan's doses."""

    administrations: list[MedicationAdministrationRow]
    statements: list[MedicationStatementRow]
    records: list[DoseRecord]


def _administrations(row: DosePlanRow) -> Select[MedicationAdministrationRow]:
    return (
        select(MedicationAdministrationRow)
        .where(MedicationAdministrationRow.dose_plan_id == row.id)
        .order_by(MedicationAdministrationRow.administered_at)
    )


def _statements(row: DosePlanRow) -> Select[MedicationStatementRow]:
    return (
        select(MedicationStatementRow)
        .where(MedicationStatementRow.dose_plan_id == row.id)
        .order_by(MedicationStatementRow.due_at)
    )


def _history(
    db: Session,
    admins: list[MedicationAdministrationRow],
    statements: list[MedicationStatementRow],
) -> DoseHistory:
    dues: dict[int, datetime] = {}
    if admins:
        dues = {
            due.administration_id: due.due_at
            for due in db.scalars(
                select(AdministrationDueRow).where(
                    AdministrationDueRow.administration_id.in_([a.id for a in admins])
                )
            )
        }
    records = [
        DoseRecord(
            "administration", a.id, a.status == "completed", a.administered_at, dues.get(a.id)
        )
        for a in admins
    ]
    records += [DoseRecord("statement", s.id, s.taken, s.due_at, s.due_at) for s in statements]
    return DoseHistory(admins, statements, records)


def dose_history(access: Access, patient: Patient, row: DosePlanRow) -> DoseHistory:
    """The administrations and reports recorded against `row`, to show: read as lists of
    `patient`'s records (each asked of the policy and audited)."""
    query = f"dose_plan={row.id}"
    admins = patient_rows(
        access, ADMINISTRATION, MedicationAdministrationRow, _administrations(row), patient, query
    )
    statements = patient_rows(
        access, STATEMENT, MedicationStatementRow, _statements(row), patient, query
    )
    return _history(access.db, admins, statements)


def recorded_doses(db: Session, row: DosePlanRow) -> list[DoseRecord]:
    """Every record against `row`, for a check that follows a change the caller was allowed on
    this plan (the missed-dose alert): all of them, whoever may see which, and shown to nobody,
    so neither filtered by the actor's view nor audited as read by them."""
    return _history(
        db, list(db.scalars(_administrations(row))), list(db.scalars(_statements(row)))
    ).records


def plan_doses(
    row: DosePlanRow, patient: Patient, through: date, records: Iterable[DoseRecord], now: datetime
) -> list[CalendarDose]:
    """Every planned dose of `row` through `through`, each with its state as of `now`."""
    tz = zone(patient.program.time_zone)
    planned = planned_through(plan_of(row), through, tz, row.ends_on)
    return dose_states(planned, records, now, tz, written_at=row.created_at)


def planned_dose(
    row: DosePlanRow, patient: Patient, due_at: datetime, now: datetime
) -> CalendarDose:
    """The plan's dose due at `due_at`; refused when the plan has none then."""
    day = local(due_at, patient.program.time_zone).date()
    for dose in plan_doses(row, patient, day, (), now):
        if dose.planned.due_at == due_at:
            return dose
    raise ImplausibleValue("due_at", "choose one of the plan's planned doses")


@dataclass
class PlanView:
    row: DosePlanRow
    plan: DosePlan
    monograph: Monograph
    status: str
    doses: list[CalendarDose]
    weeks: list[list[CalendarDay | None]]
    overall: AdherenceSummary
    last_7_days: AdherenceSummary
    missed_run: MissedRunAlert | None
    today: date
    today_doses: PlanDay | None
    recordable: list[CalendarDose] = field(default_factory=list)
    administrations: list[MedicationAdministrationRow] = field(default_factory=list)
    statements: list[MedicationStatementRow] = field(default_factory=list)


def plan_view(
    access: Access,
    patient: Patient,
    row: DosePlanRow,
    now: datetime | None = None,
    weeks_back: int | None = 6,
) -> PlanView:
    """Everything the chart shows about one plan. The caller has read the plan (get/list)."""
    now = now or utcnow()
    tz = zone(patient.program.time_zone)
    today = program_today(patient.program.time_zone, now)
    plan = plan_of(row)
    history = dose_history(access, patient, row)
    last_planned = plan.end_date
    if plan.continues and row.ends_on is None:
        last_planned = max(plan.end_date, today + timedelta(days=7))
    if row.ends_on is not None:
        last_planned = min(last_planned, row.ends_on - timedelta(days=1))
    doses = plan_doses(row, patient, last_planned, history.records, now)
    first = row.start_date
    if weeks_back is not None:
        anchor = min(today, last_planned)
        first = max(first, anchor - timedelta(days=anchor.weekday() + 7 * (weeks_back - 1)))
    weeks = calendar_weeks(doses, first, max(last_planned, first), today, tz)
    since_7 = datetime.combine(today - timedelta(days=6), datetime.min.time(), tzinfo=tz)
    return PlanView(
        row=row,
        plan=plan,
        monograph=load_monograph(row.medication_id),
        status=effective_status(row, today),
        doses=doses,
        weeks=weeks,
        overall=summarise(doses, now),
        last_7_days=summarise(doses, now, since=since_7),
        missed_run=check_missed_run(row.medication_id, doses, now)
        if row.status == "active"
        else None,
        today=today,
        today_doses=dose_on(row, today),
        recordable=[d for d in doses if recordable(d.planned.due_at, now)],
        administrations=history.administrations,
        statements=history.statements,
    )
