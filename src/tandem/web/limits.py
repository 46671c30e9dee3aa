"""Limits every request meets before any route reads it: the size of its body (checked while
it streams in, so a huge body is refused unread), the NUL character, which no text field of
Tandem may hold (PostgreSQL cannot store it; no clinic types it), and ids in the address."""

from __future__ import annotations

import re
from collections.abc import Iterable

from fastapi.routing import APIRoute
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem.errors import InvalidAddress, InvalidInput
from tandem.fhir.outcome import FhirError, outcome_response

NUL = "\x00"


class BodyTooLarge(HTTPException):
    """An HTTP error (413): FastAPI lets it through its body parsing unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit:,} bytes")


def too_large_response(path: str, limit: int) -> Response:
    message = BodyTooLarge(limit).detail
    if path.startswith("/fhir"):
        return outcome_response(413, "too-costly", message)
    return HTMLResponse(
        f"<!doctype html><html lang=en><title>Too large</title><h1>Too large</h1><p>{message}.</p>",
        status_code=413,
    )


class BodyLimit:
    """Refuses a body larger than `max_bytes`: at once when Content-Length says so, otherwise
    as soon as the chunks received pass the limit (plain ASGI: nothing is buffered here)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (
            len(declared) > 15 or not declared.isdigit() or int(declared) > self.max_bytes
        ):
            await too_large_response(scope["path"], self.max_bytes)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)


def _first_nul(pairs: Iterable[tuple[str, object]]) -> str | None:
    for key, value in pairs:
        if NUL in key:
            return key.replace(NUL, "\\x00")
        if isinstance(value, str) and NUL in value:
            return key
        if isinstance(value, UploadFile) and value.filename and NUL in value.filename:
            return key
    return None


def refuse_nul(request: Request, form: FormData | None = None) -> None:
    """Raise `InvalidAddress` (400) naming the first path parameter, or `InvalidInput` (422)
    the first search parameter or form field, that holds a NUL character; then check the ids in
    the address (`refuse_bad_ids`). Called once the person is known (so an anonymous request is
    still told to sign in first)."""
    message = "contains a NUL character (\\x00), which is not allowed"
    in_address = _first_nul(request.path_params.items())
    if in_address is not None:
        raise InvalidAddress(in_address, message)
    field = _first_nul(request.query_params.multi_items()) or (
        _first_nul(form.multi_items()) if form is not None else None
    )
    if field is not None:
        raise InvalidInput(field, message)
    refuse_bad_ids(request)


MAX_ID = 2**31 - 1  # the smallest integer id column on any engine
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _id_parameters(route: APIRoute) -> tuple[str, ...]:
    """The route's path parameters declared `int`: ids of rows (cached on the route)."""
    found: tuple[str, ...] | None = getattr(route, "_tandem_id_parameters", None)
    if found is None:
        found = tuple(
            param.name
            for param in route.dependant.path_params
            if param.field_info.annotation is int
        )
        route._tandem_id_parameters = found  # type: ignore[attr-defined]
    return found


def refuse_bad_ids(request: Request) -> None:
    """Every `int` path parameter of the route must be an id: whole ASCII digits from 1 to
    MAX_ID. Otherwise a page answers 400 naming the parameter; a FHIR read answers as FHIR does
    for an id of valid syntax that names nothing (404), and 400 naming it for any other. Run
    once the person is known, before the route (and FastAPI's own parsing) sees the value."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    for name in _id_parameters(route):
        raw = str(request.path_params.get(name, ""))
        if raw.isascii() and raw.isdigit() and len(raw) <= 10 and 0 < int(raw) <= MAX_ID:
            continue
        shown = raw if len(raw) <= 24 else raw[:24] + "…"
        if request.url.path.startswith("/fhir/") and _FHIR_ID.fullmatch(raw):
            resource_type = request.url.path.split("/")[2]
            raise FhirError(404, "not-found", f"{resource_type}/{shown} is not known")
        raise InvalidAddress(
            name, f"must be a whole number from 1 to {MAX_ID:,} (an id), not {shown!r}"
        )
