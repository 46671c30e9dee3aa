"""Patients and episodes in storage. Every function asks the policy and audits through `Access`."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, time
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, and_, exists, false, or_, select, true, tuple_
from sqlalchemy.orm import InstrumentedAttribute, aliased, selectinload

from tandem.access.guard import Access
from tandem.access.policy import PatientRef, Permission
from tandem.access.queries import (
    PATIENT_VIEW_COLUMNS,
    Page,
    PatientView,
    count_visible,
    load_patient,
    patient_ref,
    patient_views,
    read_patient,
    search_page,
)
from tandem.errors import Conflict, InvalidInput, NotFound
from tandem.patients.episodes import episode_changed
from tandem.patients.records import (
    DateFilter,
    Identifier,
    PatientQuery,
    PatientRecord,
    Phase,
    check_discharge,
    check_episode_times,
    check_identifiers,
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
    new_id,
)


def _load(access: Access, patient_id: str) -> Patient:
    """The patient row, locked for this change, unchecked: every caller asks the policy for its
    own operation next."""
    return load_patient(access, patient_id, read=None, for_update=True)


def get_patient(access: Access, patient_id: str) -> Patient:
    return load_patient(access, patient_id)


def show_patient(access: Access, patient_id: str) -> PatientView:
    """The patient as shown by a FHIR read: the same policy and audit, plain values."""
    return read_patient(access, patient_id)


def _apply(patient: Patient, record: PatientRecord) -> None:
    patient.family = record.family
    patient.given = " ".join(record.given)
    patient.given_names = list(record.given)
    patient.family_lower = record.family.lower()
    patient.given_lower = " ".join(record.given).lower()
    patient.gender = record.gender
    patient.birth_date = record.birth_date
    patient.phone = record.phone
    patient.email = record.email
    patient.active = record.active


def _identifiers(access: Access, patient: Patient, record: PatientRecord, program: Program) -> None:
    stored = tuple(Identifier(i.system, i.value) for i in patient.identifiers)
    wanted = check_identifiers(
        record.identifiers, program.mrn_system, stored, new_mrn=_new_mrn(program)
    )
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
    patient = Patient(
        id=new_id(),
        program_id=program_id,
        version_id=1,
        last_updated=now,
        synthetic=bool(record.synthetic) or program.synthetic,
        identifiers=[],  # a new patient has none yet: nothing to load
    )
    patient.program = program
    _apply(patient, record)
    access.db.add(patient)
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
    *,
    program_id: int | None = None,
) -> Patient:
    """`program_id`: the program the sender names (None: not named). A patient changes
    program by transfer, never by an update: naming another program is refused."""
    now = now or utcnow()
    patient = _load(access, patient_id)
    access.require(Permission.UPDATE, "Patient", patient_ref(patient), resource_id=patient_id)
    if if_match is not None and if_match != patient.version_id:
        raise Conflict(f"Patient/{patient_id} is at version {patient.version_id}, not {if_match}")
    if program_id is not None and program_id != patient.program_id:
        raise InvalidInput(
            "managingOrganization",
            f"the patient belongs to Organization/{patient.program_id}; moving a patient "
            "between programs is not done by an update",
        )
    if record.synthetic is not None and record.synthetic != patient.synthetic:
        raise InvalidInput(
            "meta.security",
            "the synthetic-data marker (HTEST) is set when a record is made and is not changed "
            "by an update",
        )
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


def _name_matches(text: str) -> ColumnElement[bool]:
    """Every word of `text` starts a word of the patient's name. "WILSON, Nora" (how the app
    itself writes a name) searches as "wilson nora"."""
    words = sorted(name_words(text.replace(",", " "), "")) or [""]
    return and_(
        *(
            Patient.id.in_(
                select(PatientNameWord.patient_id).where(_prefix_range(PatientNameWord.word, w))
            )
            for w in words
        )
    )


def _identifier_matches(token: str) -> ColumnElement[bool]:
    system, bar, value = token.rpartition("|")
    cond = PatientIdentifier.value == value
    if bar and system:
        cond = and_(cond, PatientIdentifier.system == system)
    return Patient.id.in_(select(PatientIdentifier.patient_id).where(cond))


def _date_matches(col: InstrumentedAttribute[Any], flt: DateFilter) -> ColumnElement[bool]:
    conditions: dict[str, ColumnElement[bool]] = {
        "eq": and_(col >= flt.day, col < flt.end),
        "ne": or_(col < flt.day, col >= flt.end),
        "lt": col < flt.day,
        "le": col < flt.end,
        "gt": col >= flt.end,
        "ge": col >= flt.day,
    }
    return conditions[flt.prefix]


def _moment_matches(col: InstrumentedAttribute[Any], flt: DateFilter) -> ColumnElement[bool]:
    """A day-precision date filter on a time column (days in UTC)."""
    start = datetime.combine(flt.day, time(0), tzinfo=UTC)
    if flt.end >= date.max:
        return {
            "eq": col >= start,
            "ne": col < start,
            "lt": col < start,
            "le": true(),
            "gt": false(),
            "ge": col >= start,
        }[flt.prefix]
    end = datetime.combine(flt.end, time(0), tzinfo=UTC)
    conditions: dict[str, ColumnElement[bool]] = {
        "eq": and_(col >= start, col < end),
        "ne": or_(col < start, col >= end),
        "lt": col < start,
        "le": col < end,
        "gt": col >= end,
        "ge": col >= start,
    }
    return conditions[flt.prefix]


_SORT_COLUMNS: dict[str, InstrumentedAttribute[Any]] = {
    "family": Patient.family_lower,
    "given": Patient.given_lower,
    "birthdate": Patient.birth_date,
    "_lastUpdated": Patient.last_updated,
    "_id": Patient.id,
}


def _search_statement(query: PatientQuery) -> Select[Patient]:
    stmt = select(Patient)
    if query.program_id is not None:
        stmt = stmt.where(Patient.program_id == query.program_id)
    for names in query.names:
        stmt = stmt.where(or_(*(_name_matches(n) for n in names)))
    single = [g[0] for g in query.identifiers if len(g) == 1]
    for token in single:
        system, bar, value = token.rpartition("|")
        # A join, not EXISTS: SQLite then starts from the identifier index instead of probing
        # every patient of the program (seconds at 100,000 patients). DISTINCT: one row each.
        found = aliased(PatientIdentifier)
        stmt = stmt.join(found, found.patient_id == Patient.id).where(
            found.value == value, *([found.system == system] if bar and system else [])
        )
    if single:
        stmt = stmt.distinct()
    for tokens in (g for g in query.identifiers if len(g) > 1):
        stmt = stmt.where(or_(*(_identifier_matches(t) for t in tokens)))
    for flts in query.birth_dates:
        stmt = stmt.where(or_(*(_date_matches(Patient.birth_date, f) for f in flts)))
    for families in query.families:
        stmt = stmt.where(
            or_(*(Patient.family_lower.startswith(f.lower(), autoescape=True) for f in families))
        )
    for givens in query.givens:
        stmt = stmt.where(
            or_(
                *(
                    or_(
                        Patient.given_lower.startswith(g.lower(), autoescape=True),
                        Patient.given_lower.contains(" " + g.lower(), autoescape=True),
                    )
                    for g in givens
                )
            )
        )
    for genders in query.genders:
        stmt = stmt.where(Patient.gender.in_(genders))
    for ids in query.ids:
        stmt = stmt.where(Patient.id.in_(ids))
    for flts in query.last_updated:
        stmt = stmt.where(or_(*(_moment_matches(Patient.last_updated, f) for f in flts)))
    if query.in_phase:
        stmt = stmt.where(
            exists().where(
                Episode.patient_id == Patient.id,
                Episode.discharged_at.is_(None),
                Episode.phase == query.in_phase,
            )
        )
    return stmt


def count_patients(access: Access, query: PatientQuery, query_text: str = "") -> int:
    """How many patients the search matches among those the actor may see."""
    return count_visible(
        access,
        "Patient",
        _search_statement(query),
        patient_column=Patient.id,
        program_column=Patient.program_id,
        query_text=query_text,
    )


def _order(query: PatientQuery) -> tuple[Any, ...]:
    # With a name filter, sort the (few) matches rather than let the planner walk the program's
    # family-name index hoping to meet matches early: a rare or absent name then scanned every
    # patient (0.5-1 s at 100,000 on PostgreSQL). `|| ''` keeps that index out of the ORDER BY.
    family_order = Patient.family_lower.concat("") if query.names else Patient.family_lower
    if query.sort:
        return (
            *(
                (_SORT_COLUMNS[k].desc() if desc else _SORT_COLUMNS[k].asc()).nulls_last()
                for k, desc in query.sort
            ),
            Patient.id,
        )
    return (family_order, Patient.given_lower, Patient.id)


def search_patients(
    access: Access, query: PatientQuery, query_text: str = "", *, with_episodes: bool = False
) -> tuple[list[Patient], bool]:
    """A page of patients the actor may see, and whether there are more. `with_episodes`:
    load the page's episodes with it (the list page shows each one's current episode)."""
    order = _order(query)
    statement = _search_statement(query)
    if query.after is not None and not query.sort:
        # Keyset paging: the page starts after the last row shown, however rows were written.
        statement = statement.where(
            tuple_(Patient.family_lower, Patient.given_lower, Patient.id) > tuple_(*query.after)
        )
    page: Page[Patient] = search_page(
        access,
        "Patient",
        statement.options(
            selectinload(Patient.identifiers),
            selectinload(Patient.program),
            *([selectinload(Patient.episodes)] if with_episodes else []),
        ),
        patient_column=Patient.id,
        program_column=Patient.program_id,
        patient_of=lambda p: p.id,
        order=order,
        count=query.count,
        offset=query.offset,
        query_text=query_text,
    )
    return page.rows, page.has_more


def search_patient_views(
    access: Access, query: PatientQuery, query_text: str = ""
) -> tuple[list[PatientView], bool]:
    """`search_patients` for showing only (the FHIR search): the same statement, policy, order,
    paging and audit, read as plain values instead of ORM objects."""
    statement = cast(Select[Any], _search_statement(query).with_only_columns(*PATIENT_VIEW_COLUMNS))
    if query.after is not None and not query.sort:
        statement = statement.where(
            tuple_(Patient.family_lower, Patient.given_lower, Patient.id) > tuple_(*query.after)
        )
    page: Page[Any] = search_page(
        access,
        "Patient",
        statement,
        patient_column=Patient.id,
        program_column=Patient.program_id,
        patient_of=lambda row: row[0],
        order=_order(query),
        count=query.count,
        offset=query.offset,
        query_text=query_text,
        scalars=False,
    )
    return patient_views(access, page.rows), page.has_more


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


def episode_to_change(access: Access, patient_id: str, episode_id: int) -> Episode:
    """The patient's open episode that this person may change: 404 when there is none by that
    id, 403 when refused (audited). Pages ask before reading the form."""
    return _episode(access, patient_id, episode_id)


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
