"""Consents and disclosures, through the data-access layer: record a consent, revoke it, list
and search them, release records under one (a disclosure), and the accounting of disclosures.
Services never commit; every read and write is audited."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from tandem.access.guard import Access, AccessDenied
from tandem.access.policy import (
    PatientRef,
    Permission,
    decide,
    may_disclose,
)
from tandem.access.queries import (
    Page,
    audit_shown,
    load_patient,
    patient_ref,
    read_row,
    search_page,
    visible,
)
from tandem.choice import consent as core
from tandem.choice.consent_storage import ConsentRow, DisclosureRow
from tandem.errors import InvalidInput, NotFound
from tandem.storage.models import Patient, Program

CONSENT = "Consent"
DISCLOSURE = "Disclosure"


def _patient_name(patient: Patient) -> str:
    return " ".join(p for p in (patient.given, patient.family) if p)


def record_consent(
    access: Access, patient_id: str, values: core.ConsentInput, now: datetime
) -> ConsentRow:
    """Store a consent the patient signed, once every element §2.31 requires is there."""
    patient = load_patient(access, patient_id, (Permission.CREATE, CONSENT), audit=False)
    recipient_program = None
    if values.recipient_program_id is not None:
        recipient_program = access.db.get(Program, values.recipient_program_id)
    checked = core.check_consent(
        values,
        patient_name=_patient_name(patient),
        program_name=patient.program.name,
        recipient_program_name=recipient_program.name if recipient_program else None,
        own_program_id=patient.program_id,
        time_zone=patient.program.time_zone,
        now=now,
    )
    row = ConsentRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        recipient_program_id=checked.recipient_program_id,
        recipient_name=checked.recipient_name,
        purpose=checked.purpose,
        purpose_text=checked.purpose_text,
        information=checked.information,
        expires_on=checked.expires_on,
        expires_at=checked.expires_at,
        expiry_event=checked.expiry_event,
        signed_on=checked.signed_on,
        signed_at=checked.signed_at,
        signed_by=checked.signed_by,
        signer_role=checked.signer_role,
        recorded_by=access.actor.user_id,
        recorded_at=now,
        revocation_note="",
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type=CONSENT,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"to {checked.recipient_name} for {checked.purpose}",
    )
    return row


def get_consent(
    access: Access, consent_id: int, permission: Permission = Permission.READ
) -> ConsentRow:
    return read_row(access, CONSENT, ConsentRow, consent_id, permission=permission)


def revoke_consent(access: Access, consent_id: int, now: datetime, note: str = "") -> ConsentRow:
    """The patient (or staff of their program, on the patient's word) revokes a consent: it
    stays on record, no longer in force from `now`."""
    row = get_consent(access, consent_id, Permission.UPDATE)
    if row.revoked_at is not None:
        raise InvalidInput("status", "this consent was already revoked")
    note = " ".join(note.split())
    if len(note) > core.MAX_TEXT:
        raise InvalidInput("note", f"write at most {core.MAX_TEXT} characters")
    row.revoked_at = now
    row.revoked_by = access.actor.user_id
    row.revocation_note = note
    access.db.flush()
    access.audit(
        "update",
        resource_type=CONSENT,
        resource_id=str(row.id),
        patient_id=row.patient_id,
        detail="revoked",
    )
    return row


def end_consent(access: Access, consent_id: int, now: datetime) -> ConsentRow:
    """Staff record that the event a consent expires on has happened."""
    row = get_consent(access, consent_id, Permission.UPDATE)
    # Those who record consents (staff of the patient's program) record that one ended.
    access.require(Permission.CREATE, CONSENT, PatientRef(row.patient_id, row.program_id))
    if not row.expiry_event:
        raise InvalidInput("expiry", "this consent expires on a date, not an event")
    if row.ended_at is not None or row.revoked_at is not None:
        raise InvalidInput("status", "this consent is no longer in force")
    row.ended_at = now
    access.db.flush()
    access.audit(
        "update",
        resource_type=CONSENT,
        resource_id=str(row.id),
        patient_id=row.patient_id,
        detail="expiry event happened",
    )
    return row


def list_consents(access: Access, patient: Patient) -> list[ConsentRow]:
    """The patient's consents, newest first (revoked and expired ones too)."""
    access.require(Permission.SEARCH, CONSENT, patient_ref(patient))
    rows = list(
        access.db.scalars(
            select(ConsentRow)
            .where(
                ConsentRow.patient_id == patient.id,
                visible(access, CONSENT, ConsentRow.patient_id, ConsentRow.program_id),
            )
            .order_by(ConsentRow.signed_at.desc(), ConsentRow.id.desc())
        )
    )
    audit_shown(access, CONSENT, [patient.id], f"patient={patient.id}", patient.id)
    return rows


def search_consents(
    access: Access,
    patient_id: str | None,
    statuses: Sequence[str],
    count: int,
    offset: int,
    query_text: str = "",
) -> Page[ConsentRow]:
    statement = select(ConsentRow)
    if statuses:
        wanted = set(statuses)
        if wanted == {"active"}:
            statement = statement.where(ConsentRow.revoked_at.is_(None))
        elif wanted == {"inactive"}:
            statement = statement.where(ConsentRow.revoked_at.is_not(None))
    return search_page(
        access,
        CONSENT,
        statement,
        patient_column=ConsentRow.patient_id,
        program_column=ConsentRow.program_id,
        patient_of=lambda r: r.patient_id,
        order=(ConsentRow.signed_at.desc(), ConsentRow.id.desc()),
        patient_id=patient_id,
        count=count,
        offset=offset,
        query_text=query_text,
    )


def consent_state(row: ConsentRow, now: datetime) -> str:
    return core.state(
        signed_at=row.signed_at,
        expires_at=row.expires_at,
        ended_at=row.ended_at,
        revoked_at=row.revoked_at,
        now=now,
    )


# --- disclosure --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """A disclosure as made: the accounting row, the consent it rests on, the patient and the
    records released (FHIR resources, read through the data-access layer)."""

    disclosure: DisclosureRow
    consent: ConsentRow
    patient: Patient
    resources: list[dict[str, Any]]


def requested_types(information: Sequence[str]) -> tuple[str, frozenset[str]]:
    """The information asked for (as stored) and every kind of record it takes in."""
    known = {c.id: c for c in core.rules().categories}
    chosen = [i for i in dict.fromkeys(information) if i]
    if not chosen:
        raise InvalidInput("information", "choose which information to release")
    unknown = [i for i in chosen if i not in known]
    if unknown:
        raise InvalidInput("information", f"unknown kind of information: {unknown[0]}")
    if "all" in chosen:
        return "all", frozenset(t for c in known.values() for t in c.resource_types)
    return ",".join(chosen), frozenset(t for i in chosen for t in known[i].resource_types)


def disclose(
    access: Access,
    patient_id: str,
    *,
    recipient_program_id: int | None,
    recipient_name: str,
    purpose: str,
    information: Sequence[str],
    form: str,
    now: datetime,
    base_url: str,
) -> Release:
    """Release the patient's records outside the program, only under a valid consent that
    names this recipient and purpose and covers the information; refused (403) and audited
    otherwise. The release is listed in the accounting of disclosures."""
    from tandem.choice.consent_records import gather

    patient = access.db.get(Patient, patient_id)
    if patient is None:
        raise NotFound(f"Patient/{patient_id} is not known")
    ref = patient_ref(patient)
    if core.rules().purpose(purpose) is None:
        raise InvalidInput("purpose", "choose the purpose")
    name = " ".join(recipient_name.split())
    if recipient_program_id is not None:
        program = access.db.get(Program, recipient_program_id)
        if program is None:
            raise InvalidInput("recipient", "choose a program of Tandem that is known")
        name = program.name
    elif not name:
        raise InvalidInput("recipient", "enter who receives the records")
    stored_information, types = requested_types(information)
    decision, grant = may_disclose(
        access.actor,
        ref,
        access.patient_consents(patient.id),
        recipient_program_id=recipient_program_id,
        recipient_name=name,
        purpose=purpose,
        resource_types=types,
    )
    if not decision or grant is None:
        access.refused(
            "disclose",
            decision.reason,
            resource_type=DISCLOSURE,
            patient_id=patient.id,
        )
        raise AccessDenied(decision)
    consent = access.db.get(ConsentRow, grant.consent_id)
    assert consent is not None  # the grant was read from it in this request
    patient = load_patient(access, patient.id)
    resources = gather(access, patient, types, base_url, now)
    contents = ", ".join(f"{t} {n}" for t, n in sorted(_counts(resources).items()))
    row = DisclosureRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        consent_id=consent.id,
        recipient_name=name,
        purpose=purpose,
        information=stored_information,
        contents=contents,
        form=form,
        disclosed_at=now,
        disclosed_by=access.actor.user_id,
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type=DISCLOSURE,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"released to {name} for {purpose} under consent {consent.id} ({form})",
    )
    return Release(row, consent, patient, resources)


def _counts(resources: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for resource in resources:
        counts[resource["resourceType"]] = counts.get(resource["resourceType"], 0) + 1
    return counts


def list_disclosures(access: Access, patient: Patient) -> list[DisclosureRow]:
    """The accounting of disclosures (§2.25): every release of the patient's records."""
    access.require(Permission.SEARCH, DISCLOSURE, patient_ref(patient))
    rows = list(
        access.db.scalars(
            select(DisclosureRow)
            .where(
                DisclosureRow.patient_id == patient.id,
                visible(access, DISCLOSURE, DisclosureRow.patient_id, DisclosureRow.program_id),
            )
            .order_by(DisclosureRow.disclosed_at.desc(), DisclosureRow.id.desc())
        )
    )
    audit_shown(access, DISCLOSURE, [patient.id], f"patient={patient.id}", patient.id)
    return rows


def may_record(access: Access, patient: Patient) -> bool:
    return bool(decide(access.actor, Permission.CREATE, CONSENT, patient_ref(patient)))


def other_programs(access: Access, patient: Patient) -> list[Program]:
    return list(
        access.db.scalars(
            select(Program).where(Program.id != patient.program_id).order_by(Program.name)
        )
    )
