"""FHIR Patient: read, create, update (If-Match) and search. Thin: parse, call the service
(which asks the policy through the data-access layer), answer."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from tandem.access.guard import Access
from tandem.access.queries import PatientView
from tandem.errors import InvalidInput
from tandem.fhir import patient as patient_map
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    CURSOR,
    MAX_COUNT,
    base_url,
    cursor_token,
    fhir_body,
    fhir_response,
    fhir_router,
    keyset_searchset,
    not_modified,
    read_cursor,
    search_paging,
    search_values,
    searchset,
    version_headers,
)
from tandem.fhir.outcome import FhirError
from tandem.patients import service
from tandem.patients.records import (
    GENDERS,
    SORT_KEYS,
    PatientQuery,
    check_genders,
    parse_date_filter,
    parse_sort,
)
from tandem.storage.models import Patient
from tandem.web.deps import api_access

router = fhir_router()
SEARCHED = (
    "name",
    "family",
    "given",
    "identifier",
    "gender",
    "_id",
    "birthdate",
    "_lastUpdated",
)

FHIR_RESOURCES = (
    ResourceSupport(
        type="Patient",
        interactions=("read", "vread", "create", "update", "search-type"),
        versioning="versioned",
        extras={"conditionalCreate": True},
        search_params=(
            SearchParam(
                "name",
                "string",
                "every word starts a word of the family or given names, case-insensitive",
            ),
            SearchParam("family", "string", "start of the family name, case-insensitive"),
            SearchParam("given", "string", "start of a given name, case-insensitive"),
            SearchParam("identifier", "token", "system|value or value (MRN or another)"),
            SearchParam("gender", "token", ", ".join(GENDERS)),
            SearchParam("_id", "token", "the patient's id"),
            SearchParam(
                "birthdate",
                "date",
                "YYYY, YYYY-MM or YYYY-MM-DD with optional prefix eq, ne, lt, le, gt, ge",
            ),
            SearchParam(
                "_lastUpdated", "date", "a day (YYYY, YYYY-MM or YYYY-MM-DD, UTC) with a prefix"
            ),
            SearchParam(
                "_sort", "string", f"{', '.join(SORT_KEYS)}; - for descending; comma-separated"
            ),
            SearchParam("_summary", "token", "count: Bundle.total only"),
            SearchParam("_count", "number", f"page size; above {MAX_COUNT} is capped"),
            SearchParam("_offset", "number", "where the page starts (with _sort)"),
            CURSOR,
        ),
    ),
)


def _patient_headers(resource: dict[str, Any], patient: Patient | PatientView) -> dict[str, str]:
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
    patient = service.show_patient(access, patient_id)
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
    patient = service.show_patient(access, patient_id)
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
            families=search_values(params, "family"),
            givens=search_values(params, "given"),
            identifiers=search_values(params, "identifier"),
            genders=tuple(check_genders(g) for g in search_values(params, "gender")),
            ids=search_values(params, "_id"),
            birth_dates=tuple(
                tuple(parse_date_filter(v) for v in group)
                for group in search_values(params, "birthdate")
            ),
            last_updated=tuple(
                tuple(parse_date_filter(v, "_lastUpdated") for v in group)
                for group in search_values(params, "_lastUpdated")
            ),
            sort=parse_sort(params["_sort"]) if params.get("_sort") else (),
            count=count,
            offset=offset,
        )
    except InvalidInput as exc:
        raise FhirError(400, "invalid", exc.message, [exc.field]) from None


@router.get("/Patient")
def search_patients(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = search_paging(request, (*SEARCHED, "_sort", "_summary", "_cursor"))
    query = _query(request.query_params, count, offset)
    query_text = str(request.url.query)
    summary = request.query_params.get("_summary")
    if summary is not None:
        if summary != "count":
            raise FhirError(
                400, "not-supported", "_summary: only _summary=count is served", ["_summary"]
            )
        total = service.count_patients(access, query, query_text=query_text)
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": total}
        return fhir_response(bundle)
    if query.sort:
        # Sorted on request: offset paging (the next link carries _offset).
        patients, has_more = service.search_patient_views(access, query, query_text=query_text)
        bundle = searchset(
            request, "Patient", [patient_map.to_fhir(p) for p in patients], count, offset, has_more
        )
        return fhir_response(bundle)
    after = read_cursor(request, 3)
    if after is not None:
        query = replace(query, after=(str(after[0]), str(after[1]), str(after[2])))
    patients, has_more = service.search_patient_views(access, query, query_text=query_text)
    last = patients[-1] if patients and has_more else None
    bundle = keyset_searchset(
        request,
        "Patient",
        [patient_map.to_fhir(p) for p in patients],
        count,
        cursor_token([last.family_lower, last.given_lower, last.id]) if last else None,
    )
    return fhir_response(bundle)
