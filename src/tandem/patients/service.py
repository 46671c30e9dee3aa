"""Patients and episodes in storage. Every function asks the policy and audits through `Access`."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Select, and_, exists, select
from sqlalchemy.orm import selectinload

from tandem.access.guard import Access
from tandem.access.policy import PatientRef, Permission
from tandem.access.queries import Page, load_patient, patient_ref, search_page
from tandem.errors import Conflict, InvalidInput, NotFound
from tandem.patients.episodes import episode_changed
from tandem.patients.records import (
    Identifier,
    PatientQuery,
    PatientRecord,
    Phase,
    check_discharge,
    check_episode_times,
    check_record,
)
from tandem.storage.db import utcnow
from tandem.storage.models import (
    Episode,
    Patient,
    PatientIdentifier,
    PatientNameWord,
    Program,
    Unit,
    name_words,
)


def _load(access: Access, patient_id: str) -> Patient:
    """The patient row, locked for this change, unchecked: every caller asks the policy for its
    own operation next."""
    return load_patient(access, patient_id, read=None, for_update=True)


def get_patient(access: Access, patient_id: str) -> Patient:
    return load_patient(access, patient_id)


def _apply(patient: Patient, record: PatientRecord) -> None:
    patient.family = record.family
    patient.given = " ".join(record.given)
    patient.family_lower = record.family.lower()
    patient.given_lower = " ".join(record.given).lower()
    patient.gender = record.gender
    patient.birth_date = record.birth_date
    patient.phone = record.phone
    patient.email = record.email
    patient.active = record.active


def _identifiers(access: Access, patient: Patient, record: PatientRecord, program: Program) -> None:
    wanted = [Identifier(i.system or program.mrn_system, i.value) for i in record.identifiers]
    if not any(i.system == program.mrn_system for i in wanted):
        wanted.insert(0, Identifier(program.mrn_system, _new_mrn(program)))
    for ident in wanted:
        owner = access.db.scalar(
            select(PatientIdentifier.patient_id).where(
                PatientIdentifier.system == ident.system, PatientIdentifier.value == ident.value
            )
        )
        if owner is not None and owner != patient.id:
            raise InvalidInput("identifier", f"{ident.value} already belongs to another patient")
    keep = {(i.system, i.value) for i in wanted}
    patient.identifiers[:] = [i for i in patient.identifiers if (i.system, i.value) in keep]
    have = {(i.system, i.value) for i in patient.identifiers}
    for ident in wanted:
        if (ident.system, ident.value) not in have:
            patient.identifiers.append(PatientIdentifier(system=ident.system, value=ident.value))


def _new_mrn(program: Program) -> str:
    return f"{program.code.upper()[:6]}-{secrets.randbelow(10**8):08d}"


def create_patient(
    access: Access, record: PatientRecord, program_id: int | None, now: datetime | None = None
) -> Patient:
    now = now or utcnow()
    if program_id is None:
        if len(access.actor.program_ids) != 1:
            raise InvalidInput(
                "managingOrganization",
                "name the program (Organization/<program id>): you belong to "
                f"{len(access.actor.program_ids)} programs",
            )
        (program_id,) = access.actor.program_ids
    program = access.db.get(Program, program_id)
    if program is None:
        raise InvalidInput("managingOrganization", f"program {program_id} is not known")
    access.require(Permission.CREATE, "Patient", program_id=program_id)
    record = check_record(record, now.date())
    patient = Patient(program_id=program_id, version_id=1, last_updated=now)
    patient.program = program
    _apply(patient, record)
    access.db.add(patient)
    access.db.flush()
    _identifiers(access, patient, record, program)
    access.db.flush()
    access.audit("create", resource_type="Patient", resource_id=patient.id, patient_id=patient.id)
    return patient


def update_patient(
    access: Access,
    patient_id: str,
    record: PatientRecord,
    if_match: int | None = None,
    now: datetime | None = None,
) -> Patient:
    now = now or utcnow()
    patient = _load(access, patient_id)
    access.require(Permission.UPDATE, "Patient", patient_ref(patient), resource_id=patient_id)
    if if_match is not None and if_match != patient.version_id:
        raise Conflict(f"Patient/{patient_id} is at version {patient.version_id}, not {if_match}")
    record = check_record(record, now.date())
    _apply(patient, record)
    _identifiers(access, patient, record, patient.program)
    patient.version_id += 1
    patient.last_updated = now
    access.db.flush()
    access.audit("update", resource_type="Patient", resource_id=patient.id, patient_id=patient.id)
    return patient


def _prefix_range(column, text: str):  # type: ignore[no-untyped-def]
    # A range, not LIKE, so the index serves the prefix match on every engine.
    return and_(column >= text, column < text + "\uffff")


def _search_statement(query: PatientQuery) -> Select[Patient]:
    stmt = select(Patient)
    if query.program_id is not None:
        stmt = stmt.where(Patient.program_id == query.program_id)
    if query.name:
        # "WILSON, Nora" (how the app itself writes a name) searches as "wilson nora".
        for word in name_words(query.name.replace(",", " "), ""):
            stmt = stmt.where(
                Patient.id.in_(
                    select(PatientNameWord.patient_id).where(
                        _prefix_range(PatientNameWord.word, word)
                    )
                )
            )
    if query.identifier:
        system, _, value = query.identifier.rpartition("|")
        cond = PatientIdentifier.value == value
        if system:
            cond = and_(cond, PatientIdentifier.system == system)
        # A join, not EXISTS: SQLite then starts from the identifier index instead of probing every
        # patient of the program (seconds at 100,000 patients). DISTINCT: one row per patient.
        stmt = (
            stmt.join(PatientIdentifier, PatientIdentifier.patient_id == Patient.id)
            .where(cond)
            .distinct()
        )
    for flt in query.birth_dates:
        col = Patient.birth_date
        stmt = stmt.where(
            {
                "eq": col == flt.day,
                "ne": col != flt.day,
                "lt": col < flt.day,
                "le": col <= flt.day,
                "gt": col > flt.day,
                "ge": col >= flt.day,
            }[flt.prefix]
        )
    if query.in_phase:
        stmt = stmt.where(
            exists().where(
                Episode.patient_id == Patient.id,
                Episode.discharged_at.is_(None),
                Episode.phase == query.in_phase,
            )
        )
    return stmt


def search_patients(
    access: Access, query: PatientQuery, query_text: str = "", *, with_episodes: bool = False
) -> tuple[list[Patient], bool]:
    """A page of patients the actor may see, and whether there are more. `with_episodes`:
    load the page's episodes with it (the list page shows each one's current episode)."""
    # With a name filter, sort the (few) matches rather than let the planner walk the program's
    # family-name index hoping to meet matches early: a rare or absent name then scanned every
    # patient (0.5-1 s at 100,000 on PostgreSQL). `|| ''` keeps that index out of the ORDER BY.
    family_order = Patient.family_lower.concat("") if query.name else Patient.family_lower
    page: Page[Patient] = search_page(
        access,
        "Patient",
        _search_statement(query).options(
            selectinload(Patient.identifiers),
            selectinload(Patient.program),
            *([selectinload(Patient.episodes)] if with_episodes else []),
        ),
        patient_column=Patient.id,
        program_column=Patient.program_id,
        patient_of=lambda p: p.id,
        order=(family_order, Patient.given_lower, Patient.id),
        count=query.count,
        offset=query.offset,
        query_text=query_text,
    )
    return page.rows, page.has_more


# --- episodes of care -----------------------------------------------------------------


def open_episode(patient: Patient) -> Episode | None:
    return next((e for e in patient.episodes if e.discharged_at is None), None)


def admit(
    access: Access,
    patient_id: str,
    unit_id: int,
    phase: str,
    admitted_at: datetime,
    now: datetime | None = None,
) -> Episode:
    now = now or utcnow()
    patient = _load(access, patient_id)
    access.require(Permission.UPDATE, "Episode", patient_ref(patient))
    if phase not in set(Phase):
        raise InvalidInput("phase", f"must be one of {', '.join(Phase)}")
    unit = access.db.get(Unit, unit_id)
    if unit is None or unit.program_id != patient.program_id:
        raise InvalidInput("unit", "choose a unit of the patient's program")
    check_episode_times(admitted_at, now)
    if open_episode(patient) is not None:
        raise InvalidInput("episode", "the patient already has an open episode: discharge it first")
    episode = Episode(
        patient_id=patient.id,
        program_id=patient.program_id,
        unit_id=unit.id,
        phase=phase,
        admitted_at=admitted_at,
        phase_started_at=admitted_at,
    )
    access.db.add(episode)
    episode_changed(access.db, episode)
    access.audit(
        "create", resource_type="EpisodeOfCare", resource_id=str(episode.id), patient_id=patient.id
    )
    return episode


def _episode(access: Access, patient_id: str, episode_id: int) -> Episode:
    episode = access.db.get(Episode, episode_id)
    if episode is None or episode.patient_id != patient_id:
        raise NotFound(f"episode {episode_id} is not known for this patient")
    access.require(Permission.UPDATE, "Episode", PatientRef(patient_id, episode.program_id))
    if episode.discharged_at is not None:
        raise InvalidInput("episode", "this episode is already discharged")
    return episode


def change_phase(
    access: Access,
    patient_id: str,
    episode_id: int,
    phase: str,
    unit_id: int | None,
    now: datetime | None = None,
) -> Episode:
    now = now or utcnow()
    episode = _episode(access, patient_id, episode_id)
    if phase not in set(Phase):
        raise InvalidInput("phase", f"must be one of {', '.join(Phase)}")
    if unit_id is not None:
        unit = access.db.get(Unit, unit_id)
        if unit is None or unit.program_id != episode.program_id:
            raise InvalidInput("unit", "choose a unit of the patient's program")
        episode.unit_id = unit_id
    episode.phase = phase
    episode.phase_started_at = now
    episode_changed(access.db, episode)
    access.audit(
        "update", resource_type="EpisodeOfCare", resource_id=str(episode.id), patient_id=patient_id
    )
    return episode


def discharge(
    access: Access,
    patient_id: str,
    episode_id: int,
    reason: str,
    discharged_at: datetime,
    now: datetime | None = None,
) -> Episode:
    now = now or utcnow()
    episode = _episode(access, patient_id, episode_id)
    check_discharge(episode.admitted_at, discharged_at, reason, now)
    episode.discharged_at = discharged_at
    episode.discharge_reason = reason
    episode_changed(access.db, episode)
    access.audit(
        "update", resource_type="EpisodeOfCare", resource_id=str(episode.id), patient_id=patient_id
    )
    return episode
