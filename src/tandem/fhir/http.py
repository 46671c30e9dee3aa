"""FHIR HTTP plumbing every domain's /fhir routes share: bodies, ids, references, paging,
search bundles, responses. No domain knowledge here."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from tandem.access.guard import Access
from tandem.access.queries import readable_patients, synthetic_patient_ids
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
    """A router for /fhir routes, each request one unit of work, answering JSON only."""
    return APIRouter(
        prefix="/fhir",
        tags=["FHIR"],
        route_class=UnitOfWorkRoute,
        dependencies=[Depends(json_wanted)],
    )


JSON_FORMATS = frozenset(
    {"json", "application/json", "application/fhir+json", "application/json+fhir"}
)
_JSON_RANGES = JSON_FORMATS | {"*/*", "application/*"}


def json_wanted(request: Request) -> None:
    """Refuse (406) a request whose `_format` or `Accept` allows no JSON: Tandem speaks FHIR
    JSON only, and answering JSON to a client that asked for XML would mislead it."""
    formats = request.query_params.getlist("_format")
    for wanted in formats:
        if wanted.split(";")[0].strip().lower() not in JSON_FORMATS:
            raise FhirError(
                406,
                "not-supported",
                f"_format={wanted} is not served: Tandem answers application/fhir+json only",
                ["_format"],
            )
    accept = request.headers.get("accept", "").strip()
    if accept and not formats:
        ranges = []
        for part in accept.split(","):
            media, *options = (p.strip() for p in part.split(";"))
            refused = any(
                o.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for o in options
            )
            if media and not refused:
                ranges.append(media.lower())
        if not any(r in _JSON_RANGES for r in ranges):
            raise FhirError(
                406,
                "not-supported",
                f"Accept: {accept} allows no JSON: Tandem answers application/fhir+json only",
            )


def http_date(moment: datetime) -> str:
    """A time as an HTTP date (RFC 9110), e.g. for Last-Modified."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def version_headers(version_id: str, last_updated: datetime) -> dict[str, str]:
    """ETag and Last-Modified of a versioned resource."""
    return {"ETag": f'W/"{version_id}"', "Last-Modified": http_date(last_updated)}


def not_modified(request: Request, etag: str) -> bool:
    """Whether the client's If-None-Match already names `etag` (answer 304)."""
    wanted = request.headers.get("if-none-match")
    if not wanted:
        return False
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


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


_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def search_values(params: QueryParams, name: str) -> tuple[tuple[str, ...], ...]:
    """FHIR search values of parameter `name`: one group per time it is given (all must match),
    each group its comma-separated values (any may match; `\\,` is a comma in a value)."""
    groups = []
    for raw in params.getlist(name):
        values = tuple(v.replace("\\,", ",") for v in _UNESCAPED_COMMA.split(raw) if v)
        if values:
            groups.append(values)
    return tuple(groups)


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


MAX_OFFSET = 10**9


def search_paging(request: Request, allowed: Iterable[str]) -> tuple[int, int]:
    """`_count` and `_offset` as FHIR asks of a server: a `_count` above the most a page holds
    is capped (the next link carries on), not refused. Unknown parameters are refused."""
    params = request.query_params
    unknown = sorted(set(params) - set(allowed) - {"_count", "_offset", "_format"})
    if unknown:
        raise FhirError(
            400, "not-supported", f"unknown search parameter: {', '.join(unknown)}", unknown
        )
    raw_count = params.get("_count", str(DEFAULT_COUNT)).strip()
    digits = raw_count.isascii() and raw_count.isdigit()
    if not digits or (len(raw_count) <= 12 and int(raw_count) < 1):
        raise FhirError(400, "invalid", "_count must be a whole number, 1 or more", ["_count"])
    count = min(int(raw_count), MAX_COUNT) if len(raw_count) <= 12 else MAX_COUNT
    raw_offset = params.get("_offset", "0").strip()
    if (
        not (raw_offset.isascii() and raw_offset.isdigit())
        or len(raw_offset) > 10
        or int(raw_offset) > MAX_OFFSET
    ):
        raise FhirError(
            400, "invalid", f"_offset must be a whole number up to {MAX_OFFSET}", ["_offset"]
        )
    return count, int(raw_offset)


CURSOR = SearchParam(
    "_cursor", "string", "where the next page starts (opaque: follow the next link)"
)


