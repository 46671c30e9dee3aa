"""Sign in and sign out."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import FormData
from starlette.types import Receive, Scope, Send

from tandem.access import audit
from tandem.access.credentials import (
    DEVICE_COOKIE,
    DEVICE_COOKIE_DAYS,
    actor_for,
    authenticate,
    claim_login_attempt,
    end_session,
    known_device,
    login_succeeded,
    remember_device,
    start_session,
)
from tandem.access.guard import Access
from tandem.access.policy import may
from tandem.settings import Settings
from tandem.storage.db import session_scope, utcnow
from tandem.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    UnitOfWorkRoute,
    origin_of,
    page_access,
    read_form,
    session_left,
    sessions_of,
    settings_of,
)
from tandem.web.home import home_for
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)


def _safe_next(next_url: str | None) -> str:
    if next_url and next_url.startswith("/") and not next_url.startswith("//"):
        return next_url
    return "/"


def _login_page(request: Request, status_code: int = 200, **context: object) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        status_code=status_code,
        login_csrf=token,
        next=_safe_next(request.query_params.get("next") or context.pop("next", None)),  # type: ignore[arg-type]
        **context,
    )
    settings = settings_of(request)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="strict",
        max_age=3600,
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    message = {
        "1": "Your session ended after a period of inactivity. Please sign in again.",
        "lifetime": "Your session ended: sessions last at most "
        f"{settings_of(request).session_absolute_hours} hours. Please sign in again.",
    }.get(request.query_params.get("expired", ""))
    return _login_page(request, notice=message)


@dataclass(frozen=True)
class _Answer:
    response: Response
    slow_down: float = 0.0  # seconds to wait before answering a failed password


class SlowedResponse(Response):
    """An answer sent after a pause. The pause is awaited on the event loop when the answer is
    sent, so no worker thread waits through it (a flood of wrong passwords ties up nothing)."""

    def __init__(self, answer: Response, delay: float) -> None:
        super().__init__(content=answer.body, status_code=answer.status_code)
        self.raw_headers = list(answer.raw_headers)  # its type, length and cookies
        self.delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(self.delay)
        await super().__call__(scope, receive, send)


@router.post("/login")
def login(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    csrf_token: str = Form(""),
    next: str = Form("/"),
) -> Response:
    """Sign in. A failed password's answer is slowed, more with each failure of that account
    from that address, so that guessing is slow even below the limits."""
    answer = _login(request, email, password, csrf_token, next)
    if answer.slow_down > 0:
        return SlowedResponse(answer.response, answer.slow_down)
    return answer.response


def _failure_delay(settings: Settings, earlier_failures: int) -> float:
    base = settings.login_slowdown_ms / 1000
    return float(min(base * 2 ** min(earlier_failures, 3), 8 * base))


def _login(request: Request, email: str, password: str, csrf_token: str, next: str) -> _Answer:
    settings = settings_of(request)
    origin = origin_of(request, "web")
    sent_cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not csrf_token or not secrets.compare_digest(csrf_token, sent_cookie):
        return _Answer(
            _login_page(
                request,
                403,
                error="The sign-in form expired. Please try again.",
                email=email,
                next=next,
            )
        )
    if not email.strip() or not password:
        return _Answer(
            _login_page(
                request,
                422,
                error="Enter your e-mail and password.",
                email=email,
                error_field="email" if not email.strip() else "password",
                next=next,
            )
        )
    now = utcnow()
    sessions = sessions_of(request)
    device_cookie = request.cookies.get(DEVICE_COOKIE)
    with session_scope(sessions) as db:
        device = known_device(db, device_cookie, email)
    # Recorded (as failed) in its own short transaction before the password is checked.
    lockout = claim_login_attempt(
        sessions,
        email,
        origin.source_ip,
        now,
        settings.login_max_failures,
        settings.login_window_minutes,
        device,
    )
    label = email.strip().lower()[:254]
    if lockout.locked:
        audit.record_now(
            sessions,
            None,
            "login",
            origin,
            outcome=audit.MINOR_FAILURE,
            detail="rate limited",
            actor_label=label,
        )
        response = _login_page(
            request,
            429,
            email=email,
            next=next,
            error="Too many failed sign-in attempts for this account. Try again in "
            f"{lockout.retry_after_minutes} minute{'s' if lockout.retry_after_minutes != 1 else ''}"
            ", or sign in from a device you have signed in from before.",
        )
        response.headers["Retry-After"] = str(lockout.retry_after_minutes * 60)
        return _Answer(response)
    with session_scope(sessions) as db:
        user = authenticate(db, email, password)
        if user is None:
            db.add(
                audit.entry(
                    None,
                    "login",
                    origin,
                    outcome=audit.MINOR_FAILURE,
                    detail="wrong e-mail or password",
                    actor_label=label,
                )
            )
            failed = _login_page(
                request,
                401,
                error="That e-mail and password do not match an active account.",
                email=email,
                next=next,
            )
            return _Answer(failed, _failure_delay(settings, lockout.earlier_failures))
        assert lockout.attempt_id is not None  # noqa: S101 (an unlocked attempt is recorded)
        login_succeeded(db, lockout.attempt_id)
        cookie_value, _ = start_session(db, user, origin.source_ip, now)
        device_value = remember_device(db, user, device_cookie, now)
        db.add(audit.entry(actor_for(user), "login", origin))
        role, patient_id = user.role, user.patient_id
        may_find_patients = may(actor_for(user), "find_patients")
    destination = _safe_next(next)
    # The patient list is the default of old sign-in links: a patient (their own record) and
    # whoever may not search patients (a researcher) go to their home page instead.
    if destination == "/" or (
        destination == "/patients" and (patient_id is not None or not may_find_patients)
    ):
        destination = home_for(role, patient_id)
    response = RedirectResponse(destination, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie_value,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    # Long-lived, sent only to the sign-in page: this browser is a device the person knows.
    response.set_cookie(
        DEVICE_COOKIE,
        device_value,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="strict",
        max_age=DEVICE_COOKIE_DAYS * 24 * 3600,
        path="/login",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return _Answer(response)


@router.post("/logout")
def logout(
    request: Request,
    form: FormData = Depends(read_form),
    access: Access = Depends(page_access),
) -> Response:
    if form.get("csrf_token") != request.state.web_session.csrf_token:
        return RedirectResponse("/patients", status_code=303)
    end_session(access.db, request.cookies.get(SESSION_COOKIE, ""), utcnow())
    access.audit("logout")
    response = RedirectResponse("/login?flash=signed-out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/session/alive")
def session_alive(request: Request, access: Access = Depends(page_access)) -> JSONResponse:
    """How long the session lasts if the person does nothing more, for the warning tandem.js
    shows before it ends. tandem.js's own check sends X-Fragment and does not count as activity;
    the warning's "Stay signed in" button does not send it, and so keeps the session alive."""
    left = session_left(request)
    assert left is not None  # noqa: S101 (page_access found a live session)
    return JSONResponse({"seconds_left": left.seconds, "at_lifetime": left.at_lifetime})
