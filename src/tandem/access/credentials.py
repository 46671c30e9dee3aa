"""Passwords (argon2id), browser sessions, API tokens and login rate limiting."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, bindparam, delete, func, select, text, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from tandem.access.policy import Actor, Role
from tandem.access.scopes import parse_scopes
from tandem.storage.models import (
    ApiToken,
    KnownDevice,
    LoginAttempt,
    Membership,
    SmartToken,
    User,
    WebSession,
)

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
        system_admin=user.system_admin and user.role == Role.ADMIN,
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
    # The attempt recorded for an unlocked sign-in (as failed until `login_succeeded`).
    attempt_id: int | None = None
    # Failed attempts of this account from this address (or device) before this one.
    earlier_failures: int = 0


# Across accounts from one address, and across addresses for one account: this many times the
# per-account-and-address limit.
WIDE_LIMIT_FACTOR = 4


def _lock_key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def _serialize_login_gate(db: Session, email: str, source_ip: str) -> None:
    """Hold, until this short transaction ends, the lock that other sign-ins for this account
    or from this address take: PostgreSQL advisory locks per account and per address (taken in
    one order, so two attempts never wait on each other in a circle); on SQLite the database's
    write lock (BEGIN IMMEDIATE)."""
    connection = db.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        return
    for key in sorted(
        {_lock_key(f"login:account:{email}"), _lock_key(f"login:address:{source_ip}")}
    ):
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def claim_login_attempt(
    sessions: sessionmaker[Session],
    email: str,
    source_ip: str,
    now: datetime,
    max_failures: int,
    window_minutes: int,
    device: str = "",
    across_addresses: bool = True,
) -> Lockout:
    """Count the recent failures and, below every limit, record this attempt (as failed until
    the password proves right), in one short transaction of its own, serialized with every other
    attempt for this account or from this address: parallel guesses cannot all slip under the
    limit. Limits within the window:

    - from a device this account has signed in from before (`device`): `max_failures` from that
      device, and nothing else: failures elsewhere do not lock a clinician out of their device;
    - otherwise: `max_failures` for this account from this address, `WIDE_LIMIT_FACTOR` times
      that from this address across accounts, and as many for this account across addresses
      (unless `across_addresses` is False: for apps, whose credentials are keys and random
      secrets nobody can guess, that limit would only let anyone block the app).
    """
    email = email.strip().lower()
    since = now - timedelta(minutes=window_minutes)
    recent = (LoginAttempt.attempted_at >= since, LoginAttempt.succeeded.is_(False))
    db = sessions()
    try:
        _serialize_login_gate(db, email, source_ip)
        if device:
            checks = [
                (and_(LoginAttempt.email == email, LoginAttempt.device == device), max_failures)
            ]
        else:
            pair = and_(LoginAttempt.email == email, LoginAttempt.source_ip == source_ip)
            checks = [
                (pair, max_failures),
                (LoginAttempt.source_ip == source_ip, max_failures * WIDE_LIMIT_FACTOR),
            ]
            if across_addresses:
                checks.append((LoginAttempt.email == email, max_failures * WIDE_LIMIT_FACTOR))
        first_count = 0
        for i, (where, limit) in enumerate(checks):
            count, oldest = db.execute(
                select(func.count(), func.min(LoginAttempt.attempted_at)).where(where, *recent)
            ).one()
            if i == 0:
                first_count = count
            if count >= limit:
                db.rollback()
                unlock = oldest + timedelta(minutes=window_minutes)
                return Lockout(True, max(1, int((unlock - now).total_seconds() // 60) + 1))
        attempt = LoginAttempt(
            email=email, source_ip=source_ip, attempted_at=now, succeeded=False, device=device
        )
        db.add(attempt)
        db.flush()
        attempt_id = attempt.id
        db.commit()
        return Lockout(False, attempt_id=attempt_id, earlier_failures=first_count)
    finally:
        db.close()


def login_succeeded(db: Session, attempt_id: int) -> None:
    db.execute(update(LoginAttempt).where(LoginAttempt.id == attempt_id).values(succeeded=True))


# --- known devices -------------------------------------------------------------------

DEVICE_COOKIE = "tandem_device"
DEVICE_COOKIE_DAYS = 400


def known_device(db: Session, cookie_value: str | None, email: str) -> str:
    """The device's key when this browser's device cookie belongs to a device the account with
    this e-mail has signed in from; "" otherwise (no cookie, forged, or another account's)."""
    if not cookie_value:
        return ""
    device = _digest(cookie_value)
    found = db.scalar(
        select(KnownDevice.device)
        .join(User, User.id == KnownDevice.user_id)
        .where(KnownDevice.device == device, User.email == email.strip().lower())
    )
    return found or ""


def remember_device(db: Session, user: User, cookie_value: str | None, now: datetime) -> str:
    """Remember this browser as one `user` signed in from; returns the cookie value to (re)set:
    the browser's own when it is a device Tandem issued, a new one otherwise."""
    if (
        not cookie_value
        or db.scalar(
            select(KnownDevice.device).where(KnownDevice.device == _digest(cookie_value)).limit(1)
        )
        is None
    ):
        cookie_value = secrets.token_urlsafe(32)
    device = _digest(cookie_value)
    known = db.get(KnownDevice, (device, user.id))
    if known is None:
        db.add(KnownDevice(device=device, user_id=user.id, first_seen_at=now, last_seen_at=now))
    else:
        known.last_seen_at = now
    return cookie_value


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
    # Why a session that was live has just ended: "idle" (no activity for the idle limit) or
    # "lifetime" (the absolute lifetime since sign-in); "" otherwise.
    expired: str = ""
    # A live session: when it ends if nobody does anything more (its idle limit counted from
    # the last activity, this request's included), and whether that is the end of its absolute
    # lifetime, which no activity postpones.
    ends_at: datetime | None = None
    at_lifetime: bool = False


def touch_interval(idle_minutes: int) -> timedelta:
    """How stale `last_seen_at` may get before a person's request records it again: a quarter
    of the idle limit, at most a minute. A page view need not always cost a write, and a person
    active more often than the idle limit is never signed out."""
    return min(timedelta(seconds=60), timedelta(minutes=idle_minutes) / 4)


def find_session(
    db: Session,
    cookie_value: str,
    now: datetime,
    idle_minutes: int,
    person_active: bool = True,
    absolute_hours: int = 12,
) -> SessionLookup:
    """The live session for a cookie. Only what a person does keeps it alive: a page's own
    automatic refresh (`person_active=False`) reads through it without postponing the timeout.
    However active, a session ends `absolute_hours` after sign-in."""
    web_session = db.get(
        WebSession,
        _digest(cookie_value),
        options=[joinedload(WebSession.user).selectinload(User.memberships)],
    )
    if web_session is None or web_session.ended_at is not None:
        return SessionLookup(None)
    if not web_session.user.active:  # ended for good: reactivating the user does not revive it
        web_session.ended_at = now
        return SessionLookup(None)
    if now - web_session.created_at > timedelta(hours=absolute_hours):
        web_session.ended_at = now
        return SessionLookup(None, expired="lifetime")
    if now - web_session.last_seen_at > timedelta(minutes=idle_minutes):
        web_session.ended_at = now
        return SessionLookup(None, expired="idle")
    last_active = web_session.last_seen_at
    if person_active and now - last_active > touch_interval(idle_minutes):
        db.execute(
            update(WebSession).where(WebSession.id == web_session.id).values(last_seen_at=now)
        )
        last_active = now
    idle_end = last_active + timedelta(minutes=idle_minutes)
    lifetime_end = web_session.created_at + timedelta(hours=absolute_hours)
    return SessionLookup(
        web_session, ends_at=min(idle_end, lifetime_end), at_lifetime=lifetime_end <= idle_end
    )


def end_session(db: Session, cookie_value: str, now: datetime) -> None:
    web_session = db.get(WebSession, _digest(cookie_value))
    if web_session is not None and web_session.ended_at is None:
        web_session.ended_at = now


def end_access(
    db: Session,
    user_id: int,
    now: datetime,
    keep_session: str | None = None,
    forget_devices: bool = False,
) -> tuple[int, int]:
    """End every session of the user (except `keep_session`, the id of the session making the
    change, when the user changes their own account) and revoke every API token: after a
    password reset, a change of role or programs, or deactivation. Returns (sessions, tokens)
    ended (API tokens and apps' tokens). `forget_devices`: the user's known devices are known no longer (a password reset)."""
    sessions = update(WebSession).where(
        WebSession.user_id == user_id, WebSession.ended_at.is_(None)
    )
    if keep_session is not None:
        sessions = sessions.where(WebSession.id != keep_session)
    ended = cast(CursorResult[Any], db.execute(sessions.values(ended_at=now))).rowcount
    revoked = cast(
        CursorResult[Any],
        db.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        ),
    ).rowcount
    # Tokens of apps the user authorized (SMART on FHIR) end with the user's other access.
    revoked = (revoked or 0) + (
        cast(
            CursorResult[Any],
            db.execute(
                update(SmartToken)
                .where(SmartToken.user_id == user_id, SmartToken.revoked_at.is_(None))
                .values(revoked_at=now)
            ),
        ).rowcount
        or 0
    )
    if forget_devices:
        db.execute(delete(KnownDevice).where(KnownDevice.user_id == user_id))
    return ended or 0, revoked or 0


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


