"""The /fhir API: thin routes that parse, ask the domain (which asks the policy), and answer."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from tandem.access import audit
from tandem.access.guard import Access, AccessDenied
from tandem.fhir import audit_event
from tandem.fhir import patient as patient_map
from tandem.fhir.capability import ResourceSupport, SearchParam, capability_statement, declare
from tandem.fhir.outcome import FHIR_JSON, FhirError, FhirJSONResponse, outcome_response
from tandem.patients import service
from tandem.patients.records import InvalidRecord, PatientQuery, parse_date_filter
from tandem.storage.db import utcnow
from tandem.web.deps import ApiUnauthorized, api_access

router = APIRouter(prefix="/fhir", tags=["FHIR"])

MAX_COUNT = 200
DEFAULT_COUNT = 20

declare(
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
    )
)


async def read_body(request: Request, resource_type: str) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in (FHIR_JSON, "application/json"):
        raise FhirError(415, "not-supported", "send the resource as application/fhir+json")
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FhirError(400, "structure", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        raise FhirError(
            400, "invalid", f"the body must be a {resource_type} resource", [resource_type]
        )
    return body


def paging(request: Request, allowed: set[str]) -> tuple[int, int]:
    params = request.query_params
    unknown = sorted(set(params) - allowed - {"_count", "_offset", "_format"})
    if unknown:
        raise FhirError(
            400, "not-supported", f"unknown search parameter: {', '.join(unknown)}", unknown
        )
    try:
        count = int(params.get("_count", DEFAULT_COUNT))
        offset = int(params.get("_offset", 0))
    except ValueError:
        raise FhirError(
            400, "invalid", "_count and _offset must be whole numbers", ["_count"]
        ) from None
    if not 1 <= count <= MAX_COUNT:
        raise FhirError(400, "invalid", f"_count must be between 1 and {MAX_COUNT}", ["_count"])
    if offset < 0:
        raise FhirError(400, "invalid", "_offset cannot be negative", ["_offset"])
    return count, offset


def searchset(
    request: Request,
    resource_type: str,
    resources: list[dict[str, Any]],
    count: int,
    offset: int,
    has_more: bool,
) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + f"/fhir/{resource_type}"
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_count", "_offset")]

    def link(at: int) -> str:
        return base + "?" + urlencode([*kept, ("_count", str(count)), ("_offset", str(at))])

    links = [{"relation": "self", "url": link(offset)}]
    if has_more:
        links.append({"relation": "next", "url": link(offset + count)})
    if offset > 0:
        links.append({"relation": "previous", "url": link(max(0, offset - count))})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {"fullUrl": f"{base}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ],
    }


def fhir_response(
    resource: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return FhirJSONResponse(resource, status_code=status, headers=headers)


@router.get("/metadata")
def metadata(request: Request) -> Response:
    return fhir_response(
        capability_statement(str(request.base_url).rstrip("/") + "/fhir", utcnow().isoformat())
    )


def _patient_headers(request: Request, resource: dict[str, Any]) -> dict[str, str]:
    return {
        "ETag": f'W/"{resource["meta"]["versionId"]}"',
        "Last-Modified": resource["meta"]["lastUpdated"],
        "Location": str(request.base_url).rstrip("/")
        + f"/fhir/Patient/{resource['id']}/_history/{resource['meta']['versionId']}",
    }


@router.post("/Patient")
async def create_patient(request: Request, access: Access = Depends(api_access)) -> Response:
    body = await read_body(request, "Patient")
    record, program_id = patient_map.from_fhir(body)
    patient = service.create_patient(access, record, program_id)
    resource = patient_map.to_fhir(patient)
    access.db.commit()
    return fhir_response(resource, 201, _patient_headers(request, resource))


@router.get("/Patient/{patient_id}")
def read_patient(
    patient_id: str, request: Request, access: Access = Depends(api_access)
) -> Response:
    patient = service.get_patient(access, patient_id)
    resource = patient_map.to_fhir(patient)
    access.db.commit()
    headers = _patient_headers(request, resource)
    headers.pop("Location")
    return fhir_response(resource, headers=headers)


@router.put("/Patient/{patient_id}")
async def update_patient(
    patient_id: str, request: Request, access: Access = Depends(api_access)
) -> Response:
    body = await read_body(request, "Patient")
    if body.get("id") != patient_id:
        raise FhirError(400, "invalid", "the body's id must match the URL", ["Patient.id"])
    if_match = request.headers.get("if-match")
    version = None
    if if_match:
        digits = if_match.removeprefix("W/").strip('"')
        if not digits.isdigit():
            raise FhirError(400, "invalid", 'If-Match must look like W/"3"')
        version = int(digits)
    record, _program = patient_map.from_fhir(body)
    patient = service.update_patient(access, patient_id, record, if_match=version)
    resource = patient_map.to_fhir(patient)
    access.db.commit()
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
    except InvalidRecord as exc:
        raise FhirError(400, "invalid", exc.message, [exc.field]) from None
    patients, has_more = service.search_patients(access, query, query_text=str(request.url.query))
    bundle = searchset(
        request, "Patient", [patient_map.to_fhir(p) for p in patients], count, offset, has_more
    )
    access.db.commit()
    return fhir_response(bundle)


def install_fhir(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(audit_event.router)

    def _access_of(request: Request) -> Access | None:
        return getattr(request.state, "access", None)

    @app.exception_handler(FhirError)
    async def _fhir_error(request: Request, exc: FhirError) -> Response:
        access = _access_of(request)
        if access is not None and request.method not in ("GET", "HEAD"):
            access.refused(request.method.lower(), exc.diagnostics, resource_type=request.url.path)
        return outcome_response(exc.status, exc.code, exc.diagnostics, exc.expression)

    @app.exception_handler(ApiUnauthorized)
    async def _unauthorized(request: Request, exc: ApiUnauthorized) -> Response:
        audit.record_now(
            request.app.state.sessions,
            None,
            "authenticate",
            audit.Origin(request.client.host if request.client else "", "", "api"),
            outcome=audit.MINOR_FAILURE,
            detail=str(exc),
            resource_type=request.url.path,
        )
        return outcome_response(
            401, "login", str(exc), headers={"WWW-Authenticate": 'Bearer realm="tandem"'}
        )

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, exc: AccessDenied) -> Response:
        if request.url.path.startswith("/fhir"):
            return outcome_response(403, "forbidden", f"access refused: {exc.reason}")
        from tandem.web.rendering import render

        return render(
            request,
            "error.html",
            status_code=403,
            title="Not allowed",
            message=f"You do not have access to this: {exc.reason}.",
        )

    @app.exception_handler(service.NotFound)
    async def _not_found(request: Request, exc: service.NotFound) -> Response:
        if request.url.path.startswith("/fhir"):
            return outcome_response(404, "not-found", str(exc))
        from tandem.web.rendering import render

        return render(request, "error.html", status_code=404, title="Not found", message=str(exc))

    @app.exception_handler(service.VersionConflict)
    async def _conflict(request: Request, exc: service.VersionConflict) -> Response:
        return outcome_response(412, "conflict", str(exc))

    @app.exception_handler(InvalidRecord)
    async def _invalid(request: Request, exc: InvalidRecord) -> Response:
        access = _access_of(request)
        if access is not None:
            access.refused(
                request.method.lower(), f"invalid input: {exc}", resource_type=request.url.path
            )
        if request.url.path.startswith("/fhir"):
            resource_type = (
                request.url.path.split("/")[2] if request.url.path.count("/") >= 2 else ""
            )
            where = f"{resource_type}.{exc.field}" if resource_type else exc.field
            return outcome_response(422, "invalid", f"{where}: {exc.message}", [where])
        from tandem.web.rendering import render

        return render(
            request, "error.html", status_code=422, title="Check the form", message=str(exc)
        )
