"""Request plumbing shared by pages and the API: the database session, who is asking, CSRF."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from tandem.access import smart
from tandem.access.audit import Origin, with_shown_rows
from tandem.access.audit_commit import AuditCommitter
from tandem.access.credentials import actor_for, find_session, token_actor
from tandem.access.guard import Access
from tandem.settings import Settings
from tandem.storage.db import has_written, utcnow
from tandem.storage.models import AuditEntry, WebSession
from tandem.web.limits import refuse_nul

SESSION_COOKIE = "tandem_session"
LOGIN_CSRF_COOKIE = "tandem_login_csrf"


class LoginRequired(Exception):
    def __init__(self, next_url: str, expired: str = "") -> None:
        self.next_url = next_url
        self.expired = expired


class CsrfFailed(Exception):
    pass


class ApiUnauthorized(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def sessions_of(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions  # type: ignore[no-any-return]


def committer_of(request: Request) -> AuditCommitter:
    return request.app.state.audit_committer  # type: ignore[no-any-return]


def get_db(request: Request) -> Iterator[Session]:
    """The request's database session. The route class (`UnitOfWorkRoute`) commits it once the
    route has answered below 400 and rolls it back otherwise, before the answer is sent."""
    db = sessions_of(request)()
    request.state.db = db
    try:
        yield db
    finally:
        db.close()  # anything not committed is rolled back


def _finish(db: Session, keep: bool, access: Access | None = None) -> list[AuditEntry]:
    """End the request's unit of work. Returns the audit entries of a request that only read:
    its transaction is ended (nothing to keep) and the entries go to the group committer."""
    try:
        if not keep:
            db.rollback()
            return []
        entries = access.take_pending_audit() if access is not None else []
        if entries and not has_written(db):
            db.rollback()
            return entries
        db.add_all([with_shown_rows(e) for e in entries])
        db.commit()
        return []
    finally:
        db.close()


class UnitOfWorkRoute(APIRoute):
    """One unit of work per request: every route's changes and audit entries are committed
    together when it answers (status below 400), or rolled back when it fails or refuses.
    Routes never commit or roll back by hand. Durable before the answer leaves the server."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_in_unit_of_work(request: Request) -> Response:
            request.state.unit_of_work = True
            try:
                response = await handle(request)
            except BaseException:
                db = getattr(request.state, "db", None)
                if db is not None:
                    await run_in_threadpool(_finish, db, False)
                raise
            db = getattr(request.state, "db", None)
            if db is not None:
                # A route answering with an error page has discarded its attempted work by
                # recording the refusal (`Access.refused`); what it read to show the page since
                # is audited and kept. Any other error answer keeps nothing.
                access = getattr(request.state, "access", None)
                keep = response.status_code < 400 or (access is not None and access.refusals > 0)
                reads = await run_in_threadpool(_finish, db, keep, access)
                if reads:
                    # Durable before the answer is sent, committed with other requests' reads.
                    await committer_of(request).commit(reads)
            return response

        return handle_in_unit_of_work


def deferred_audit(request: Request) -> list[AuditEntry] | None:
    """Where the request's audit entries wait for the end of its unit of work: a list under
    `UnitOfWorkRoute` (which hands them on), None elsewhere (straight into the session)."""
    return [] if getattr(request.state, "unit_of_work", False) else None


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or behind N trusted proxies (TANDEM_TRUSTED_PROXIES)
    the entry N from the right of X-Forwarded-For, the one the outermost trusted proxy saw.
    Entries to its left are whatever the client wrote, and are never read. A header with fewer
    entries than proxies, or an entry that is not an address, leaves the peer's address."""
    peer = request.client.host if request.client else ""
    proxies = settings_of(request).trusted_proxies
    if proxies <= 0:
        return peer
    entries = [
        item.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for item in header.split(",")
    ]
    if len(entries) < proxies:
        return peer
    try:
        return str(ipaddress.ip_address(entries[-proxies]))
    except ValueError:
        return peer


def origin_of(request: Request, channel: str) -> Origin:
    return Origin(client_ip(request), request.headers.get("user-agent", "")[:300], channel)


@dataclass(frozen=True)
class SessionLeft:
    """How long the signed-in session lasts if the person does nothing more."""

    seconds: int
    at_lifetime: bool  # the end of its absolute lifetime: activity does not postpone it


def _session_for(request: Request, db: Session) -> tuple[WebSession | None, str]:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None, ""
    settings = settings_of(request)
    now = utcnow()
    # tandem.js marks its automatic refreshes with X-Fragment; they must not defeat the idle timeout.
    found = find_session(
        db,
        cookie,
        now,
        settings.session_idle_minutes,
        person_active=request.headers.get("x-fragment") != "1",
        absolute_hours=settings.session_absolute_hours,
    )
    if has_written(db):  # the session touched or ended: kept whatever the request does next
        db.commit()
    if found.ends_at is not None:
        # For the page (the warning before the idle limit, in tandem.js) and /session/alive.
        request.state.session_left = SessionLeft(
            max(0, int((found.ends_at - now).total_seconds())), found.at_lifetime
        )
    return found.web_session, found.expired


