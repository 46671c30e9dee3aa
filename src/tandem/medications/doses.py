"""Planned doses given and taken: a nurse records a dose of a plan as given (or not, with the
reason); a patient's report says it was taken or missed. Each record names the planned dose it
is about, and is followed by the missed-dose check of that plan.

Plan doses given are MedicationAdministration rows, written (like the detox unit's as-needed
doses) by `administrations.record_given`, the one writer of that table."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient
from tandem.clock import utcnow
from tandem.medications.administrations import DoseGiven, record_given
from tandem.medications.dose_calendar import planned_dose
from tandem.medications.missed_doses import raise_missed_dose_alert
from tandem.medications.monograph import load_monograph
from tandem.medications.plans import patient_plan
from tandem.medications.resources import ADMINISTRATION, STATEMENT
from tandem.medications.storage import (
    AdministrationDueRow,
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationStatementRow,
)
from tandem.medications.validation import check_administration, check_statement
from tandem.storage.models import Patient

__all__ = [
    "ADMINISTRATION",
    "STATEMENT",
    "record_administration",
    "record_statement",
]


def _plan_for_record(
    access: Access, patient_id: str, plan_id: int, *wanted: tuple[Permission, str]
) -> tuple[Patient, DosePlanRow]:
    """The patient, once every `wanted` operation is allowed, and the plan of theirs a dose is
    recorded against."""
    patient = load_patient(access, patient_id, *wanted)
    return patient, patient_plan(access, patient, plan_id)


def record_administration(
    access: Access,
    patient_id: str,
    plan_id: int,
    *,
    due_at: datetime,
    given: bool,
    administered_at: datetime,
    reason: str = "",
    note: str = "",
    now: datetime | None = None,
) -> MedicationAdministrationRow:
    """A nurse records a planned dose as given (or not given, with the reason)."""
    now = now or utcnow()
    patient, row = _plan_for_record(
        access, patient_id, plan_id, (Permission.CREATE, ADMINISTRATION)
    )
    checked = check_administration(
        due_at=due_at,
        administered_at=administered_at,
        given=given,
        reason=reason,
        note=note,
        now=now,
    )
    planned = planned_dose(row, patient, due_at, now).planned
    mono = load_monograph(row.medication_id)
    admin = record_given(
        access,
        patient,
        DoseGiven(
            medication_id=row.medication_id,
            medication_text=f"{mono.name} {planned.mg:g} mg",
            dose_value=Decimal(str(planned.mg)),
            dose_unit="mg",
            route=mono.dosing.route or "oral",
            administered_at=checked.administered_at,
            status="completed" if given else "not-done",
            status_reason=checked.reason,
            note=checked.note,
            dose_plan_id=row.id,
        ),
        now=now,
        detail=f"dose plan {row.id}, {planned.time_slot} {planned.mg:g} mg, "
        f"{'given' if given else 'not given'}",
    )
    access.db.add(
        AdministrationDueRow(administration_id=admin.id, dose_plan_id=row.id, due_at=due_at)
    )
    access.db.flush()
    raise_missed_dose_alert(access, patient, row, now)
    return admin


def record_statement(
    access: Access,
    patient_id: str,
    plan_id: int,
    *,
    due_at: datetime,
    taken: bool,
    reason: str = "",
    now: datetime | None = None,
) -> MedicationStatementRow:
    """The patient reports a planned dose taken or missed. A later report replaces the earlier."""
    now = now or utcnow()
    # A report may create or replace one: both permissions are asked before anything is written.
    patient, row = _plan_for_record(
        access, patient_id, plan_id, (Permission.CREATE, STATEMENT), (Permission.UPDATE, STATEMENT)
    )
    reason = check_statement(due_at, reason, now)
    planned = planned_dose(row, patient, due_at, now).planned
    existing = access.db.scalar(
        select(MedicationStatementRow).where(
            MedicationStatementRow.dose_plan_id == row.id, MedicationStatementRow.due_at == due_at
        )
    )
    if existing is None:
        statement = MedicationStatementRow(
            patient_id=patient.id,
            program_id=patient.program_id,
            dose_plan_id=row.id,
            medication_id=row.medication_id,
            due_at=due_at,
            time_slot=planned.time_slot,
            dose_mg=planned.mg,
            taken=taken,
            reason=reason,
            reported_at=now,
            recorded_by=access.actor.user_id,
        )
        access.db.add(statement)
        operation = "create"
    else:
        statement = existing
        statement.taken, statement.reason = taken, reason
        statement.reported_at, statement.recorded_by = now, access.actor.user_id
        operation = "update"
    access.db.flush()
    access.audit(
        operation,
        resource_type=STATEMENT,
        resource_id=str(statement.id),
        patient_id=patient.id,
        detail=f"dose plan {row.id}, {planned.time_slot}: {'taken' if taken else 'missed'}",
    )
    raise_missed_dose_alert(access, patient, row, now)
    return statement
