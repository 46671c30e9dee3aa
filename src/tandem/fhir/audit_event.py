"""The audit trail read as FHIR AuditEvent: administrators only, and read-only (no route writes)."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, time
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import false, true

from tandem.access import administration
from tandem.access.guard import Access
from tandem.access.policy import may_read_audit
from tandem.errors import InvalidInput
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    CURSOR,
    cursor_token,
    fhir_router,
    keyset_searchset,
    paging,
    read_cursor,
)
from tandem.fhir.outcome import FhirError, FhirJSONResponse
from tandem.fhir.output import checked
from tandem.patients.records import parse_date_filter
from tandem.storage.models import AuditEntry
from tandem.web.deps import api_access

router = fhir_router()

FHIR_RESOURCES = (
    ResourceSupport(
        type="AuditEvent",
        interactions=("read", "search-type"),
        search_params=(
            SearchParam("patient", "reference", "Patient/<id> or <id>"),
            SearchParam("date", "date", "recorded day, with prefix ge, le, gt, lt, eq"),
            SearchParam("outcome", "token", "0 success, 4 refused or invalid, 8 failed"),
            SearchParam("_count", "number"),
            SearchParam("_offset", "number"),
            CURSOR,
        ),
        documentation="Administrators only. Every read or write of patient data, sign-in and refusal.",
    ),
)

_REST = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
_DICOM = "http://dicom.nema.org/resources/ontology/DCM"
_LOGIN = {"system": _DICOM, "code": "110114", "display": "User Authentication"}
_INTERACTIONS = {
    "read": "read",
    "search": "search-type",
    "create": "create",
    "update": "update",
    "delete": "delete",
}


def to_fhir(entry: AuditEntry) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(entry.id),
        "meta": {"lastUpdated": entry.recorded_at.isoformat()},
        "recorded": entry.recorded_at.isoformat(),
        "action": entry.action,
        "outcome": entry.outcome,
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                            "code": "humanuser",
                            "display": "human user",
                        }
                    ]
                },
                "who": {
                    "display": entry.actor,
                    **(
                        {"identifier": {"system": "urn:tandem:user", "value": str(entry.user_id)}}
                        if entry.user_id is not None
                        else {}
                    ),
                },
                **({"role": [{"text": entry.role}]} if entry.role else {}),
                "requestor": True,
                **(
                    {"network": {"address": entry.source_ip, "type": "2"}}
                    if entry.source_ip
                    else {}
                ),
            }
        ],
        "source": {"observer": {"display": f"Tandem ({entry.channel})"}},
    }
    if entry.operation in ("login", "logout", "authenticate"):
        resource["type"] = _LOGIN
        resource["subtype"] = [
            {
                "system": _DICOM,
                "code": "110122" if entry.operation != "logout" else "110123",
                "display": "Login" if entry.operation != "logout" else "Logout",
            }
        ]
    else:
        resource["type"] = _REST
        if entry.operation in _INTERACTIONS:
            resource["subtype"] = [
                {
                    "system": "http://hl7.org/fhir/restful-interaction",
                    "code": _INTERACTIONS[entry.operation],
                }
            ]
    if entry.outcome_detail:
        resource["outcomeDesc"] = entry.outcome_detail
    entities: list[dict[str, Any]] = []
    if entry.patient_id:
        entities.append(
            {
                "what": {"reference": f"Patient/{entry.patient_id}"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
            }
        )
    if entry.resource_type and entry.resource_id and entry.resource_type != "Patient":
        entities.append({"what": {"display": f"{entry.resource_type}/{entry.resource_id}"}})
    if entry.query:
        entities.append(
            {
                "query": base64.b64encode(entry.query.encode()).decode(),
                "description": entry.resource_type,
            }
        )
    if entities:
        resource["entity"] = entities
    return checked(AuditEvent, resource)


def _guard(access: Access) -> None:
    access.require_decision(may_read_audit(access.actor), "search", "AuditEvent")


@router.get("/AuditEvent/{entry_id}")
def read_audit_event(entry_id: int, access: Access = Depends(api_access)) -> Response:
    _guard(access)
    entry = administration.audit_entry(access, entry_id)
    if entry is None:
        raise FhirError(404, "not-found", f"AuditEvent/{entry_id} is not known")
    access.audit(
        "read", resource_type="AuditEvent", resource_id=str(entry_id), patient_id=entry.patient_id
    )
    return FhirJSONResponse(to_fhir(entry))


@router.get("/AuditEvent")
def search_audit_events(request: Request, access: Access = Depends(api_access)) -> Response:
    _guard(access)
    count, offset = paging(request, {"patient", "date", "outcome", "_cursor"})
    after = read_cursor(request, 1)
    params = request.query_params
    if params.get("patient"):
        patient_id = params["patient"].removeprefix("Patient/")
        stmt = administration.audit_entries_of(access, patient_id)
    else:
        stmt = administration.audit_entries(access)
    if params.get("outcome"):
        stmt = stmt.where(AuditEntry.outcome == params["outcome"])
    for value in params.getlist("date"):
        try:
            flt = parse_date_filter(value)
        except InvalidInput as exc:
            raise FhirError(400, "invalid", exc.message, ["date"]) from None
        col = AuditEntry.recorded_at
        start = datetime.combine(flt.day, time(0), tzinfo=UTC)
        end = datetime.combine(flt.end, time(0), tzinfo=UTC) if flt.end < date.max else None
        stmt = stmt.where(
            {
                "eq": (col >= start) & (col < end) if end else col >= start,
                "ne": (col < start) | (col >= end) if end else col < start,
                "lt": col < start,
                "le": col < end if end else true(),
                "gt": col >= end if end else false(),
                "ge": col >= start,
            }[flt.prefix]
        )
    if after is not None:
        # Newest first, by id: the next page starts below the last id shown.
        stmt = stmt.where(AuditEntry.id < int(after[0]))
    rows = list(
        access.db.scalars(stmt.order_by(AuditEntry.id.desc()).offset(offset).limit(count + 1))
    )
    has_more = len(rows) > count
    rows = rows[:count]
    bundle = keyset_searchset(
        request,
        "AuditEvent",
        [to_fhir(r) for r in rows],
        count,
        cursor_token([rows[-1].id]) if has_more else None,
    )
    access.audit("search", resource_type="AuditEvent", query=str(request.url.query))
    return FhirJSONResponse(bundle)
