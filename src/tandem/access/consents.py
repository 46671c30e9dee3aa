"""A patient's consents (42 CFR Part 2) as the policy reads them: one indexed query per patient,
made by `Access` only when a decision can turn on them (staff of another program).

The consents are recorded by the choice domain (`tandem.choice.consent_storage`); the access
layer reads them here, and nowhere else, so that every read and search honours them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tandem.access.policy import ConsentGrant


def load_grants(db: Session, patient_id: str) -> tuple[ConsentGrant, ...]:
    """Every consent of the patient (signed, expired and revoked alike: the policy judges)."""
    from tandem.choice.consent import covered_types
    from tandem.choice.consent_storage import ConsentRow

    c = ConsentRow
    rows = db.execute(
        select(
            c.id,
            c.purpose,
            c.signed_at,
            c.recipient_program_id,
            c.recipient_name,
            c.information,
            c.expires_at,
            c.revoked_at,
            c.ended_at,
        )
        .where(c.patient_id == patient_id)
        .order_by(c.signed_at.desc(), c.id.desc())  # a refusal names the newest consent's state
    )
    grants = []
    for row in rows:
        ends = [t for t in (row.expires_at, row.ended_at) if t is not None]
        grants.append(
            ConsentGrant(
                consent_id=row.id,
                patient_id=patient_id,
                purpose=row.purpose,
                starts_at=row.signed_at,
                recipient_program_id=row.recipient_program_id,
                recipient_name=row.recipient_name,
                resource_types=covered_types(row.information),
                expires_at=min(ends) if ends else None,
                revoked_at=row.revoked_at,
            )
        )
    return tuple(grants)
