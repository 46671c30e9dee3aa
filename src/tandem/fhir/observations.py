"""/fhir/Observation gathers the Observations of several domains (withdrawal scale scores,
recovery use days, craving ratings, drug-screen results), each from its own tables.

Each domain lists an `ObservationSource` in its DOMAIN (`observation_sources`): a prefix its
ids carry (`use-12`; the withdrawal scores keep their plain numbers), a `find` returning its
newest matching rows already filtered by the policy (`access.queries.visible`), and a `read`
by id through the policy, audited. The search here asks the policy once (refusing a patient out
of reach, as every search does), merges the sources newest first, pages, and audits every
patient shown once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import audit_shown, patient_ref
from tandem.errors import NotFound
from tandem.fhir.http import int_id
from tandem.storage.models import Patient

OBSERVATION = "Observation"


@dataclass(frozen=True)
class ObservationSearch:
    patient_id: str | None = None
    codes: tuple[str, ...] = ()  # token values (`system|code`, `system|`, `code`); any may match
    date_ge: datetime | None = None
    date_lt: datetime | None = None


@dataclass(frozen=True)
class Found:
    """One matching row: its sort instant (newest first), id, patient, and how to show it."""

    effective: datetime
    row_id: int
    patient_id: str
    resource: Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class ObservationSource:
    prefix: str  # "" for plain numeric ids
    # At most `limit` rows matching the search, newest first, filtered by the policy; no audit.
    find: Callable[[Access, ObservationSearch, int], list[Found]]
    # One row by its number, through the policy and audited; NotFound when unknown.
    read: Callable[[Access, int], dict[str, Any]]


def resource_id(prefix: str, row_id: int) -> str:
    return f"{prefix}-{row_id}" if prefix else str(row_id)


def search(
    access: Access,
    sources: Sequence[ObservationSource],
    query: ObservationSearch,
    count: int,
    offset: int,
    query_text: str = "",
) -> tuple[list[dict[str, Any]], bool]:
    """A page of Observations from every source, newest first."""
    if query.patient_id is not None:
        patient = access.db.get(Patient, query.patient_id)
        if patient is None:
            access.require(Permission.SEARCH, OBSERVATION)
            access.audit("search", resource_type=OBSERVATION, query=query_text)
            return [], False
        access.require(Permission.SEARCH, OBSERVATION, patient_ref(patient))
    else:
        access.require(Permission.SEARCH, OBSERVATION)
    limit = offset + count + 1
    order = {source.prefix: i for i, source in enumerate(sources)}
    found = sorted(
        ((source.prefix, row) for source in sources for row in source.find(access, query, limit)),
        key=lambda pair: (-pair[1].effective.timestamp(), order[pair[0]], pair[1].row_id),
    )
    page = found[offset : offset + count]
    audit_shown(
        access, OBSERVATION, (row.patient_id for _, row in page), query_text, query.patient_id
    )
    return [row.resource() for _, row in page], len(found) > offset + count


def read(access: Access, sources: Sequence[ObservationSource], raw_id: str) -> dict[str, Any]:
    """One Observation by its id (`123`, `use-12`): the source its prefix names reads it."""
    prefix, _, number = raw_id.rpartition("-")
    for source in sources:
        if source.prefix == prefix:
            return source.read(access, int_id(number, OBSERVATION))
    shown = raw_id if len(raw_id) <= 40 else raw_id[:40] + "…"
    raise NotFound(f"{OBSERVATION}/{shown} is not known")
