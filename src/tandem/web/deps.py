"""Request plumbing shared by pages and the API: the database session, who is asking, CSRF."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.audit import Origin
from tandem.access.credentials import actor_for, find_session, find_token
from tandem.access.guard import Access
from tandem.settings import Settings
from tandem.storage.db import utcnow
from tandem.storage.models import WebSession

SESSION_COOKIE = "tandem_session"
LOGIN_CSRF_COOKIE = "tandem_login_csrf"


class LoginRequired(Exception):
    def __init__(self, next_url: str, expired: bool = False) -> None:
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


def get_db(request: Request) -> Iterator[Session]:
    db = sessions_of(request)()
    try:
        yield db
    finally:
        db.close()  # anything not committed by the route is rolled back


def client_ip(request: Request) -> str:
    if settings_of(request).trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else ""


def origin_of(request: Request, channel: str) -> Origin:
    return Origin(client_ip(request), request.headers.get("user-agent", "")[:300], channel)


def _session_for(request: Request, db: Session) -> tuple[WebSession | None, bool]:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None, False
    settings = settings_of(request)
    # tandem.js marks its automatic refreshes with X-Fragment; they must not defeat the idle timeout.
    found = find_session(
        db,
        cookie,
        utcnow(),
        settings.session_idle_minutes,
        person_active=request.headers.get("x-fragment") != "1",
    )
    db.commit()
    return found.web_session, found.expired


def page_access(request: Request, db: Session = Depends(get_db)) -> Access:
    """A signed-in person using the web pages; otherwise off to the sign-in page."""
    web_session, expired = _session_for(request, db)
    if web_session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else "/", expired)
    request.state.web_session = web_session
    access = Access(
        actor_for(web_session.user), origin_of(request, "web"), db, sessions_of(request)
    )
    request.state.access = access
    return access


async def csrf_form(request: Request, access: Access = Depends(page_access)) -> Access:
    """Every form post carries the session's CSRF token."""
    form = await request.form()
    sent = form.get("csrf_token")
    expected = request.state.web_session.csrf_token
    if not isinstance(sent, str) or not secrets.compare_digest(sent, expected):
        access.refused("form", "missing or wrong CSRF token", resource_type="Form")
        raise CsrfFailed()
    return access


def api_access(request: Request, db: Session = Depends(get_db)) -> Access:
    """An API client with a bearer token (or, for reads only, a signed-in browser)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token = find_token(db, header[7:].strip(), utcnow())
        if token is None:
            raise ApiUnauthorized("the bearer token is unknown, expired or revoked")
        actor = actor_for(token.user, token.scopes)
        request.state.access = Access(actor, origin_of(request, "api"), db, sessions_of(request))
        return request.state.access  # type: ignore[no-any-return]
    if request.method in ("GET", "HEAD"):
        web_session, _ = _session_for(request, db)
        if web_session is not None:
            request.state.access = Access(
                actor_for(web_session.user), origin_of(request, "web"), db, sessions_of(request)
            )
            return request.state.access  # type: ignore[no-any-return]
    raise ApiUnauthorized(
        "send Authorization: Bearer <token> (make one with `tandem token create`)"
    )


def login_url(next_url: str, expired: bool = False) -> str:
    return f"/login?next={quote(next_url)}" + ("&expired=1" if expired else "")
