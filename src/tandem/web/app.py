"""The application: pages, the FHIR API, and the handlers that turn errors into clear answers."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from tandem.settings import Settings, get_settings
from tandem.storage.db import make_engine, make_sessionmaker
from tandem.web.deps import CsrfFailed, LoginRequired, login_url
from tandem.web.rendering import render

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'",
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Tandem",
        version="0.1.0",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = make_engine(settings.database_url)
    app.state.sessions = make_sessionmaker(app.state.engine)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):  # type: ignore[no-untyped-def]
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    from tandem.alerts import pages as alert_pages
    from tandem.fhir.routes import install_fhir
    from tandem.medications import pages as medication_pages
    from tandem.medications import routes as medication_routes
    from tandem.patients import pages as patient_pages
    from tandem.web import admin_pages, auth_pages
    from tandem.withdrawal import pages as withdrawal_pages
    from tandem.withdrawal import routes as withdrawal_routes

    install_fhir(app)
    app.include_router(medication_routes.router)
    app.include_router(withdrawal_routes.router)
    app.include_router(auth_pages.router)
    app.include_router(patient_pages.router)
    app.include_router(admin_pages.router)
    app.include_router(medication_pages.router)
    app.include_router(withdrawal_pages.router)
    app.include_router(alert_pages.router)

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
        if request.url.path.startswith("/fhir"):
            from tandem.fhir.outcome import outcome_response

            return outcome_response(
                exc.status_code,
                "not-found" if exc.status_code == 404 else "processing",
                str(exc.detail),
            )
        title = "Page not found" if exc.status_code == 404 else "Request refused"
        return render(
            request, "error.html", status_code=exc.status_code, title=title, message=str(exc.detail)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith("/fhir"):
            from tandem.fhir.outcome import validation_outcome

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

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/patients", status_code=303)

    return app
