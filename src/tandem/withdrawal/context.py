"""The withdrawal context of an episode (substance, last use, seizure and DT history, ...): what
the monitoring core's risk flags and time windows read. Recorded (or corrected) once per episode
as a Condition; checked by the pure `withdrawal.checks` first."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient
from tandem.clock import utcnow
from tandem.errors import InvalidInput
from tandem.patients.service import open_episode
from tandem.storage.models import Episode, Patient
from tandem.withdrawal.checks import ContextInput, check_context, stored_context
from tandem.withdrawal.monitoring import WithdrawalContext
from tandem.withdrawal.storage import WithdrawalContextRow

CONDITION = "Condition"


def open_episode_of(patient: Patient) -> Episode:
    """The patient's open episode of care, which every withdrawal record belongs to."""
    episode = open_episode(patient)
    if episode is None:
        raise InvalidInput("episode", "the patient has no open episode of care: admit them first")
    return episode


def as_context(row: WithdrawalContextRow | None) -> WithdrawalContext | None:
    if row is None:
        return None
    return stored_context(
        row.substance,
        row.last_use_at,
        row.opioid_half_life_class,
        row.history_withdrawal_seizures,
        row.history_delirium_tremens,
        row.liver_failure,
        row.elderly,
    )


def context_row(db: Session, episode_id: int) -> WithdrawalContextRow | None:
    """The episode's context (the caller has been allowed the patient's chart)."""
    return db.scalar(
        select(WithdrawalContextRow).where(WithdrawalContextRow.episode_id == episode_id)
    )


def record_context(
    access: Access, patient_id: str, values: ContextInput, now: datetime | None = None
) -> WithdrawalContextRow:
    """Record (or correct) the open episode's withdrawal context."""
    now = now or utcnow()
    patient = load_patient(access, patient_id, (Permission.UPDATE, CONDITION), audit=False)
    episode = open_episode_of(patient)
    checked = check_context(values, now)
    context = checked.context
    row = context_row(access.db, episode.id)
    created = row is None
    if row is None:
        row = WithdrawalContextRow(
            episode_id=episode.id, patient_id=patient.id, program_id=patient.program_id
        )
        access.db.add(row)
    row.substance = context.substance
    row.last_use_at = context.last_use_at
    row.opioid_half_life_class = context.opioid_half_life_class
    row.history_withdrawal_seizures = context.history_withdrawal_seizures
    row.history_delirium_tremens = context.history_delirium_tremens
    row.liver_failure = context.liver_failure
    row.elderly = context.elderly
    row.note = checked.note
    row.recorded_at = now
    row.recorded_by = access.actor.user_id
    access.db.flush()
    access.audit(
        "create" if created else "update",
        resource_type=CONDITION,
        resource_id=f"withdrawal-context-{row.id}",
        patient_id=patient.id,
    )
    return row
