"""Side effects of a medication, as the patient or a nurse reports them: one of a short
vocabulary (or 'other', described), with its severity and onset."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient
from tandem.clock import utcnow
from tandem.errors import NotFound
from tandem.medications.errors import ImplausibleValue
from tandem.medications.monograph import load_monograph
from tandem.medications.plans import patient_plan
from tandem.medications.resources import SIDE_EFFECT
from tandem.medications.search import patient_rows
from tandem.medications.storage import SideEffectRow
from tandem.medications.validation import SEVERITIES, SIDE_EFFECTS, check_side_effect
from tandem.storage.models import Patient

__all__ = [
    "SEVERITIES",
    "SIDE_EFFECT",
    "SIDE_EFFECTS",
    "list_side_effects",
    "record_side_effect",
]


def record_side_effect(
    access: Access,
    patient_id: str,
    *,
    medication_id: str,
    effect: str,
    severity: str,
    onset_at: datetime,
    detail: str = "",
    plan_id: int | None = None,
    now: datetime | None = None,
) -> SideEffectRow:
    now = now or utcnow()
    patient = load_patient(access, patient_id, (Permission.CREATE, SIDE_EFFECT))
    mono = load_monograph(medication_id)
    checked = check_side_effect(
        effect=effect, severity=severity, detail=detail, onset_at=onset_at, now=now
    )
    if plan_id is not None:
        try:
            plan = patient_plan(access, patient, plan_id)
        except NotFound:
            plan = None
        if plan is None or plan.medication_id != mono.id:
            raise ImplausibleValue("plan", "choose one of this patient's plans of that medication")
    row = SideEffectRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        medication_id=mono.id,
        dose_plan_id=plan_id,
        effect=checked.effect,
        severity=checked.severity,
        detail=checked.detail,
        onset_at=checked.onset_at,
        recorded_at=now,
        recorded_by=access.actor.user_id,
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type=SIDE_EFFECT,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"{mono.id}: {effect} ({severity})",
    )
    return row


def list_side_effects(access: Access, patient: Patient, limit: int = 50) -> list[SideEffectRow]:
    """The patient's side effects, newest onset first."""
    return patient_rows(
        access,
        SIDE_EFFECT,
        SideEffectRow,
        select(SideEffectRow)
        .order_by(SideEffectRow.onset_at.desc(), SideEffectRow.id.desc())
        .limit(limit),
        patient,
        f"patient={patient.id}",
    )
