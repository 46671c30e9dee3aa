"""Sign in and sign out."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from tandem.access import audit
from tandem.access.credentials import (
    actor_for,
    authenticate,
    end_session,
    login_lockout,
    record_login_attempt,
    start_session,
)
from tandem.access.guard import Access
from tandem.access.policy import may
from tandem.storage.db import utcnow
from tandem.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    UnitOfWorkRoute,
    get_db,
    origin_of,
    page_access,
    read_form,
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
    expired = request.query_params.get("expired") == "1"
    message = (
        "Your session ended after a period of inactivity. Please sign in again."
        if expired
        else None
    )
    return _login_page(request, notice=message)


@router.post("/login")
def login(
    request: Request,
    email: str = Form(""),
    password: str = Form(""),
    csrf_token: str = Form(""),
    next: str = Form("/"),
    db: Session = Depends(get_db),
) -> Response:
    settings = settings_of(request)
    origin = origin_of(request, "web")
    sent_cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not csrf_token or not secrets.compare_digest(csrf_token, sent_cookie):
        return _login_page(
            request,
            403,
            error="The sign-in form expired. Please try again.",
            email=email,
            next=next,
        )
    if not email.strip() or not password:
        return _login_page(
            request,
            422,
            error="Enter your e-mail and password.",
            email=email,
            error_field="email" if not email.strip() else "password",
            next=next,
        )
    now = utcnow()
    lockout = login_lockout(
        db, email, now, settings.login_max_failures, settings.login_window_minutes, origin.source_ip
    )
    if lockout.locked:
        db.add(
            audit.entry(
                None,
                "login",
                origin,
                outcome=audit.MINOR_FAILURE,
                detail="rate limited",
                actor_label=email.strip().lower()[:254],
            )
        )
        db.commit()
        response = _login_page(
            request,
            429,
            email=email,
            next=next,
            error=f"Too many failed sign-in attempts for this account. Try again in "
            f"{lockout.retry_after_minutes} minute{'s' if lockout.retry_after_minutes != 1 else ''}.",
        )
        response.headers["Retry-After"] = str(lockout.retry_after_minutes * 60)
        return response
    user = authenticate(db, email, password)
    record_login_attempt(db, email, origin.source_ip, now, succeeded=user is not None)
    if user is None:
        db.add(
            audit.entry(
                None,
                "login",
                origin,
                outcome=audit.MINOR_FAILURE,
                detail="wrong e-mail or password",
                actor_label=email.strip().lower()[:254],
            )
        )
        db.commit()
        return _login_page(
            request,
            401,
            error="That e-mail and password do not match an active account.",
            email=email,
            next=next,
        )
    cookie_value, _ = start_session(db, user, origin.source_ip, now)
    db.add(audit.entry(actor_for(user), "login", origin))
    db.commit()
    destination = _safe_next(next)
    # The patient list is the default of old sign-in links: a patient (their own record) and
    # whoever may not search patients (a researcher) go to their home page instead.
    actor = actor_for(user)
    if destination == "/" or (
        destination == "/patients"
        and (user.patient_id is not None or not may(actor, "find_patients"))
    ):
        destination = home_for(user.role, user.patient_id)
    response = RedirectResponse(destination, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie_value,
        httponly=True,
        secure=settings.cookie_secure,
        samesite="lax",
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


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
