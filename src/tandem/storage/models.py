"""Platform tables: programs and units, people, patients and episodes, sign-in, audit.

Domain folders add their own tables on the same `Base` (see `storage/registry.py`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from tandem.storage.db import UTCDateTime, utcnow


class Base(DeclarativeBase):
    pass


def new_id() -> str:
    return str(uuid.uuid4())


class Program(Base):
    """A treatment program at one site (a detox unit, an outpatient program, counselors)."""

    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    site: Mapped[str] = mapped_column(String(200), default="")
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    units: Mapped[list[Unit]] = relationship(back_populates="program", order_by="Unit.name")

    @property
    def mrn_system(self) -> str:
        return mrn_system_of(self.code)


def mrn_system_of(program_code: str) -> str:
    """The identifier system of a program's medical record numbers."""
    return f"urn:tandem:program:{program_code}:mrn"


class Unit(Base):
    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(
        String(20)
    )  # detox | inpatient_rehab | outpatient | counseling

    program: Mapped[Program] = relationship(back_populates="units")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Administers every program, not only their own: granted and revoked only with
    # `tandem user grant-system-admin` / `revoke-system-admin`, each audited.
    system_admin: Mapped[bool] = mapped_column(Boolean, server_default=false())
    patient_id: Mapped[str | None] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), nullable=True, unique=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def program_ids(self) -> frozenset[int]:
        return frozenset(m.program_id for m in self.memberships)


class Membership(Base):
    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="RESTRICT"), primary_key=True
    )

    user: Mapped[User] = relationship(back_populates="memberships")
    program: Mapped[Program] = relationship()


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (
        Index("ix_patients_program_family", "program_id", "family_lower"),
        Index("ix_patients_family_lower", "family_lower"),
        Index("ix_patients_given_lower", "given_lower"),
        Index("ix_patients_birth_date", "birth_date"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    family: Mapped[str] = mapped_column(String(200), default="")
    given: Mapped[str] = mapped_column(String(200), default="")
    # The given names as sent ("Mary Ann" is one name); None for rows that only have `given`.
    # JSONB on PostgreSQL: comparable, so a search with DISTINCT can select the row.
    given_names: Mapped[list[str] | None] = mapped_column(
        JSON().with_variant(JSONB(), "postgresql"), nullable=True
    )
    family_lower: Mapped[str] = mapped_column(String(200), default="")
    given_lower: Mapped[str] = mapped_column(String(200), default="")
    gender: Mapped[str | None] = mapped_column(String(10), nullable=True)
    birth_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    phone: Mapped[str | None] = mapped_column(String(60), nullable=True)
    email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    version_id: Mapped[int] = mapped_column(Integer, default=1)
    last_updated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    program: Mapped[Program] = relationship()
    identifiers: Mapped[list[PatientIdentifier]] = relationship(
        back_populates="patient", cascade="all, delete-orphan", order_by="PatientIdentifier.id"
    )
    episodes: Mapped[list[Episode]] = relationship(
        back_populates="patient", order_by="Episode.admitted_at.desc()"
    )
    name_words: Mapped[list[PatientNameWord]] = relationship(
        back_populates="patient", cascade="all, delete-orphan"
    )

    @property
    def display_name(self) -> str:
        return display_name(self.family, self.given)

    @property
    def mrn(self) -> str | None:
        system = self.program.mrn_system if self.program else None
        return mrn_of([(i.system, i.value) for i in self.identifiers], system)


def display_name(family: str, given: str) -> str:
    """A patient's name as the app shows it: "WILSON, Nora"."""
    return f"{family.upper()}, {given}".strip(", ")


def mrn_of(identifiers: Sequence[tuple[str, str]], system: str | None) -> str | None:
    """The record number among a patient's identifiers (system, value), in the order stored:
    the program's own, else the first."""
    for ident_system, value in identifiers:
        if ident_system == system:
            return value
    return identifiers[0][1] if identifiers else None


class PatientIdentifier(Base):
    __tablename__ = "patient_identifiers"
    __table_args__ = (
        UniqueConstraint("system", "value"),
        Index("ix_identifier_value", "value"),
        Index("ix_identifier_patient", "patient_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"))
    system: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(100))

    patient: Mapped[Patient] = relationship(back_populates="identifiers")


_WORD_SPLIT = re.compile(r"[\s\-']+")


def name_words(family: str, given: str) -> set[str]:
    """The words a name search matches by prefix: each part of the family and given names."""
    return {w for w in _WORD_SPLIT.split(f"{family} {given}".lower()) if w}


class PatientNameWord(Base):
    """One word of a patient's name, indexed so that a prefix search never scans the patients."""

    __tablename__ = "patient_name_words"
    __table_args__ = (Index("ix_name_words_word", "word", "patient_id"),)

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="CASCADE"), primary_key=True
    )
    word: Mapped[str] = mapped_column(String(100), primary_key=True)

    patient: Mapped[Patient] = relationship(back_populates="name_words")


