"""The one way to patient data: read a row, filter a query, page a search; always through the
policy, always audited. Every domain, page, FHIR route and CLI command reads patient data here.

Deny by default: a statement is filtered to what the actor may see *before* it runs (never
after), and a patient out of reach is refused (403, audited) whether it was read by id or
named in a search. Consent (42 CFR Part 2) is one more input to `access.policy`: a patient of
another program is within reach when a valid consent names the actor's program for treatment
(`Access.require` loads their consents once per request), and the WHERE clause of `visible`
then adds that patient's rows. No domain has consent code of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import ColumnElement, Select, and_, bindparam, false, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, joinedload, selectinload

from tandem.access.consents import patient_program_and_grants
from tandem.access.guard import Access
from tandem.access.policy import PatientRef, Permission, decide, may_rest_on_consent
from tandem.errors import NotFound
from tandem.storage.models import Patient, PatientIdentifier, Program, mrn_system_of

T = TypeVar("T")
Row = TypeVar("Row", bound="PatientOwned")


class PatientOwned(Protocol):
    """A stored row of a patient's record: every such table has these two columns."""

    patient_id: Any
    program_id: Any


def patient_ref(patient: Patient) -> PatientRef:
    return PatientRef(patient.id, patient.program_id)


def row_ref(row: PatientOwned) -> PatientRef:
    return PatientRef(row.patient_id, row.program_id)


def load_patient(
    access: Access,
    patient_id: str,
    *also: tuple[Permission, str],
    read: Permission | None = Permission.READ,
    audit: bool = True,
    for_update: bool = False,
) -> Patient:
    """The patient, once the policy allows reading the chart (`read`) and every operation in
    `also` (e.g. `(Permission.CREATE, "Observation")`). Every check comes before anything is
    written. Audited as a read of the Patient unless `audit` is False (the caller audits what
    it does with the record instead). `for_update`: lock the row until the unit of work ends
    (PostgreSQL), so a concurrent change waits instead of interleaving."""
    statement = (
        select(Patient)
        .where(Patient.id == patient_id)
        .options(joinedload(Patient.program), selectinload(Patient.identifiers))
    )
    if for_update:
        statement = statement.with_for_update(of=Patient)
    patient = access.db.scalar(statement)
    if patient is None:
        raise NotFound(f"Patient/{patient_id} is not known")
    ref = patient_ref(patient)
    if read is not None:
        access.require(read, "Patient", ref, resource_id=patient_id)
    for permission, resource_type in also:
        access.require(permission, resource_type, ref, resource_id=patient_id)
    if audit and read is not None:
        access.audit("read", resource_type="Patient", resource_id=patient.id, patient_id=patient.id)
    return patient


@dataclass(frozen=True)
class ProgramView:
    name: str
    mrn_system: str


@dataclass(frozen=True)
class IdentifierView:
    system: str
    value: str


@dataclass(frozen=True)
class PatientView:
    """A patient as read for showing (FHIR read, vread): plain values, no ORM object. The
    same attributes `fhir.patient.to_fhir` reads from a stored `Patient`."""

    id: str
    program_id: int
    family: str
    given: str
    given_names: list[str] | None
    gender: str | None
    birth_date: date | None
    phone: str | None
    email: str | None
    active: bool
    synthetic: bool
    version_id: int
    last_updated: datetime
    family_lower: str  # the search's sort key (and its paging cursor)
    given_lower: str
    program: ProgramView
    identifiers: tuple[IdentifierView, ...]


# What a PatientView holds of the patients table, in its field order.
PATIENT_VIEW_COLUMNS = (
    Patient.id,
    Patient.program_id,
    Patient.family,
    Patient.given,
    Patient.given_names,
    Patient.gender,
    Patient.birth_date,
    Patient.phone,
    Patient.email,
    Patient.active,
    Patient.synthetic,
    Patient.version_id,
    Patient.last_updated,
    Patient.family_lower,
    Patient.given_lower,
)
_VIEW_WIDTH = len(PATIENT_VIEW_COLUMNS)

