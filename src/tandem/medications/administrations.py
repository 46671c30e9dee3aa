"""Doses given (FHIR MedicationAdministration): the one way into and out of the
`medication_administrations` table for every domain that records a dose (detox as-needed doses,
dose-plan doses), for the charts that list them and for the FHIR API.

The caller checks a dose against its own rules (a protocol's suggestion, a dose plan); here are
the policy, the one rule for recorded times and the audit trail. Everything happens in the
caller's unit of work; the caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import Page, audit_shown, patient_ref, read_row, search_page, visible
from tandem.clock import check_recorded_at, utcnow
from tandem.errors import InvalidInput
from tandem.medications.storage import MedicationAdministrationRow
from tandem.storage.models import Patient

ADMINISTRATION = "MedicationAdministration"
STATUSES = ("completed", "not-done")


@dataclass(frozen=True)
class DoseGiven:
    """A dose given (or, with status "not-done", not given), as the recording domain checked it.
    `assessment_id` links an as-needed dose to the assessment that prompted it, `dose_plan_id`
    a scheduled dose to its plan."""

    medication_id: str
    medication_text: str
    dose_value: Decimal
    dose_unit: str
    route: str
    administered_at: datetime
    status: str = "completed"
    status_reason: str = ""
    indication: str = ""
    note: str = ""
    assessment_id: int | None = None
    dose_plan_id: int | None = None
    override_reason: str = ""


def record_given(
    access: Access,
    patient: Patient,
    given: DoseGiven,
    *,
    now: datetime | None = None,
    detail: str = "",
) -> MedicationAdministrationRow:
    """Store a dose given to `patient` by the actor, and audit it."""
    now = now or utcnow()
    access.require(Permission.CREATE, ADMINISTRATION, patient_ref(patient))
    administered_at = check_recorded_at("administered_at", given.administered_at, now)
    if given.status not in STATUSES:
        raise InvalidInput("status", f"choose one of {', '.join(STATUSES)}")
    row = MedicationAdministrationRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        medication_id=given.medication_id,
        medication_text=given.medication_text,
        dose_value=given.dose_value,
        dose_unit=given.dose_unit,
        route=given.route,
        status=given.status,
        status_reason=given.status_reason,
        indication=given.indication,
        administered_at=administered_at,
        performer_id=access.actor.user_id,
        assessment_id=given.assessment_id,
        dose_plan_id=given.dose_plan_id,
        note=given.note,
        recorded_at=now,
        override_by=access.actor.user_id if given.override_reason else None,
        override_reason=given.override_reason,
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type=ADMINISTRATION,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=(
            f"{detail} override by {access.actor.label}: {given.override_reason}".strip()[:2000]
            if given.override_reason
            else detail
        ),
    )
    return row


def given_since(
    access: Access, patient: Patient, since: datetime, query_text: str = ""
) -> list[MedicationAdministrationRow]:
    """The doses given to the patient since `since`, oldest first, for a chart (the caller has
    read the chart). Audited as a search of the patient's doses."""
    m = MedicationAdministrationRow
    access.require(Permission.SEARCH, ADMINISTRATION, patient_ref(patient))
    rows = list(
        access.db.scalars(
            select(m)
            .where(
                m.patient_id == patient.id,
                m.administered_at >= since,
                visible(access, ADMINISTRATION, m.patient_id, m.program_id),
            )
            .order_by(m.administered_at, m.id)
        )
    )
    audit_shown(access, ADMINISTRATION, [patient.id] if rows else [], query_text, patient.id)
    return rows


def given_for_check(
    access: Access, patient: Patient, since: datetime
) -> list[MedicationAdministrationRow]:
    """The doses given to the patient since `since`, for a rule checked while recording a dose
    (the caller may create doses for the patient): nothing is shown, so nothing is audited
    beyond the dose recorded."""
    m = MedicationAdministrationRow
    access.require(Permission.CREATE, ADMINISTRATION, patient_ref(patient))
    return list(
        access.db.scalars(
            select(m)
            .where(m.patient_id == patient.id, m.administered_at >= since)
            .order_by(m.administered_at, m.id)
        )
    )


def search_administrations(
    access: Access, patient_id: str | None, count: int, offset: int, query_text: str = ""
) -> Page[MedicationAdministrationRow]:
    """A page of the doses the actor may see, newest first (one patient's, when named)."""
    m = MedicationAdministrationRow
    return search_page(
        access,
        ADMINISTRATION,
        select(m),
        patient_column=m.patient_id,
        program_column=m.program_id,
        patient_of=lambda row: row.patient_id,
        order=(m.administered_at.desc(), m.id),
        patient_id=patient_id,
        count=count,
        offset=offset,
        query_text=query_text,
    )


def get_administration(access: Access, administration_id: int) -> MedicationAdministrationRow:
    return read_row(access, ADMINISTRATION, MedicationAdministrationRow, administration_id)


def load_administrations(db: Session, values: Sequence[Mapping[str, Any]]) -> None:
    """Bulk load of doses given (the demo, benchmarks): one statement, no policy, no audit.
    Never for a person's request."""
    if values:
        db.execute(insert(MedicationAdministrationRow), list(values))