def session_left(request: Request) -> SessionLeft | None:
    return getattr(request.state, "session_left", None)


def return_to(request: Request) -> str:
    """Where a person sent to sign in comes back to: the page they asked for, or, for a form
    they posted, the page the form was on (its Referer, from this site only). Back on the form,
    tandem.js restores what they had typed, and the save goes through with the new session."""
    if request.method == "GET":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc == request.url.netloc and referer.path.startswith("/"):
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return "/"


@dataclass(frozen=True)
class Viewer:
    """Who is signed in, as the page layout shows it: plain values, readable after the
    request's unit of work has ended or been rolled back."""

    user_id: int
    display_name: str
    role: str
    patient_id: str | None


def remember_viewer(request: Request, web_session: WebSession) -> None:
    user = web_session.user
    request.state.viewer = Viewer(user.id, user.display_name, user.role, user.patient_id)
    request.state.csrf_token = web_session.csrf_token


def open_db(request: Request) -> Session:
    """The request's session, for the unit of work (`UnitOfWorkRoute` ends it)."""
    db = sessions_of(request)()
    request.state.db = db
    return db


async def page_access(request: Request) -> Access:
    """A signed-in person using the web pages; otherwise off to the sign-in page. The session
    is opened and the person found in one worker thread."""
    return await run_in_threadpool(_page_access, request)


def _page_access(request: Request) -> Access:
    db = open_db(request)
    web_session, expired = _session_for(request, db)
    if web_session is None:
        raise LoginRequired(return_to(request), expired)
    request.state.web_session = web_session
    remember_viewer(request, web_session)
    access = Access(
        actor_for(web_session.user),
        origin_of(request, "web"),
        db,
        sessions_of(request),
        pending_audit=deferred_audit(request),
    )
    request.state.access = access
    refuse_nul(request)
    return access


async def read_form(request: Request) -> FormData:
    """The posted form, read on the event loop (no database here); `form_of` hands it to the
    (synchronous) route."""
    form = await request.form()
    request.state.form = form
    return form


def form_of(request: Request) -> FormData:
    return request.state.form  # type: ignore[no-any-return]


async def csrf_form(
    request: Request,
    access: Access = Depends(page_access),
    form: FormData = Depends(read_form),
) -> Access:
    """Every form post carries the session's CSRF token. The person is found first: an anonymous
    post is sent to sign in before its body is read."""
    sent = form.get("csrf_token")
    expected = request.state.csrf_token
    if not isinstance(sent, str) or not secrets.compare_digest(sent, expected):
        await run_in_threadpool(
            access.refused, "form", "missing or wrong CSRF token", resource_type="Form"
        )
        raise CsrfFailed()
    refuse_nul(request, form)
    return access


async def api_access(request: Request) -> Access:
    """An API client with a bearer token (or, for reads only, a signed-in browser), found in
    one worker thread with the request's session opened."""
    return await run_in_threadpool(_api_access, request)


def _api_access(request: Request) -> Access:
    db = open_db(request)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        secret = header[7:].strip()
        if secret.startswith(smart.ACCESS_PREFIX):  # an app's token (SMART on FHIR)
            found = smart.actor_of_token(db, secret, utcnow())
        else:
            found = token_actor(db, secret, utcnow())
        if found is None:
            raise ApiUnauthorized("the bearer token is unknown, expired or revoked")
        actor = found
        request.state.access = Access(
            actor,
            origin_of(request, "api"),
            db,
            sessions_of(request),
            pending_audit=deferred_audit(request),
        )
        refuse_nul(request)
        return request.state.access  # type: ignore[no-any-return]
    if request.method in ("GET", "HEAD"):
        web_session, _ = _session_for(request, db)
        if web_session is not None:
            request.state.access = Access(
                actor_for(web_session.user),
                origin_of(request, "web"),
                db,
                sessions_of(request),
                pending_audit=deferred_audit(request),
            )
            refuse_nul(request)
            return request.state.access  # type: ignore[no-any-return]
    raise ApiUnauthorized(
        "send Authorization: Bearer <token> (make one with `tandem token create`)"
    )


def form_refused(request: Request, access: Access, exc: Exception) -> None:
    """A form answered with its errors: discard what it tried, record the refusal."""
    access.refused(
        request.method.lower(), f"invalid input: {exc}", resource_type=request.url.path[:60]
    )


def login_url(next_url: str, expired: str = "") -> str:
    """The sign-in page, saying why the session ended: `expired=1` after inactivity,
    `expired=lifetime` at the end of its absolute lifetime."""
    reason = {"idle": "1", "lifetime": "lifetime"}.get(expired)
    return f"/login?next={quote(next_url)}" + (f"&expired={reason}" if reason else "")
