"""The records a disclosure releases, as FHIR resources: read through the data-access layer
(each kind of record asked of the policy, filtered and audited) and mapped by the domain that
owns it. Kinds of record Tandem cannot export yet are left out and named in the release."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import audit_shown, patient_ref, visible
from tandem.clock import program_today
from tandem.fhir.patient import to_fhir
from tandem.medications.administration_routes import medication_administration
from tandem.medications.fhir_records import adverse_event, medication_request, medication_statement
from tandem.medications.plans import effective_status
from tandem.medications.search import patient_rows
from tandem.medications.storage import (
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationStatementRow,
    SideEffectRow,
)
from tandem.medications.validation import SIDE_EFFECTS
from tandem.storage.models import Patient
from tandem.withdrawal.fhir import observation, questionnaire_response
from tandem.withdrawal.storage import AssessmentRow, ObservationRow

LIMIT = 500  # per kind of record: a release is for a person to read

Exporter = Callable[[Access, Patient, str, datetime], list[dict[str, Any]]]


def _assessments(
    access: Access, patient: Patient, base: str, now: datetime
) -> list[dict[str, Any]]:
    rows: list[AssessmentRow] = patient_rows(
        access,
        "QuestionnaireResponse",
        AssessmentRow,
        select(AssessmentRow).order_by(AssessmentRow.assessed_at.desc()).limit(LIMIT),
        patient,
        f"disclosure patient={patient.id}",
    )
    names = display_names(access.db, {r.recorded_by for r in rows})
    return [questionnaire_response(r, base, names.get(r.recorded_by or 0)) for r in rows]


def _observations(
    access: Access, patient: Patient, base: str, now: datetime
) -> list[dict[str, Any]]:
    o, a = ObservationRow, AssessmentRow
    access.require(Permission.SEARCH, "Observation", patient_ref(patient))
    pairs = access.db.execute(
        select(o, a)
        .join(a, a.id == o.assessment_id)
        .where(
            a.patient_id == patient.id, visible(access, "Observation", a.patient_id, a.program_id)
        )
        .order_by(o.effective_at.desc())
        .limit(LIMIT)
    ).all()
    audit_shown(access, "Observation", [patient.id], f"disclosure patient={patient.id}", patient.id)
    return [observation(obs, assessment) for obs, assessment in pairs]


def _plans(access: Access, patient: Patient, base: str, now: datetime) -> list[dict[str, Any]]:
    rows: list[DosePlanRow] = patient_rows(
        access,
        "MedicationRequest",
        DosePlanRow,
        select(DosePlanRow).order_by(DosePlanRow.created_at.desc()).limit(LIMIT),
        patient,
        f"disclosure patient={patient.id}",
    )
    today = program_today(patient.program.time_zone, now)
    names = display_names(access.db, {r.prescriber_id for r in rows})
    return [
        medication_request(r, effective_status(r, today), names.get(r.prescriber_id)) for r in rows
    ]


def _statements(access: Access, patient: Patient, base: str, now: datetime) -> list[dict[str, Any]]:
    rows: list[MedicationStatementRow] = patient_rows(
        access,
        "MedicationStatement",
        MedicationStatementRow,
        select(MedicationStatementRow).order_by(MedicationStatementRow.due_at.desc()).limit(LIMIT),
        patient,
        f"disclosure patient={patient.id}",
    )
    names = display_names(access.db, {r.recorded_by for r in rows})
    return [medication_statement(r, names.get(r.recorded_by)) for r in rows]


def _side_effects(
    access: Access, patient: Patient, base: str, now: datetime
) -> list[dict[str, Any]]:
    rows: list[SideEffectRow] = patient_rows(
        access,
        "AdverseEvent",
        SideEffectRow,
        select(SideEffectRow).order_by(SideEffectRow.onset_at.desc()).limit(LIMIT),
        patient,
        f"disclosure patient={patient.id}",
    )
    names = display_names(access.db, {r.recorded_by for r in rows})
    return [
        adverse_event(r, SIDE_EFFECTS.get(r.effect, r.effect), names.get(r.recorded_by))
        for r in rows
    ]


def _doses_given(
    access: Access, patient: Patient, base: str, now: datetime
) -> list[dict[str, Any]]:
    m = MedicationAdministrationRow
    rows: list[MedicationAdministrationRow] = patient_rows(
        access,
        "MedicationAdministration",
        m,
        select(m).order_by(m.administered_at.desc()).limit(LIMIT),
        patient,
        f"disclosure patient={patient.id}",
    )
    names = display_names(access.db, {r.performer_id for r in rows})
    return [medication_administration(r, names.get(r.performer_id)) for r in rows]


EXPORTERS: dict[str, Exporter] = {
    "QuestionnaireResponse": _assessments,
    "Observation": _observations,
    "MedicationRequest": _plans,
    "MedicationStatement": _statements,
    "MedicationAdministration": _doses_given,
    "AdverseEvent": _side_effects,
}


def not_exported(types: frozenset[str]) -> list[str]:
    """Kinds of record a consent covers that a release cannot include yet."""
    return sorted(types - set(EXPORTERS))


def gather(
    access: Access, patient: Patient, types: frozenset[str], base_url: str, now: datetime
) -> list[dict[str, Any]]:
    """The patient (who the records are about) and their records of each kind in `types`."""
    resources = [to_fhir(patient)]
    for resource_type, export in EXPORTERS.items():
        if resource_type in types:
            resources.extend(export(access, patient, base_url, now))
    return resources