def index_patient_names(session: Session, _context: object, _instances: object) -> None:
    """However a patient is written through the ORM, its search columns follow its name.
    Listened to on every session `storage.db.make_sessionmaker` makes (not on import)."""
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, Patient):
            continue
        obj.family_lower = (obj.family or "").lower()
        obj.given_lower = (obj.given or "").lower()
        wanted = name_words(obj.family or "", obj.given or "")
        have = {w.word for w in obj.name_words}
        if wanted != have:
            obj.name_words[:] = [w for w in obj.name_words if w.word in wanted]
            obj.name_words.extend(PatientNameWord(word=w) for w in sorted(wanted - have))


class Episode(Base):
    """An episode of care: admitted, moving through phases, discharged with a reason."""

    __tablename__ = "episodes"
    __table_args__ = (
        Index("ix_episodes_patient", "patient_id"),
        Index("ix_episodes_unit", "unit_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="RESTRICT"), nullable=True
    )
    phase: Mapped[str] = mapped_column(String(20))  # detox | rehab | aftercare
    admitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    phase_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    discharged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    discharge_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)

    patient: Mapped[Patient] = relationship(back_populates="episodes")
    unit: Mapped[Unit | None] = relationship()

    @property
    def is_open(self) -> bool:
        return self.discharged_at is None


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie value
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    source_ip: Mapped[str] = mapped_column(String(64), default="")

    user: Mapped[User] = relationship()


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship()


