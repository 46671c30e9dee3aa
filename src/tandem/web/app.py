"""The application: every domain's routers from the domain list, and the one set of handlers
that turn errors into clear answers (an HTML page, or a FHIR OperationOutcome under /fhir).

Handlers run on the event loop; anything they write (the audit of a refusal) goes to a worker
thread, so one slow database never stalls other requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tandem import domains
from tandem.access import audit
from tandem.access.guard import Access, AccessDenied
from tandem.errors import Conflict, InvalidInput, NotFound
from tandem.fhir.outcome import FhirError, outcome_response, validation_outcome
from tandem.fhir.output import check_output
from tandem.settings import Settings, get_settings
from tandem.storage.db import make_engine, make_sessionmaker
from tandem.web.deps import ApiUnauthorized, CsrfFailed, LoginRequired, client_ip, login_url
from tandem.web.rendering import render

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


class SecurityHeaders:
    """Adds the security headers to every answer (plain ASGI: no extra task per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
        await run_in_threadpool(
            access.refused, operation, reason, resource_type=request.url.path[:60]
        )


def create_app(settings: Settings | None = None, *, run_jobs: bool = False) -> FastAPI:
    """The app. `run_jobs`: run the domains' scheduled jobs in this process (`tandem serve`
    does; tests drive jobs themselves)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        scheduler = None
        if run_jobs:
            from tandem import scheduler as job_scheduler

            scheduler = job_scheduler.start(app.state, domains.scheduled_jobs())
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            app.state.engine.dispose()

    app = FastAPI(
        title="Tandem",
        version="0.1.0",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    check_output(settings.validate_fhir_output)
    app.state.engine = make_engine(settings.database_url)
    app.state.sessions = make_sessionmaker(app.state.engine)

    app.add_middleware(SecurityHeaders)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in domains.routers():
        app.include_router(router)
    _install_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        # On the event loop and without the database: it answers even while every worker
        # thread waits on a lock.
        return JSONResponse({"status": "ok"})

    return app


def _install_handlers(app: FastAPI) -> None:
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
        if _is_api(request):
            code = "not-found" if exc.status_code == 404 else "processing"
            return outcome_response(exc.status_code, code, str(exc.detail))
        title = "Page not found" if exc.status_code == 404 else "Request refused"
        return render(
            request, "error.html", status_code=exc.status_code, title=title, message=str(exc.detail)
        )

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> Response:
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
        await run_in_threadpool(
            audit.record_now,
            request.app.state.sessions,
            None,
            "authenticate",
            audit.Origin(client_ip(request), "", "api"),
            outcome=audit.MINOR_FAILURE,
            detail=str(exc),
            resource_type=request.url.path[:60],
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
