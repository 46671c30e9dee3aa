"""A patient's consents (42 CFR Part 2) as the policy reads them: one indexed query per patient,
made by `Access` only when a decision can turn on them (staff of another program).

The consents are recorded by the choice domain (`tandem.choice.consent_storage`, table
`consents`); the access layer reads them here, and nowhere else, so that every read and search
honours them. The statement is built once (it runs on every decision that turns on consent).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from sqlalchemy import Integer, String, TextualSelect, bindparam, text
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
    return _grants(patient_id, db.execute(_statement(), {"patient_id": patient_id}))


@cache
def _patient_statement() -> TextualSelect:
    # The consents join only when the patient is outside the actor's programs: for one's own
    # patients this is the one-row lookup of the patient's program it replaces.
    return (
        text(
            "SELECT p.program_id AS patient_program_id, c.id, c.purpose, c.signed_at, "
            "c.recipient_program_id, c.recipient_name, c.information, c.expires_at, "
            "c.revoked_at, c.ended_at FROM patients p LEFT OUTER JOIN consents c "
            "ON c.patient_id = p.id AND p.program_id NOT IN :program_ids "
            "WHERE p.id = :patient_id ORDER BY c.signed_at DESC, c.id DESC"
        )
        .bindparams(bindparam("program_ids", expanding=True))
        .columns(
            patient_program_id=Integer,
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
    )


def patient_program_and_grants(
    db: Session, patient_id: str, program_ids: frozenset[int]
) -> tuple[int | None, tuple[ConsentGrant, ...] | None]:
    """The patient's program (None: no such patient) and, when that program is not one of
    `program_ids`, the patient's consents, in one round trip (None: not loaded)."""
    rows = list(
        db.execute(
            _patient_statement(),
            {"patient_id": patient_id, "program_ids": sorted(program_ids) or [-1]},
        )
    )
    if not rows:
        return None, None
    program_id = int(rows[0].patient_program_id)
    if program_id in program_ids:
        return program_id, None
    return program_id, _grants(patient_id, [r for r in rows if r.id is not None])


def _grants(patient_id: str, rows: Iterable[Any]) -> tuple[ConsentGrant, ...]:
    from tandem.choice.consent import covered_types

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