# The patient, their program and their identifiers in one statement of Core SQL (one row per
# identifier, in the order they were added). Built once; only the id changes.
_PATIENT_VIEW = (
    select(
        *PATIENT_VIEW_COLUMNS,
        Program.name,
        Program.code,
        PatientIdentifier.system,
        PatientIdentifier.value,
    )
    .join(Program, Program.id == Patient.program_id)
    .outerjoin(PatientIdentifier, PatientIdentifier.patient_id == Patient.id)
    .where(Patient.id == bindparam("patient_id"))
    .order_by(PatientIdentifier.id)
)
_IDENTIFIERS_OF = (
    select(PatientIdentifier.patient_id, PatientIdentifier.system, PatientIdentifier.value)
    .where(PatientIdentifier.patient_id.in_(bindparam("patient_ids", expanding=True)))
    .order_by(PatientIdentifier.id)
)
_PROGRAMS = select(Program.id, Program.name, Program.code).where(
    Program.id.in_(bindparam("program_ids", expanding=True))
)


def _view(
    row: Sequence[Any], program: ProgramView, identifiers: tuple[IdentifierView, ...]
) -> PatientView:
    fields: Any = PatientView  # positional: the columns in the dataclass's field order
    return fields(*row[:_VIEW_WIDTH], program, identifiers)  # type: ignore[no-any-return]


def patient_views(access: Access, rows: Sequence[Sequence[Any]]) -> list[PatientView]:
    """Patients already read through the policy (rows of PATIENT_VIEW_COLUMNS, e.g. a page of
    `search_page`), with their programs and identifiers: two statements for the whole page."""
    if not rows:
        return []
    connection = access.db.connection()
    identifiers: dict[str, list[IdentifierView]] = {}
    for patient_id, system, value in connection.execute(
        _IDENTIFIERS_OF, {"patient_ids": [r[0] for r in rows]}
    ):
        identifiers.setdefault(patient_id, []).append(IdentifierView(system, value))
    programs = {
        program_id: ProgramView(name, mrn_system_of(code))
        for program_id, name, code in connection.execute(
            _PROGRAMS, {"program_ids": sorted({r[1] for r in rows})}
        )
    }
    return [_view(r, programs[r[1]], tuple(identifiers.get(r[0], ()))) for r in rows]


def read_patient(access: Access, patient_id: str) -> PatientView:
    """A patient to show, once the policy allows reading the chart; audited as a read. The
    same decision and the same audit entry as `load_patient`, read in one round trip and
    without ORM objects (the FHIR read by id, the busiest request of all)."""
    rows = access.db.connection().execute(_PATIENT_VIEW, {"patient_id": patient_id}).all()
    if not rows:
        raise NotFound(f"Patient/{patient_id} is not known")
    first = rows[0]
    ref = PatientRef(first.id, first.program_id)
    access.require(Permission.READ, "Patient", ref, resource_id=patient_id)
    access.audit("read", resource_type="Patient", resource_id=first.id, patient_id=first.id)
    return _view(
        first,
        ProgramView(first.name, mrn_system_of(first.code)),
        tuple(IdentifierView(r.system, r.value) for r in rows if r.system is not None),
    )


def locate_patient(access: Access, patient_id: str) -> PatientRef | None:
    """Whose program a patient named in a search belongs to (None: unknown), in one round trip
    that also reads their consents when the actor's decision can turn on them."""
    if not may_rest_on_consent(access.actor):
        patient = access.db.get(Patient, patient_id)
        return patient_ref(patient) if patient is not None else None
    program_id, grants = patient_program_and_grants(access.db, patient_id, access.actor.program_ids)
    if program_id is None:
        return None
    if grants is not None:
        access.remember_consents(patient_id, grants)
    return PatientRef(patient_id, program_id)


def read_row(
    access: Access,
    resource_type: str,
    model: type[Row],
    row_id: int | str,
    *,
    permission: Permission = Permission.READ,
) -> Row:
    """One stored row of a patient's record by id, through the policy and audited.
    Unknown ids are NotFound; a row of a patient out of reach is refused and audited."""
    row = access.db.get(model, row_id)
    if row is None:
        raise NotFound(f"{resource_type}/{row_id} is not known")
    access.require(permission, resource_type, row_ref(row), resource_id=str(row_id))
    if permission is Permission.READ:
        access.audit(
            "read", resource_type=resource_type, resource_id=str(row_id), patient_id=row.patient_id
        )
    return row


def visible(
    access: Access,
    resource_type: str,
    patient_column: InstrumentedAttribute[Any] | ColumnElement[Any],
    program_column: InstrumentedAttribute[Any] | ColumnElement[Any],
) -> ColumnElement[bool]:
    """The WHERE clause limiting a statement to the rows of `resource_type` the actor may see."""
    seen = access.visibility(resource_type)
    if seen.nothing:
        return false()
    if seen.only_patient_id is not None:
        if seen.consented_patient_ids:  # an app launched for a patient seen under consent
            return patient_column == seen.only_patient_id
        if seen.program_ids:  # a member of staff's app launched for one patient of their programs
            return and_(
                patient_column == seen.only_patient_id,
                program_column.in_(sorted(seen.program_ids)),
            )
        return patient_column == seen.only_patient_id
    own = program_column.in_(sorted(seen.program_ids))
    if seen.consented_patient_ids:
        return or_(own, patient_column.in_(sorted(seen.consented_patient_ids)))
    return own


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    has_more: bool


