"""FHIR HTTP plumbing every domain's /fhir routes share: bodies, ids, references, paging,
search bundles, responses. No domain knowledge here."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tandem.fhir.capability import SearchParam
from tandem.fhir.outcome import FHIR_JSON, FhirError, FhirJSONResponse
from tandem.web.deps import UnitOfWorkRoute

MAX_COUNT = 200
DEFAULT_COUNT = 20
# Offsets and ids fit a 32-bit integer, the smallest integer column on any engine.
MAX_OFFSET = 2**31 - 1
MAX_ID = 2**31 - 1
# A resource nests far less than this; JSON numbers are shorter than this many characters.
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 40
# Patient ids are UUIDs (36 characters).
MAX_PATIENT_ID = 36

PAGING = (
    SearchParam("_count", "number", f"page size, at most {MAX_COUNT}"),
    SearchParam("_offset", "number", "where the page starts (follow the next link)"),
)
PATIENT = SearchParam("patient", "reference", "Patient/<id> or <id>")


def fhir_router() -> APIRouter:
    """A router for /fhir routes, each request one unit of work."""
    return APIRouter(prefix="/fhir", tags=["FHIR"], route_class=UnitOfWorkRoute)


def fhir_body(resource_type: str) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """A dependency reading the request's body as a `resource_type` resource (on the event
    loop, before the synchronous route runs)."""

    async def read(request: Request) -> dict[str, Any]:
        return await read_body(request, resource_type)

    return read


async def read_body(request: Request, resource_type: str) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type not in (FHIR_JSON, "application/json"):
        raise FhirError(415, "not-supported", "send the resource as application/fhir+json")
    raw = await request.body()
    body = parse_json(raw)
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        raise FhirError(
            400, "invalid", f"the body must be a {resource_type} resource", [resource_type]
        )
    return body


def _number(text: str) -> float | int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return float(text) if any(c in text for c in ".eE") else int(text)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(raw: bytes) -> Any:
    """A JSON body, refused (400, saying why) when it is not JSON, nests deeper than
    `MAX_DEPTH`, holds an overlong number or a NUL character."""
    try:
        body = json.loads(raw, parse_int=_number, parse_float=_number, parse_constant=_no_constant)
    except RecursionError:
        raise FhirError(
            400, "structure", f"the body nests deeper than {MAX_DEPTH} levels"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise FhirError(400, "structure", f"the body is not valid JSON: {exc}") from None
    _check_tree(body)
    return body


def _check_tree(body: Any) -> None:
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FhirError(400, "structure", f"the body nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            if "\x00" in value:
                raise FhirError(
                    400,
                    "invalid",
                    f"{path or 'body'}: contains a NUL character (\\u0000), which is not allowed",
                    [path] if path else (),
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                where = f"{path}.{key}" if path else key
                if "\x00" in key:
                    stack.append((key, path, depth + 1))
                stack.append((item, where, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, path, depth + 1) for item in value)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def paging(request: Request, allowed: Iterable[str]) -> tuple[int, int]:
    """`_count` and `_offset`, after refusing any search parameter not in `allowed`."""
    params = request.query_params
    unknown = sorted(set(params) - set(allowed) - {"_count", "_offset", "_format"})
    if unknown:
        raise FhirError(
            400, "not-supported", f"unknown search parameter: {', '.join(unknown)}", unknown
        )
    count = _whole_number(params.get("_count", str(DEFAULT_COUNT)), "_count")
    offset = _whole_number(params.get("_offset", "0"), "_offset")
    if not 1 <= count <= MAX_COUNT:
        raise FhirError(400, "invalid", f"_count must be between 1 and {MAX_COUNT}", ["_count"])
    if not 0 <= offset <= MAX_OFFSET:
        raise FhirError(400, "invalid", f"_offset must be between 0 and {MAX_OFFSET}", ["_offset"])
    return count, offset


def _whole_number(raw: str, name: str) -> int:
    text = raw.strip()
    digits = text.removeprefix("-")
    if not digits.isdigit() or not digits.isascii():
        raise FhirError(400, "invalid", f"{name} must be a whole number", [name])
    if len(digits) > 12:  # never converted: no huge integers, no digit-limit errors
        raise FhirError(400, "invalid", f"{name} is out of range", [name])
    return int(text)


def patient_param(request: Request, *names: str) -> str | None:
    """The one patient a search names (`patient=Patient/<id>`, `subject=...`), or None."""
    names = names or ("patient", "subject")
    values = [v for n in names for v in request.query_params.getlist(n)]
    if not values:
        return None
    if len(values) > 1:
        raise FhirError(400, "not-supported", "give one patient", [names[0]])
    patient_id = values[0].removeprefix("Patient/")
    if len(patient_id) > MAX_PATIENT_ID:
        raise FhirError(
            400,
            "invalid",
            f"{names[0]}: a patient id has at most {MAX_PATIENT_ID} characters",
            [names[0]],
        )
    return patient_id


def int_id(raw: str, resource_type: str) -> int:
    """A numeric logical id; anything else names no resource of ours (404)."""
    if not raw.isdigit() or not raw.isascii() or len(raw) > 10 or int(raw) > MAX_ID:
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise FhirError(404, "not-found", f"{resource_type}/{shown} is not known")
    return int(raw)


def searchset(
    request: Request,
    resource_type: str,
    resources: list[dict[str, Any]],
    count: int,
    offset: int,
    has_more: bool,
) -> dict[str, Any]:
    base = f"{base_url(request)}/{resource_type}"
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
