"""The patient's treatment decision: record one (a new row each time, history kept), read the
current one and the history. Through `tandem.access.queries`, audited; never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.access.queries import Page, load_patient, patient_ref, search_page
from tandem.choice.decision_options import (
    NO_MEDICATION,
    UNDECIDED,
    check_situation,
    choice_labels,
    label_of,
)
from tandem.choice.decision_storage import TreatmentDecisionRow
from tandem.clock import program_today, utcnow
from tandem.errors import InvalidInput
from tandem.storage.models import Patient

DECISION = "TreatmentDecision"
MAX_TEXT = 2000
MAX_NAME = 200


@dataclass(frozen=True)
class DecisionInput:
    substance: str
    phase: str
    choice: str
    discussed_on: date | None
    discussed_by: str
    preferences: str = ""
    notes: str = ""


@dataclass(frozen=True)
class CheckedDecision:
    substance: str
    phase: str
    choice: str
    discussed_on: date
    discussed_by: str
    preferences: str
    notes: str


def check_decision(values: DecisionInput, today: date) -> CheckedDecision:
    """Pure: the decision as it will be stored, or `InvalidInput` naming the field to fix."""
    substance, phase = check_situation(values.substance.strip(), values.phase.strip())
    choices = choice_labels(substance, phase)
    choice = values.choice.strip()
    if choice not in choices:
        raise InvalidInput("choice", "choose one of the options shown, no medication, or not yet")
    if values.discussed_on is None:
        raise InvalidInput("discussed_on", "enter the date the options were discussed")
    if values.discussed_on > today:
        raise InvalidInput("discussed_on", "the date cannot be in the future")
    if values.discussed_on < today - timedelta(days=366):
        raise InvalidInput("discussed_on", "the date must be within the past year")
    by = " ".join(values.discussed_by.split())
    if not by:
        raise InvalidInput("discussed_by", "enter who discussed the options with the patient")
    if len(by) > MAX_NAME:
        raise InvalidInput("discussed_by", f"at most {MAX_NAME} characters")
    for name in ("preferences", "notes"):
        if len(getattr(values, name)) > MAX_TEXT:
            raise InvalidInput(name, f"at most {MAX_TEXT} characters")
    return CheckedDecision(
        substance=substance,
        phase=phase,
        choice=choice,
        discussed_on=values.discussed_on,
        discussed_by=by,
        preferences=values.preferences.strip(),
        notes=values.notes.strip(),
    )


def record_decision(
    access: Access, patient_id: str, values: DecisionInput, now: datetime | None = None
) -> TreatmentDecisionRow:
    """Store the patient's decision as a new row (earlier ones are kept), audited."""
    now = now or utcnow()
    patient = load_patient(access, patient_id, (Permission.CREATE, DECISION))
    checked = check_decision(values, program_today(patient.program.time_zone, now))
    row = TreatmentDecisionRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        substance=checked.substance,
        phase=checked.phase,
        choice=checked.choice,
        preferences=checked.preferences,
        notes=checked.notes,
        discussed_on=checked.discussed_on,
        discussed_by=checked.discussed_by,
        recorded_at=now,
        recorded_by=access.actor.user_id,
    )
    access.db.add(row)
    access.db.flush()
    access.audit("create", resource_type=DECISION, resource_id=str(row.id), patient_id=patient.id)
    return row


def decision_history(
    access: Access, patient: Patient, count: int = 50
) -> list[TreatmentDecisionRow]:
    """The patient's decisions, newest first (a search of one patient's records, audited)."""
    page: Page[TreatmentDecisionRow] = search_page(
        access,
        DECISION,
        select(TreatmentDecisionRow),
        patient_column=TreatmentDecisionRow.patient_id,
        program_column=TreatmentDecisionRow.program_id,
        patient_of=lambda r: r.patient_id,
        order=(TreatmentDecisionRow.recorded_at.desc(), TreatmentDecisionRow.id.desc()),
        patient_id=patient.id,
        count=count,
        query_text="current treatment decision",
    )
    return page.rows


def current_decision(access: Access, patient: Patient) -> TreatmentDecisionRow | None:
    """The newest decision, or None (also None when the policy does not show decisions to
    this person: the caller then shows nothing about it)."""
    if not decide(access.actor, Permission.SEARCH, DECISION, patient_ref(patient)):
        return None
    rows = decision_history(access, patient, count=1)
    return rows[0] if rows else None


def declines_medication(row: TreatmentDecisionRow | None) -> bool:
    return row is not None and row.choice == NO_MEDICATION


def is_undecided(row: TreatmentDecisionRow | None) -> bool:
    return row is None or row.choice == UNDECIDED


def describe(row: TreatmentDecisionRow) -> str:
    return label_of(row.choice)
