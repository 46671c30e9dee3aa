"""As-needed doses given in detox: the protocol's suggestions for an assessment's score, checked
by the pure PRN rules (`withdrawal.prn`), stored by the medications domain, which owns the doses
given (`medications.administrations`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient
from tandem.clock import utcnow
from tandem.errors import InvalidInput
from tandem.instruments.engine import get_instrument
from tandem.medications.administrations import ADMINISTRATION, DoseGiven, record_given
from tandem.medications.storage import MedicationAdministrationRow
from tandem.withdrawal.assessments import assessment_of
from tandem.withdrawal.monitoring import MedicationOption
from tandem.withdrawal.prn import DoseInput, check_prn_dose
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
        ),
        now=now,
    )


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")
