"""Reading medication records through the data-access layer (`tandem.access.queries`): a page
of an API search, one row by id, and one patient's list for the chart. Each is filtered by the
policy before it runs and audited with the patients it showed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import (
    Page,
    PatientOwned,
    audit_shown,
    patient_ref,
    read_row,
    search_page,
    visible,
)
from tandem.storage.models import Patient

__all__ = ["Page", "get_row", "patient_rows", "search"]

T = TypeVar("T")
Row = TypeVar("Row", bound=PatientOwned)


def search(
    access: Access,
    resource_type: str,
    model: type[Row],
    order: Sequence[Any],
    patient_id: str | None,
    count: int,
    offset: int,
    query_text: str = "",
    extra: Sequence[Any] = (),
) -> Page[Row]:
    """A page of `model` rows the actor may see, optionally for one patient (refused, not
    emptied, when that patient is out of reach)."""
    return search_page(
        access,
        resource_type,
        select(model).where(*extra),
        patient_column=model.patient_id,
        program_column=model.program_id,
        patient_of=lambda row: str(row.patient_id),
        order=order,
        patient_id=patient_id,
        count=count,
        offset=offset,
        query_text=query_text,
    )


def get_row(access: Access, resource_type: str, model: type[Row], row_id: int) -> Row:
    """One row by id: NotFound when unknown, refused (and audited) when out of reach."""
    return read_row(access, resource_type, model, row_id)


def patient_rows(
    access: Access,
    resource_type: str,
    model: type[PatientOwned],
    statement: Select[T],
    patient: Patient,
    query_text: str,
) -> list[T]:
    """`statement`'s rows of one patient's `model` records, for a chart list: the actor must
    be allowed to search them for this patient; audited as a search that showed the patient."""
    access.require(Permission.SEARCH, resource_type, patient_ref(patient))
    statement = statement.where(
        model.patient_id == patient.id,
        visible(access, resource_type, model.patient_id, model.program_id),
    )
    rows = list(access.db.scalars(statement))
    audit_shown(access, resource_type, [patient.id], query_text, patient.id)
    return rows
