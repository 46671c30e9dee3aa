"""FHIR Patient: read, create, update (If-Match) and search. Thin: parse, call the service
(which asks the policy through the data-access layer), answer."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response

from tandem.access.guard import Access
from tandem.errors import InvalidInput
from tandem.fhir import patient as patient_map
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    MAX_COUNT,
    fhir_body,
    fhir_response,
    fhir_router,
    paging,
    searchset,
)
from tandem.fhir.outcome import FhirError
from tandem.patients import service
from tandem.patients.records import PatientQuery, parse_date_filter
from tandem.web.deps import api_access

router = fhir_router()

FHIR_RESOURCES = (
    ResourceSupport(
        type="Patient",
        interactions=("read", "create", "update", "search-type"),
        versioning="versioned",
        search_params=(
            SearchParam("name", "string", "prefix of a family or given name, case-insensitive"),
            SearchParam("identifier", "token", "system|value or value (MRN)"),
            SearchParam(
                "birthdate", "date", "YYYY-MM-DD with optional prefix eq, ne, lt, le, gt, ge"
            ),
            SearchParam("_count", "number", f"page size, at most {MAX_COUNT}"),
            SearchParam("_offset", "number", "where the page starts (follow the next link)"),
        ),
    ),
)


def _patient_headers(request: Request, resource: dict[str, Any]) -> dict[str, str]:
    return {
        "ETag": f'W/"{resource["meta"]["versionId"]}"',
        "Last-Modified": resource["meta"]["lastUpdated"],
        "Location": str(request.base_url).rstrip("/")
        + f"/fhir/Patient/{resource['id']}/_history/{resource['meta']['versionId']}",
    }


@router.post("/Patient")
def create_patient(
    request: Request,
    body: dict[str, Any] = Depends(fhir_body("Patient")),
    access: Access = Depends(api_access),
) -> Response:
    record, program_id = patient_map.from_fhir(body)
    patient = service.create_patient(access, record, program_id)
    resource = patient_map.to_fhir(patient)
    return fhir_response(resource, 201, _patient_headers(request, resource))


@router.get("/Patient/{patient_id}")
def read_patient(
    patient_id: str, request: Request, access: Access = Depends(api_access)
) -> Response:
    patient = service.get_patient(access, patient_id)
    resource = patient_map.to_fhir(patient)
    headers = _patient_headers(request, resource)
    headers.pop("Location")
    return fhir_response(resource, headers=headers)


def _if_match(request: Request) -> int | None:
    if_match = request.headers.get("if-match")
    if not if_match:
        return None
    digits = if_match.removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise FhirError(400, "invalid", 'If-Match must look like W/"3"')
    return int(digits)


@router.put("/Patient/{patient_id}")
def update_patient(
    patient_id: str,
    request: Request,
    body: dict[str, Any] = Depends(fhir_body("Patient")),
    access: Access = Depends(api_access),
) -> Response:
    if body.get("id") != patient_id:
        raise FhirError(400, "invalid", "the body's id must match the URL", ["Patient.id"])
    version = _if_match(request)
    record, _program = patient_map.from_fhir(body)
    patient = service.update_patient(access, patient_id, record, if_match=version)
    resource = patient_map.to_fhir(patient)
    return fhir_response(resource, headers=_patient_headers(request, resource))


@router.get("/Patient")
def search_patients(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"name", "identifier", "birthdate"})
    params = request.query_params
    try:
        query = PatientQuery(
            name=params.get("name") or None,
            identifier=params.get("identifier") or None,
            birth_dates=tuple(parse_date_filter(v) for v in params.getlist("birthdate")),
            count=count,
            offset=offset,
        )
    except InvalidInput as exc:
        raise FhirError(400, "invalid", exc.message, [exc.field]) from None
    patients, has_more = service.search_patients(access, query, query_text=str(request.url.query))
    bundle = searchset(
        request, "Patient", [patient_map.to_fhir(p) for p in patients], count, offset, has_more
    )
    return fhir_response(bundle)