# A bearer token's actor in one statement of Core SQL (no ORM objects): the token, its user and
# the user's programs (one row per membership). Built once; only the digest changes.
_TOKEN_ACTOR = (
    select(
        ApiToken.revoked_at,
        ApiToken.expires_at,
        ApiToken.scopes,
        User.id,
        User.email,
        User.role,
        User.patient_id,
        User.system_admin,
        User.active,
        Membership.program_id,
    )
    .join(User, User.id == ApiToken.user_id)
    .outerjoin(Membership, Membership.user_id == User.id)
    .where(ApiToken.token_hash == bindparam("digest"))
)


def token_actor(db: Session, secret: str, now: datetime) -> Actor | None:
    """Who a live bearer token acts as (None: unknown, revoked, expired, or its user is
    inactive), read on every API request: one statement, checked afresh each time (a revoked
    token is refused at once in every process, nothing is cached)."""
    rows = db.connection().execute(_TOKEN_ACTOR, {"digest": _digest(secret)}).all()
    if not rows:
        return None
    revoked_at, expires_at, scopes, user_id, email, role, patient_id, system_admin, active, _ = (
        rows[0]
    )
    if revoked_at is not None or not active:
        return None
    if expires_at is not None and expires_at <= now:
        return None
    return Actor(
        user_id=user_id,
        label=email,
        role=Role(role),
        program_ids=frozenset(row[-1] for row in rows if row[-1] is not None),
        patient_id=patient_id,
        scopes=parse_scopes(scopes),
        system_admin=system_admin and role == Role.ADMIN,
    )


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
