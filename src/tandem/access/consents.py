"""A patient's consents (42 CFR Part 2) as the policy reads them: one indexed query per patient,
made by `Access` only when a decision can turn on them (staff of another program).

The consents are recorded by the choice domain (`tandem.choice.consent_storage`, table
`consents`); the access layer reads them here, and nowhere else, so that every read and search
honours them. The statement is built once (it runs on every decision that turns on consent).
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Integer, String, TextualSelect, text
from sqlalchemy.orm import Session

from tandem.access.policy import ConsentGrant
from tandem.storage.db import UTCDateTime


@cache
def _statement() -> TextualSelect:
    # Newest first: a refusal names the state of the newest consent.
    return text(
        "SELECT id, purpose, signed_at, recipient_program_id, recipient_name, information, "
        "expires_at, revoked_at, ended_at FROM consents WHERE patient_id = :patient_id "
        "ORDER BY signed_at DESC, id DESC"
    ).columns(
        id=Integer,
        purpose=String,
        signed_at=UTCDateTime,
        recipient_program_id=Integer,
        recipient_name=String,
        information=String,
        expires_at=UTCDateTime,
        revoked_at=UTCDateTime,
        ended_at=UTCDateTime,
    )


def load_grants(db: Session, patient_id: str) -> tuple[ConsentGrant, ...]:
    """Every consent of the patient (in force, expired and revoked alike: the policy judges)."""
    from tandem.choice.consent import covered_types

    grants = []
    for row in db.execute(_statement(), {"patient_id": patient_id}):
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
