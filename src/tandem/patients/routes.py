"""FHIR Patient: read, create, update (If-Match) and search. Thin: parse, call the service
(which asks the policy through the data-access layer), answer."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from tandem.access.guard import Access
from tandem.errors import InvalidInput
from tandem.fhir import patient as patient_map
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    MAX_COUNT,
    base_url,
    fhir_body,
    fhir_response,
    fhir_router,
    not_modified,
    paging,
    search_values,
    searchset,
    version_headers,
)
from tandem.fhir.outcome import FhirError
from tandem.patients import service
from tandem.patients.records import PatientQuery, parse_date_filter
from tandem.storage.models import Patient
from tandem.web.deps import api_access

router = fhir_router()
SEARCHED = ("name", "identifier", "birthdate")

FHIR_RESOURCES = (
    ResourceSupport(
        type="Patient",
        interactions=("read", "vread", "create", "update", "search-type"),
        versioning="versioned",
        extras={"conditionalCreate": True},
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


def _patient_headers(resource: dict[str, Any], patient: Patient) -> dict[str, str]:
    return version_headers(resource["meta"]["versionId"], patient.last_updated)


def _location(request: Request, resource: dict[str, Any]) -> str:
    return f"{base_url(request)}/Patient/{resource['id']}/_history/{resource['meta']['versionId']}"


@router.post("/Patient")
def create_patient(
    request: Request,
    body: dict[str, Any] = Depends(fhir_body("Patient")),
    access: Access = Depends(api_access),
) -> Response:
    record, program_id = patient_map.from_fhir(body)
    condition = request.headers.get("if-none-exist")
    if condition is not None:
        # Conditional create: one match is answered as it is, several are refused.
        params = QueryParams(condition.removeprefix("Patient?"))
        unknown = sorted(set(params) - set(SEARCHED))
        if unknown:
            raise FhirError(
                400,
                "not-supported",
                f"If-None-Exist: unknown search parameter {', '.join(unknown)}",
                ["If-None-Exist"],
            )
        matches, _more = service.search_patients(
            access, _query(params, count=2, offset=0), query_text=condition
        )
        if len(matches) > 1:
            raise FhirError(
                412,
                "duplicate",
                f"If-None-Exist: {condition} matches more than one patient",
                ["If-None-Exist"],
            )
        if matches:
            resource = patient_map.to_fhir(matches[0])
            headers = {
                **_patient_headers(resource, matches[0]),
                "Location": _location(request, resource),
            }
            return fhir_response(resource, 200, headers)
    patient = service.create_patient(access, record, program_id)
    resource = patient_map.to_fhir(patient)
    headers = {**_patient_headers(resource, patient), "Location": _location(request, resource)}
    return fhir_response(resource, 201, headers)


@router.get("/Patient/{patient_id}")
def read_patient(
    patient_id: str, request: Request, access: Access = Depends(api_access)
) -> Response:
    patient = service.get_patient(access, patient_id)
    resource = patient_map.to_fhir(patient)
    headers = _patient_headers(resource, patient)
    if not_modified(request, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return fhir_response(resource, headers=headers)


@router.get("/Patient/{patient_id}/_history/{version_id}")
def vread_patient(
    patient_id: str, version_id: str, request: Request, access: Access = Depends(api_access)
) -> Response:
    """The current version by its number (vread). Tandem keeps no earlier versions: asking
    for one is answered 404 saying so."""
    patient = service.get_patient(access, patient_id)
    if version_id != str(patient.version_id):
        raise FhirError(
            404,
            "not-found",
            f"Patient/{patient_id} is at version {patient.version_id}; Tandem keeps the current "
            "version only",
        )
    resource = patient_map.to_fhir(patient)
    headers = _patient_headers(resource, patient)
    if not_modified(request, headers["ETag"]):
        return Response(status_code=304, headers=headers)
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
    record, program_id = patient_map.from_fhir(body)
    patient = service.update_patient(
        access, patient_id, record, if_match=version, program_id=program_id
    )
    resource = patient_map.to_fhir(patient)
    return fhir_response(resource, headers=_patient_headers(resource, patient))


def _query(params: QueryParams, count: int, offset: int) -> PatientQuery:
    try:
        return PatientQuery(
            names=search_values(params, "name"),
            identifiers=search_values(params, "identifier"),
            birth_dates=tuple(
                tuple(parse_date_filter(v) for v in group)
                for group in search_values(params, "birthdate")
            ),
            count=count,
            offset=offset,
        )
    except InvalidInput as exc:
        raise FhirError(400, "invalid", exc.message, [exc.field]) from None


@router.get("/Patient")
def search_patients(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, SEARCHED)
    query = _query(request.query_params, count, offset)
    patients, has_more = service.search_patients(access, query, query_text=str(request.url.query))
    bundle = searchset(
        request, "Patient", [patient_map.to_fhir(p) for p in patients], count, offset, has_more
    )
    return fhir_response(bundle)