class LoginAttempt(Base):
    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_email_at", "email", "attempted_at"),
        Index("ix_login_attempts_ip_at", "source_ip", "attempted_at"),
        Index("ix_login_attempts_email_ip_at", "email", "source_ip", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    source_ip: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Recorded as failed before the password is checked (so that parallel attempts count), and
    # marked succeeded after.
    succeeded: Mapped[bool] = mapped_column(Boolean)
    # The known device it came from (sha256 of its cookie), or "".
    device: Mapped[str] = mapped_column(String(64), default="", server_default="")


class KnownDevice(Base):
    """A browser someone has signed in from before (a long-lived random cookie, stored as its
    sha256): failures from other devices and addresses do not lock them out of it."""

    __tablename__ = "known_devices"

    device: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AnonymousRefusal(Base):
    """Anonymous requests refused (no valid credentials), counted per source address and minute
    (`access.anonymous`); the first of each is in the audit trail."""

    __tablename__ = "anonymous_refusals"

    source_ip: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
    last_path: Mapped[str] = mapped_column(String(200), default="")


class AuditEntry(Base):
    """Who did what to which record, when, from where, and how it ended. Append-only:
    database triggers refuse UPDATE, DELETE, REPLACE and TRUNCATE (migrations 0001 and 0010),
    on PostgreSQL the application role may only INSERT and SELECT (`tandem init --owner-role`),
    and every entry is sealed into a hash chain (tandem.access.audit_chain, `tandem audit verify`)."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_patient_at", "patient_id", "recorded_at"),
        Index("ix_audit_recorded_at", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(20), default="")
    action: Mapped[str] = mapped_column(String(1))  # FHIR AuditEvent.action: C R U D E
    operation: Mapped[str] = mapped_column(String(40))  # read, search, create, update, login, ...
    resource_type: Mapped[str] = mapped_column(String(60), default="")
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    patient_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    outcome: Mapped[str] = mapped_column(String(2))  # FHIR: 0 success, 4 minor failure, 8 serious
    outcome_detail: Mapped[str] = mapped_column(Text, default="")
    source_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    channel: Mapped[str] = mapped_column(String(10))  # web | api | cli | job
    query: Mapped[str] = mapped_column(Text, default="")

    # The patients a list view or search showed (inserted with the entry, never changed).
    shown_patients: Mapped[list[AuditEntryPatient]] = relationship(
        cascade="save-update", lazy="raise_on_sql", passive_deletes="all"
    )


class AuditEntryPatient(Base):
    """A patient an audited list view or search showed, so "who saw patient X" is answered
    from an index. Append-only like audit_entries (triggers, migration 0009)."""

    __tablename__ = "audit_entry_patients"
    __table_args__ = (Index("ix_audit_entry_patients_patient", "patient_id", "audit_entry_id"),)

    audit_entry_id: Mapped[int] = mapped_column(
        ForeignKey("audit_entries.id", ondelete="RESTRICT"), primary_key=True
    )
    patient_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class AuditChainLink(Base):
    """One sealed audit entry's place in the hash chain: sha256 of the previous link's hash and
    the entry's content (with the patients it showed). Written by the sealer
    (tandem.access.audit_chain), never changed: append-only like the trail (migration 0010)."""

    __tablename__ = "audit_chain"

    entry_id: Mapped[int] = mapped_column(
        ForeignKey("audit_entries.id", ondelete="RESTRICT"), primary_key=True, autoincrement=False
    )
    chain_hash: Mapped[str] = mapped_column(String(64))
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ScheduledJob(Base):
    """One scheduled job. A process claims a run atomically with
    UPDATE ... WHERE name = :name AND next_run_at <= :now, so a job runs once across processes."""

    __tablename__ = "scheduled_jobs"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[str] = mapped_column(String(200), default="", server_default="")
    claimed_by: Mapped[str] = mapped_column(String(120), default="", server_default="")


# --- SMART on FHIR: registered apps, authorization codes, tokens (tandem.access.smart) ---------


class SmartClient(Base):
    """An app registered by an administrator of its program: a SMART app that people launch
    (public, or confidential with a secret) or a backend service (a signed JWT, system/ scopes,
    acting as `role` in its program)."""

    __tablename__ = "smart_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # public | confidential | backend
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    # One redirect URI a line (apps); none for a backend service.
    redirect_uris: Mapped[str] = mapped_column(Text, default="")
    # sha256 of the client secret (confidential apps); the secret is shown once.
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The public keys (a JWKS, JSON) a backend service signs its assertions with, or the https
    # address it publishes them at (fetched, cached, fetched again for a key id not yet seen).
    jwks: Mapped[str | None] = mapped_column(Text, nullable=True)
    jwks_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Apps people launch from a patient's chart (EHR launch): where Tandem sends the browser with
    # `iss` and `launch`. None: the app is launched on its own only.
    launch_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Backend services: the role they act as, and the most they may ask for (system/ scopes).
    role: Mapped[str] = mapped_column(String(20), default="")
    scopes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    program: Mapped[Program] = relationship()

    @property
    def redirect_uri_list(self) -> list[str]:
        return [line for line in self.redirect_uris.splitlines() if line]


class SmartCode(Base):
    """An authorization code: single use, short-lived, bound to its app, redirect URI and PKCE
    challenge. Stored as its sha256."""

    __tablename__ = "smart_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(36), index=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("smart_clients.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    patient_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The app's OpenID Connect nonce, repeated in the id_token.
    nonce: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SmartToken(Base):
    """An access or refresh token issued to an app, stored as its sha256. `grant_id` ties the
    tokens of one authorization together: revoking one revokes them all."""

    __tablename__ = "smart_tokens"
    __table_args__ = (Index("ix_smart_tokens_user", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # access | refresh
    grant_id: Mapped[str] = mapped_column(String(36), index=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("smart_clients.id", ondelete="CASCADE"))
    # The person it acts for; None for a backend service.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    )
    # The patient in context (a patient's own record, or the one chosen at launch).
    patient_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    scopes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    client: Mapped[SmartClient] = relationship()
    user: Mapped[User | None] = relationship()


class SmartAssertion(Base):
    """A backend service's client assertion (its `jti`), kept until it expires so that it is
    accepted once only."""

    __tablename__ = "smart_assertions"

    client_pk: Mapped[int] = mapped_column(
        ForeignKey("smart_clients.id", ondelete="CASCADE"), primary_key=True
    )
    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SmartLaunch(Base):
    """An EHR launch: a member of staff opened an app from a patient's chart. Its `launch` value
    (stored as its sha256) is redeemed once, by that person's authorization request for that
    app, within minutes; the app then has that patient in context."""

    __tablename__ = "smart_launches"

    launch_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("smart_clients.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    patient_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SmartSigningKey(Base):
    """A key Tandem signs id_tokens with (OpenID Connect, RS256), made on first use and replaced
    after `smart.SIGNING_KEY_DAYS`; its public half is served at /oauth/jwks until the last
    id_token it signed has expired. The private half is sealed (AES-256-GCM) with a secret kept
    outside the database (`tandem.access.keystore`)."""

    __tablename__ = "smart_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The sealed private key ("sealed:v1:..."); a plain JWK (JSON) from before sealing is
    # sealed at next use.
    private_jwk: Mapped[str] = mapped_column(Text)
    # The public half, published without opening the private one.
    public_jwk: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
