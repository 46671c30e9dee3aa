"""The application: every domain's routers from the domain list, and the one set of handlers
that turn errors into clear answers (an HTML page, or a FHIR OperationOutcome under /fhir).

Handlers run on the event loop; anything they write (the audit of a refusal) goes to a worker
thread, so one slow database never stalls other requests.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem import domains
from tandem.access import anonymous, audit
from tandem.access.audit_commit import AuditCommitter, AuditNotWritten
from tandem.access.guard import Access, AccessDenied
from tandem.access.policy import STAFF_ROLES, Decision
from tandem.errors import Conflict, InvalidAddress, InvalidInput, NotFound
from tandem.fhir.capability import ResourceSupport, SearchParam, merged
from tandem.fhir.http import PAGING
from tandem.fhir.outcome import FHIR_JSON, FhirError, outcome_response, validation_outcome
from tandem.fhir.output import check_output
from tandem.settings import Settings, get_settings
from tandem.storage.db import make_engine, make_sessionmaker, utcnow
from tandem.web.deps import (
    ApiUnauthorized,
    CsrfFailed,
    LoginRequired,
    UnitOfWorkRoute,
    client_ip,
    login_url,
    page_access,
)
from tandem.web.limits import BodyLimit
from tandem.web.rendering import render

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


HSTS = "max-age=31536000; includeSubDomains"


log = logging.getLogger(__name__)


class SecurityHeaders:
    """Adds the security headers to every answer, errors included (plain ASGI, the outermost
    layer: no extra task per request). Nothing but the static files may be cached: FHIR
    answers and pages carry patient data."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        headers = {**SECURITY_HEADERS, **({"Strict-Transport-Security": HSTS} if hsts else {})}
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.no_store = [(b"cache-control", b"no-store")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = (
            self.headers if scope["path"].startswith("/static/") else self.headers + self.no_store
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in wanted if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Young objects collected only after this many allocations (Python's default is 700).
GC_YOUNG_THRESHOLD = 50_000


def _settle_garbage_collection() -> None:
    """Once the app has started: move what start-up allocated (modules, routes, templates,
    the domain list) out of the collector's view, and collect young objects less often. A page
    that builds a thousand rows otherwise pays for a full collection every twentieth request
    or so: measured with bench/triage.py, the queue's p95 fell from 209 ms to 44 ms (p50 35 ms)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


class TandemApp(FastAPI):
    """FastAPI with the security headers outside everything, even the last-resort 500."""

    def build_middleware_stack(self) -> ASGIApp:
        settings: Settings = self.state.settings
        return SecurityHeaders(super().build_middleware_stack(), hsts=settings.hsts)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/fhir")


def _chart_of(path: str) -> str | None:
    """The chart a refused patient page belongs to, for the way back."""
    parts = path.split("/")
    return f"/patients/{parts[2]}" if len(parts) > 3 and parts[1] == "patients" else None


def _access_of(request: Request) -> Access | None:
    return getattr(request.state, "access", None)


async def _record_refusal(request: Request, operation: str, reason: str) -> None:
    access = _access_of(request)
    if access is not None:
        # The address may hold a NUL (refused for it), which PostgreSQL cannot store.
        where = request.url.path.replace("\x00", "\\x00")[:60]
        await run_in_threadpool(
            access.refused, operation, reason.replace("\x00", "\\x00"), resource_type=where
        )


def _allowed_methods(request: Request) -> str:
    """Every method some route answers at this path (a 405's `Allow`), not only the first
    route's: GET and PUT of one resource are two routes."""
    return ", ".join(
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    )


def create_app(settings: Settings | None = None, *, run_jobs: bool = False) -> FastAPI:
    """The app. `run_jobs`: run the domains' scheduled jobs in this process (`tandem serve`
    does; tests drive jobs themselves)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _settle_garbage_collection()
        scheduler = None
        if run_jobs:
            from tandem import scheduler as job_scheduler

            scheduler = job_scheduler.start(app.state, domains.scheduled_jobs())
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            app.state.audit_committer.close()
            app.state.engine.dispose()

    # The API description is served to signed-in staff only (`_api_docs`), not to the world.
    app = TandemApp(
        title="Tandem",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    check_output(settings.validate_fhir_output)
    app.state.engine = make_engine(settings.database_url)
    app.state.sessions = make_sessionmaker(app.state.engine)
    app.state.audit_committer = AuditCommitter(app.state.engine)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    # Tandem's files, then Swagger UI's (for /api/docs), installed from the registry with its
    # Python package (fastapi-offline).
    app.mount(
        "/static",
        StaticFiles(directory=STATIC, packages=[("fastapi_offline", "static")]),
        name="static",
    )
    for router in domains.routers():
        app.include_router(router)
    app.include_router(_api_docs(app))
    _install_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        # On the event loop and without the database: it answers even while every worker
        # thread waits on a lock.
        return JSONResponse({"status": "ok"})

    return app


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI description, with every FHIR search parameter (from the domains'
    `ResourceSupport`) and every FHIR body declared, so that a client (or a fuzzer) sees all
    that the API takes."""
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    supports: dict[str, ResourceSupport] = {s.type: s for s in merged(domains.fhir_resources())}
    for path, operations in schema.get("paths", {}).items():
        parts = path.split("/")
        if len(parts) < 3 or parts[1] != "fhir" or parts[2] not in supports:
            continue
        support = supports[parts[2]]
        search = operations.get("get") if len(parts) == 3 else None
        if search is not None:
            declared = {p["name"] for p in search.get("parameters", [])}
            includes = support.extras.get("searchInclude", ())
            include = SearchParam("_include", "token", "one of: " + ", ".join(includes))
            for param in (*support.search_params, *PAGING, *((include,) if includes else ())):
                if param.name in declared:
                    continue
                declared.add(param.name)
                search.setdefault("parameters", []).append(
                    {
                        "name": param.name,
                        "in": "query",
                        "required": False,
                        "description": param.documentation or param.type,
                        "schema": {"type": "integer" if param.type == "number" else "string"},
                    }
                )
        for method in ("post", "put"):
            operation = operations.get(method)
            if operation is not None and "requestBody" not in operation:
                operation["requestBody"] = {
                    "required": True,
                    "content": {
                        FHIR_JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["resourceType"],
                                "properties": {
                                    "resourceType": {"type": "string", "enum": [parts[2]]}
                                },
                            }
                        }
                    },
                }
    return schema


def _api_docs(app: FastAPI) -> APIRouter:
    """/api/openapi.json and /api/docs, for signed-in staff only (not patients, researchers or the world)."""
    router = APIRouter(route_class=UnitOfWorkRoute, include_in_schema=False)

    def staff(access: Access = Depends(page_access)) -> Access:
        allowed = access.actor.role in STAFF_ROLES
        access.require_decision(
            Decision(allowed, "" if allowed else "the API description is for staff"),
            "read",
            "OpenAPI",
        )
        return access

    @router.get("/api/openapi.json")
    def openapi_json(access: Access = Depends(staff)) -> JSONResponse:
        return JSONResponse(openapi_schema(app))

    @router.get("/api/docs")
    def openapi_docs(request: Request, access: Access = Depends(staff)) -> Response:
        page = render(request, "api_docs.html", title="Tandem API")
        # Swagger UI sets style attributes as it draws: this page alone allows inline styles.
        page.headers["Content-Security-Policy"] = SECURITY_HEADERS[
            "Content-Security-Policy"
        ].replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
        return page

    return router


def _bad_value(request: Request, message: str) -> Response:
    if _is_api(request):
        return outcome_response(400, "invalid", message)
    return render(request, "error.html", status_code=400, title="Check the form", message=message)


def _install_handlers(app: FastAPI) -> None:
    # Nets under the checks made where input is read (paging, ids, bodies, forms): a value a
    # check missed is still a 400 naming the problem, never a 500. The unit of work has rolled
    # back by the time these run: nothing of the request was kept.
    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> Response:
        return _bad_value(request, "a number or date in the request is out of range")

    @app.exception_handler(DataError)
    async def _data_error(request: Request, exc: DataError) -> Response:
        return _bad_value(
            request,
            "a value in the request cannot be stored or searched "
            "(out of range, too long, or holding a NUL character)",
        )

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> Response:
        return _bad_value(request, "the request nests too deeply")

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        # The last resort (a bug): a clear answer with the security headers, never a trace.
        message = "Tandem failed to answer this request; it was not kept. Tell your administrator."
        if _is_api(request):
            return outcome_response(500, "exception", message)
        return HTMLResponse(
            f"<!doctype html><html lang=en><title>Error</title><h1>Error</h1><p>{message}</p>",
            status_code=500,
        )

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(login_url(exc.next_url, exc.expired), status_code=303)

    @app.exception_handler(CsrfFailed)
    async def _csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        return render(
            request,
            "error.html",
            status_code=403,
            title="Form expired",
            message="This form was missing its security token or it has expired. "
            "Go back, reload the page and try again.",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        if _is_api(request):
            code = {404: "not-found", 413: "too-costly"}.get(exc.status_code, "processing")
            return outcome_response(exc.status_code, code, str(exc.detail), headers=headers)
        title = "Page not found" if exc.status_code == 404 else "Request refused"
        response = render(
            request, "error.html", status_code=exc.status_code, title=title, message=str(exc.detail)
        )
        response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
        in_address = [e for e in exc.errors() if e["loc"][:1] == ("path",)]
        if in_address:  # a route whose ids `refuse_bad_ids` did not see: still named, 400
            name = str(in_address[0]["loc"][-1])
            return await _bad_address(
                request, InvalidAddress(name, f"is not valid: {in_address[0]['msg']}")
            )
        if _is_api(request):
            return validation_outcome(exc.errors())
        fields = ", ".join(
            ".".join(str(p) for p in e["loc"][1:]) or "request" for e in exc.errors()
        )
        return render(
            request,
            "error.html",
            status_code=422,
            title="Check the form",
            message=f"These fields are missing or invalid: {fields}.",
        )

    @app.exception_handler(FhirError)
    async def _fhir_error(request: Request, exc: FhirError) -> Response:
        if request.method not in ("GET", "HEAD"):
            await _record_refusal(request, request.method.lower(), exc.diagnostics)
        return outcome_response(exc.status, exc.code, exc.diagnostics, exc.expression)

    @app.exception_handler(ApiUnauthorized)
    async def _unauthorized(request: Request, exc: ApiUnauthorized) -> Response:
        # Counted per address and minute, the first of each audited: a flood of anonymous
        # requests cannot grow the audit trail.
        await run_in_threadpool(
            anonymous.record_refusal,
            request.app.state.sessions,
            audit.Origin(client_ip(request), "", "api"),
            str(exc),
            request.url.path,
            utcnow(),
        )
        return outcome_response(
            401, "login", str(exc), headers={"WWW-Authenticate": 'Bearer realm="tandem"'}
        )

    @app.exception_handler(AccessDenied)
    async def _denied(request: Request, exc: AccessDenied) -> Response:
        # The refusal was audited where it was decided (`Access.require`).
        if _is_api(request):
            return outcome_response(403, "forbidden", f"access refused: {exc.reason}")
        return render(
            request,
            "error.html",
            status_code=403,
            title="Not allowed",
            message=f"You do not have access to this: {exc.reason}."
            + ("" if request.method in ("GET", "HEAD") else " Nothing was saved."),
            back=_chart_of(request.url.path),
        )

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        if _is_api(request):
            return outcome_response(404, "not-found", str(exc))
        return render(request, "error.html", status_code=404, title="Not found", message=str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> Response:
        if _is_api(request):
            return outcome_response(412, "conflict", str(exc))
        return render(request, "error.html", status_code=409, title="Changed", message=str(exc))

    @app.exception_handler(IntegrityError)
    async def _write_conflict(request: Request, exc: IntegrityError) -> Response:
        # Two requests changed the same record at once and the database refused the second:
        # nothing of it was kept (the unit of work rolled back). Never a 500.
        message = "the record was changed by someone else at the same time; reload and retry"
        if _is_api(request):
            return outcome_response(409, "conflict", message)
        return render(request, "error.html", status_code=409, title="Changed", message=message)

    @app.exception_handler(AuditNotWritten)
    async def _audit_not_written(request: Request, exc: AuditNotWritten) -> Response:
        # A read is shown only once its audit entry is durable; this one could not be written.
        log.error("read not answered: its audit entry could not be written: %s", exc)
        message = "the audit trail could not record this read, so nothing is shown; try again"
        headers = {"Retry-After": "2"}
        if _is_api(request):
            return outcome_response(503, "transient", message, headers=headers)
        response = render(
            request, "error.html", status_code=503, title="Not recorded", message=message
        )
        response.headers.update(headers)
        return response

    @app.exception_handler(OperationalError)
    async def _busy(request: Request, exc: OperationalError) -> Response:
        text = str(exc.orig).lower()
        if not any(word in text for word in ("locked", "busy", "deadlock", "could not serialize")):
            raise exc
        message = "the database is busy; nothing was changed, try again in a moment"
        headers = {"Retry-After": "2"}
        if _is_api(request):
            return outcome_response(503, "transient", message, headers=headers)
        response = render(request, "error.html", status_code=503, title="Busy", message=message)
        response.headers.update(headers)
        return response

    @app.exception_handler(InvalidAddress)
    async def _bad_address(request: Request, exc: InvalidAddress) -> Response:
        await _record_refusal(request, request.method.lower(), f"invalid address: {exc}")
        if _is_api(request):
            message = f"{exc.field} in the address {exc.message}"
            return outcome_response(400, "invalid", message, [exc.field])
        return render(
            request,
            "error.html",
            status_code=400,
            title="Address not valid",
            message=f"The address is not right: {exc.field} in it {exc.message}.",
            back=_chart_of(request.url.path) if exc.field != "patient_id" else None,
        )

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput) -> Response:
        await _record_refusal(request, request.method.lower(), f"invalid input: {exc}")
        if _is_api(request):
            parts = request.url.path.split("/")
            resource_type = parts[2] if len(parts) > 2 else ""
            where = f"{resource_type}.{exc.field}" if resource_type else exc.field
            return outcome_response(422, "invalid", f"{where}: {exc.message}", [where])
        return render(
            request, "error.html", status_code=422, title="Check the form", message=str(exc)
        )