def cursor_token(key: Sequence[str | int]) -> str:
    """An opaque token for the sort key of a page's last row (the next page starts after it)."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def read_cursor(request: Request, width: int) -> list[str | int] | None:
    """The sort key a `_cursor` token carries, or None when there is none."""
    token = request.query_params.get("_cursor")
    if token is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        key = None
    if (
        not isinstance(key, list)
        or len(key) != width
        or not all(isinstance(k, str | int) and not isinstance(k, bool) for k in key)
    ):
        raise FhirError(400, "invalid", "_cursor is not one of Tandem's next links", ["_cursor"])
    return key


def keyset_searchset(
    request: Request,
    resource_type: str,
    resources: list[dict[str, Any]],
    count: int,
    next_cursor: str | None,
    total: int | None = None,
) -> dict[str, Any]:
    """A searchset whose next link carries the last row's sort key (`_cursor`), so rows
    written between pages neither repeat nor skip rows (offset paging does both)."""
    base = f"{base_url(request)}/{resource_type}"
    kept = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k not in ("_count", "_offset", "_cursor")
    ]
    here = request.query_params.get("_cursor")
    links = [
        {
            "relation": "self",
            "url": base
            + "?"
            + urlencode([*kept, ("_count", str(count)), *([("_cursor", here)] if here else [])]),
        }
    ]
    if next_cursor is not None:
        links.append(
            {
                "relation": "next",
                "url": base
                + "?"
                + urlencode([*kept, ("_count", str(count)), ("_cursor", next_cursor)]),
            }
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    bundle["entry"] = [
        {"fullUrl": f"{base}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in resources
    ]
    return bundle


SYNTHETIC_LABEL = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}
_PATIENT_ELEMENTS = ("subject", "patient")


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id"))
    for element in _PATIENT_ELEMENTS:
        reference = (resource.get(element) or {}).get("reference", "")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


def label_synthetic(
    payload: dict[str, Any], synthetic_ids: Callable[[Iterable[str]], set[str]]
) -> dict[str, Any]:
    """Mark every resource of a synthetic patient (a resource, or each entry of a Bundle) with
    the HTEST security label, so test data is never taken for a real person's record."""
    resources = (
        [e["resource"] for e in payload.get("entry", [])]
        if payload.get("resourceType") == "Bundle"
        else [payload]
    )
    owners = {id(r): _patient_of(r) for r in resources}
    synthetic = synthetic_ids(p for p in owners.values() if p)
    for resource in resources:
        if owners[id(resource)] in synthetic:
            labels = resource.setdefault("meta", {}).setdefault("security", [])
            if SYNTHETIC_LABEL not in labels:
                labels.append(dict(SYNTHETIC_LABEL))
    return payload


def patient_data_response(
    access: Access,
    payload: dict[str, Any],
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """`fhir_response` for patient data: each resource of a synthetic patient is labelled."""
    return fhir_response(
        label_synthetic(payload, lambda ids: synthetic_patient_ids(access, ids)), status, headers
    )


def fhir_response(
    resource: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return FhirJSONResponse(resource, status_code=status, headers=headers)


# --- _include --------------------------------------------------------------------------------

INCLUDE = "_include"


def includes_asked(request: Request, resource_type: str) -> bool:
    """Whether the search asks `_include` of its patients (`Observation:patient`, `:subject`,
    or either targeted `:Patient`). Anything else is refused by name, never ignored."""
    values = request.query_params.getlist(INCLUDE)
    supported = {
        f"{resource_type}:{name}{target}"
        for name in ("patient", "subject")
        for target in ("", ":Patient")
    }
    unknown = [v for v in values if v not in supported]
    if unknown:
        raise FhirError(
            400,
            "not-supported",
            f"_include={unknown[0]} is not supported: use {resource_type}:patient",
            [INCLUDE],
        )
    return bool(values)


def include_patients(request: Request, access: Access, bundle: dict[str, Any]) -> dict[str, Any]:
    """Add the patients of the bundle's matches (`search.mode` include) when `_include` asks for
    them, through the policy and audited (`access.queries.readable_patients`)."""
    from tandem.fhir.patient import to_fhir

    owners = [_patient_of(entry["resource"]) for entry in bundle.get("entry", [])]
    patients = readable_patients(
        access, (p for p in owners if p), f"_include: {request.url.query[:200]}"
    )
    base = base_url(request)
    bundle.setdefault("entry", []).extend(
        {
            "fullUrl": f"{base}/Patient/{patient.id}",
            "resource": to_fhir(patient),
            "search": {"mode": "include"},
        }
        for patient in patients
    )
    return bundle
