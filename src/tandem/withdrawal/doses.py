"""As-needed doses given in detox: the protocol's suggestions for an assessment's score, checked
by the pure PRN rules (`withdrawal.prn`), stored by the medications domain, which owns the doses
given (`medications.administrations`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from tandem.access.guard import Access
from tandem.access.policy import Permission, Role
from tandem.access.queries import load_patient
from tandem.clock import utcnow
from tandem.errors import InvalidInput
from tandem.instruments.engine import get_instrument
from tandem.medications.administrations import (
    ADMINISTRATION,
    DoseGiven,
    given_for_check,
    given_since,
    record_given,
)
from tandem.medications.storage import MedicationAdministrationRow
from tandem.storage.models import Patient
from tandem.withdrawal.assessments import assessment_of
from tandem.withdrawal.monitoring import MedicationOption
from tandem.withdrawal.prn import (
    DAY,
    DoseInput,
    GivenSoFar,
    Override,
    PriorDose,
    check_prn_dose,
    check_repeat_dose,
    given_so_far,
)
from tandem.withdrawal.protocols import protocol_version, short_name
from tandem.withdrawal.storage import AssessmentRow

MAX_INDICATION = 2000
MAX_NOTE = 4000


def dose_options(db: Session, assessment: AssessmentRow) -> tuple[MedicationOption, ...]:
    """The protocol's suggestions for this assessment's total, under the version it was scored by."""
    protocol = protocol_version(db, assessment.protocol_version_id)
    row = protocol.instrument(assessment.instrument_id).row_for(assessment.total)
    if row is None:
        return ()
    return tuple(
        MedicationOption(
            drug=m.drug,
            dose_text=m.dose_text,
            route=m.route,
            repeat=m.repeat,
            note=m.note,
            source=protocol.cite(m.source),
            max_mg_per_24h=m.max_mg_per_24h.mg if m.max_mg_per_24h else None,
            max_source=protocol.cite(m.max_mg_per_24h.source) if m.max_mg_per_24h else None,
        )
        for m in row.medication
    )


def record_dose(
    access: Access, patient_id: str, given: DoseInput, now: datetime | None = None
) -> MedicationAdministrationRow:
    """Record an as-needed dose given, linked to the assessment that prompted it. Only a dose the
    protocol suggests for that assessment's score, within its range, is accepted."""
    now = now or utcnow()
    patient = load_patient(access, patient_id, (Permission.CREATE, ADMINISTRATION), audit=False)
    assessment = assessment_of(access, patient, given.assessment_id)
    if assessment is None:
        raise InvalidInput("assessment", "choose an assessment of this patient")
    checked = check_prn_dose(
        dose_options(access.db, assessment),
        given,
        assessed_at=assessment.assessed_at,
        now=now,
        scored=f"{assessment.instrument_id} {assessment.total}",
    )
    since = min(assessment.assessed_at, checked.administered_at - DAY)
    prior = _prior(given_for_check(access, patient, since))
    override_reason = check_repeat_dose(
        prior,
        checked,
        assessment.id,
        Override(access.actor.role is Role.PRESCRIBER, given.override_reason)
        if given.override_reason.strip()
        else None,
    )
    option = checked.option
    indication = given.indication.strip() or (
        f"{short_name(get_instrument(assessment.instrument_id))} {assessment.total}"
        + (f" ({assessment.band_label})" if assessment.band_label else "")
    )
    note = (
        given.note.strip() + f"\nProtocol suggestion: {option.drug} {option.dose_text}; "
        f"{option.source.citation}"
    ).strip()
    return record_given(
        access,
        patient,
        DoseGiven(
            medication_id=option.drug,
            medication_text=f"{option.drug} {_plain(checked.value)} {checked.unit}",
            dose_value=checked.value,
            dose_unit=checked.unit,
            route=checked.route,
            administered_at=checked.administered_at,
            indication=indication[:MAX_INDICATION],
            note=note[:MAX_NOTE],
            assessment_id=assessment.id,
            override_reason=override_reason,
        ),
        now=now,
    )


def _prior(rows: list[MedicationAdministrationRow]) -> list[PriorDose]:
    """Doses given (not those recorded as not given), as the guard reads them."""
    return [
        PriorDose(
            drug=row.medication_id,
            value=Decimal(str(row.dose_value)),
            unit=row.dose_unit,
            administered_at=row.administered_at,
            assessment_id=row.assessment_id,
        )
        for row in rows
        if row.status == "completed"
    ]


def dose_history(
    access: Access, patient: Patient, assessment: AssessmentRow, now: datetime
) -> GivenSoFar:
    """What the dose form shows: doses for this assessment and in the last 24 hours."""
    since = min(assessment.assessed_at, now - timedelta(hours=24))
    shown = given_since(access, patient, since, "as-needed dose form")
    return given_so_far(_prior(shown), assessment.id, now)


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")