def search_page(
    access: Access,
    resource_type: str,
    statement: Select[Any],
    *,
    patient_column: InstrumentedAttribute[Any] | ColumnElement[Any],
    program_column: InstrumentedAttribute[Any] | ColumnElement[Any],
    patient_of: Callable[[T], str],
    order: Sequence[Any] = (),
    patient_id: str | None = None,
    count: int = 20,
    offset: int = 0,
    query_text: str = "",
    scalars: bool = True,
) -> Page[T]:
    """A page of `statement`'s rows the actor may see, audited with every patient it shows.

    `patient_id`: a search for one patient's records. That patient must be within reach (the
    search is refused and audited otherwise, on every resource type alike); an unknown
    patient matches nothing. `scalars=False` for statements selecting several entities."""
    if patient_id is not None:
        ref = locate_patient(access, patient_id)
        if ref is None:
            access.require(Permission.SEARCH, resource_type)
            access.audit("search", resource_type=resource_type, query=query_text)
            return Page([], False)
        access.require(Permission.SEARCH, resource_type, ref)
        statement = statement.where(patient_column == patient_id)
    else:
        access.require(Permission.SEARCH, resource_type)
    statement = (
        statement.where(visible(access, resource_type, patient_column, program_column))
        .order_by(*order)
        .offset(offset)
        .limit(count + 1)
    )
    result = access.db.execute(statement)
    found: Iterable[Any] = result.scalars() if scalars else result
    rows: list[T] = list(found)
    has_more = len(rows) > count
    rows = rows[:count]
    audit_shown(access, resource_type, (patient_of(r) for r in rows), query_text, patient_id)
    return Page(rows, has_more)


def count_visible(
    access: Access,
    resource_type: str,
    statement: Select[Any],
    *,
    patient_column: InstrumentedAttribute[Any] | ColumnElement[Any],
    program_column: InstrumentedAttribute[Any] | ColumnElement[Any],
    query_text: str = "",
) -> int:
    """How many of `statement`'s rows the actor may see (a search asking only for its total,
    `_summary=count`): the same policy and filter as `search_page`, audited as a search that
    showed no patient."""
    access.require(Permission.SEARCH, resource_type)
    visible_rows = statement.where(visible(access, resource_type, patient_column, program_column))
    total = access.db.scalar(select(func.count()).select_from(visible_rows.subquery()))
    access.audit("search", resource_type=resource_type, query=query_text, shown=())
    return int(total or 0)


def synthetic_patient_ids(access: Access, patient_ids: Iterable[str]) -> set[str]:
    """Which of these patients (already read through the policy) are synthetic test data."""
    wanted = sorted(set(patient_ids))
    if not wanted:
        return set()
    return set(
        access.db.scalars(select(Patient.id).where(Patient.id.in_(wanted), Patient.synthetic))
    )


def audit_shown(
    access: Access,
    resource_type: str,
    patients: Iterable[str],
    query_text: str = "",
    patient_id: str | None = None,
) -> None:
    """Audit a list view or search: what was asked, and each patient it showed."""
    access.audit(
        "search",
        resource_type=resource_type,
        query=query_text,
        patient_id=patient_id,
        shown=patients,
    )


def readable_patients(access: Access, patient_ids: Iterable[str], why: str = "") -> list[Patient]:
    """The patients named by what a search showed (`_include`), those the policy lets the actor
    read, each audited as a read. One the actor may not read is left out, not refused: the
    search itself was allowed, and an include adds to it."""
    wanted = sorted(set(patient_ids))
    if not wanted:
        return []
    rows = access.db.scalars(
        select(Patient)
        .where(Patient.id.in_(wanted))
        .options(joinedload(Patient.program), selectinload(Patient.identifiers))
        .order_by(Patient.id)
    )
    shown = [p for p in rows if decide(access.actor, Permission.READ, "Patient", patient_ref(p))]
    for patient in shown:
        access.audit(
            "read",
            resource_type="Patient",
            resource_id=patient.id,
            patient_id=patient.id,
            query=why,
        )
    return shown
