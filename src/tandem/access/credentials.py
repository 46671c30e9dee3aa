"""Passwords (argon2id), browser sessions, API tokens and login rate limiting."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload, selectinload

from tandem.access.policy import Actor, Role
from tandem.access.scopes import parse_scopes
from tandem.storage.models import ApiToken, LoginAttempt, User, WebSession

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters

MIN_PASSWORD_LENGTH = 10


class CredentialError(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise CredentialError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when the e-mail is unknown, so timing does not reveal accounts.
# Made on first use (hashing costs about half a second: every `tandem` command would pay it),
# with the hasher in use then, so it costs what a real account's check costs.
_dummy: tuple[PasswordHasher, str] | None = None


def _dummy_hash() -> str:
    global _dummy
    if _dummy is None or _dummy[0] is not _hasher:
        _dummy = (_hasher, _hasher.hash("not-a-real-password-" + secrets.token_hex(8)))
    return _dummy[1]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def actor_for(user: User, scopes: str | None = None) -> Actor:
    return Actor(
        user_id=user.id,
        label=user.email,
        role=Role(user.role),
        program_ids=user.program_ids,
        patient_id=user.patient_id,
        scopes=parse_scopes(scopes) if scopes is not None else None,
    )


def authenticate(db: Session, email: str, password: str) -> User | None:
    user = db.scalar(
        select(User)
        .where(User.email == email.strip().lower())
        .options(selectinload(User.memberships))
    )
    if user is None or not user.active:
        verify_password(_dummy_hash(), password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


# --- login rate limiting -------------------------------------------------------------


@dataclass(frozen=True)
class Lockout:
    locked: bool
    retry_after_minutes: int = 0


def login_lockout(
    db: Session,
    email: str,
    now: datetime,
    max_failures: int,
    window_minutes: int,
    source_ip: str = "",
) -> Lockout:
    """Too many failed sign-ins for this e-mail, or from this address across e-mails (four times
    the per-account limit), within the window lock sign-in until the failures age out."""
    since = now - timedelta(minutes=window_minutes)
    recent = (LoginAttempt.attempted_at >= since, LoginAttempt.succeeded.is_(False))
    checks = [(LoginAttempt.email == email.strip().lower(), max_failures)]
    if source_ip:
        checks.append((LoginAttempt.source_ip == source_ip, max_failures * 4))
    for where, limit in checks:
        count, oldest = db.execute(
            select(func.count(), func.min(LoginAttempt.attempted_at)).where(where, *recent)
        ).one()
        if count >= limit:
            unlock = oldest + timedelta(minutes=window_minutes)
            return Lockout(True, max(1, int((unlock - now).total_seconds() // 60) + 1))
    return Lockout(False)


def record_login_attempt(
    db: Session, email: str, source_ip: str, now: datetime, succeeded: bool
) -> None:
    db.add(
        LoginAttempt(
            email=email.strip().lower(), source_ip=source_ip, attempted_at=now, succeeded=succeeded
        )
    )


# --- browser sessions ----------------------------------------------------------------


def start_session(db: Session, user: User, source_ip: str, now: datetime) -> tuple[str, WebSession]:
    cookie_value = secrets.token_urlsafe(32)
    web_session = WebSession(
        id=_digest(cookie_value),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        source_ip=source_ip,
    )
    db.add(web_session)
    user.last_login_at = now
    return cookie_value, web_session


@dataclass(frozen=True)
class SessionLookup:
    web_session: WebSession | None
    expired: bool = False


def find_session(
    db: Session, cookie_value: str, now: datetime, idle_minutes: int, person_active: bool = True
) -> SessionLookup:
    """The live session for a cookie. Only what a person does keeps it alive: a page's own
    automatic refresh (`person_active=False`) reads through it without postponing the timeout."""
    web_session = db.get(
        WebSession,
        _digest(cookie_value),
        options=[joinedload(WebSession.user).selectinload(User.memberships)],
    )
    if web_session is None or web_session.ended_at is not None:
        return SessionLookup(None)
    if not web_session.user.active:
        return SessionLookup(None)
    if now - web_session.last_seen_at > timedelta(minutes=idle_minutes):
        web_session.ended_at = now
        return SessionLookup(None, expired=True)
    # Touch at most once a minute: a page view should not always cost a write.
    if person_active and now - web_session.last_seen_at > timedelta(seconds=60):
        db.execute(
            update(WebSession).where(WebSession.id == web_session.id).values(last_seen_at=now)
        )
    return SessionLookup(web_session)


def end_session(db: Session, cookie_value: str, now: datetime) -> None:
    web_session = db.get(WebSession, _digest(cookie_value))
    if web_session is not None and web_session.ended_at is None:
        web_session.ended_at = now


# --- API tokens ----------------------------------------------------------------------

TOKEN_PREFIX = "tdm_"  # noqa: S105 (a label, not a secret)


def create_token(
    db: Session,
    user: User,
    scopes: list[str],
    label: str,
    now: datetime,
    expires_at: datetime | None = None,
) -> tuple[str, ApiToken]:
    scope_text = " ".join(scopes)
    parsed = parse_scopes(scope_text)
    if not parsed:
        raise CredentialError("give at least one --scope, e.g. user/Patient.rs")
    if Role(user.role) is Role.PATIENT and any(s.context != "patient" for s in parsed):
        raise CredentialError("a patient's token takes patient/ scopes only")
    if Role(user.role) is not Role.PATIENT and any(s.context == "patient" for s in parsed):
        raise CredentialError(
            "patient/ scopes are for patients' own tokens; staff use user/ scopes"
        )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        token_hash=_digest(secret),
        prefix=secret[:10],
        scopes=" ".join(str(s) for s in parsed),
        label=label,
        created_at=now,
        expires_at=expires_at,
    )
    db.add(token)
    db.flush()
    return secret, token


def find_token(db: Session, secret: str, now: datetime) -> ApiToken | None:
    token = db.scalar(
        select(ApiToken)
        .where(ApiToken.token_hash == _digest(secret))
        .options(joinedload(ApiToken.user).selectinload(User.memberships))
    )
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    return token


def revoke_token(db: Session, token_id_or_prefix: str, now: datetime) -> ApiToken | None:
    query = select(ApiToken)
    if token_id_or_prefix.isdigit():
        query = query.where(ApiToken.id == int(token_id_or_prefix))
    else:
        query = query.where(ApiToken.token_hash == _digest(token_id_or_prefix))
    token = db.scalar(query)
    if token is not None and token.revoked_at is None:
        token.revoked_at = now
    return token
