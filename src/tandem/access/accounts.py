"""People and places: programs with their units, users with roles and program memberships.

Used by the admin pages, `tandem init` and `tandem demo`; callers pass the actor for auditing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tandem.access.credentials import CredentialError, end_access, hash_password
from tandem.access.policy import Actor, Role, admin_reach, may_change_programs
from tandem.errors import InvalidInput
from tandem.storage.models import Membership, Patient, Program, Unit, User

UNIT_KINDS = {
    "detox": "Detox (withdrawal management)",
    "inpatient_rehab": "Inpatient rehab",
    "outpatient": "Outpatient",
    "counseling": "Counseling",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CODE = re.compile(r"^[a-z0-9][a-z0-9\-]{1,39}$")


def check_zone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            "time_zone", f"{zone!r} is not an IANA time zone such as America/New_York"
        ) from None
    return zone


def create_program(
    db: Session,
    code: str,
    name: str,
    site: str = "",
    time_zone: str = "UTC",
    synthetic: bool = False,
) -> Program:
    code = code.strip().lower()
    if not _CODE.match(code):
        raise InvalidInput("code", "use 2-40 lowercase letters, digits or hyphens")
    if not name.strip():
        raise InvalidInput("name", "a program needs a name")
    if db.scalar(select(Program.id).where(Program.code == code)) is not None:
        raise InvalidInput("code", f"a program with code {code!r} already exists")
    program = Program(
        code=code,
        name=name.strip(),
        site=site.strip(),
        time_zone=check_zone(time_zone),
        synthetic=synthetic,
    )
    db.add(program)
    db.flush()
    return program


def add_unit(db: Session, program: Program, code: str, name: str, kind: str) -> Unit:
    code = code.strip().lower()
    if not _CODE.match(code):
        raise InvalidInput("unit_code", "use 2-40 lowercase letters, digits or hyphens")
    if kind not in UNIT_KINDS:
        raise InvalidInput("kind", f"must be one of {', '.join(UNIT_KINDS)}")
    if not name.strip():
        raise InvalidInput("unit_name", "a unit needs a name")
    if (
        db.scalar(select(Unit.id).where(Unit.program_id == program.id, Unit.code == code))
        is not None
    ):
        raise InvalidInput("unit_code", f"the program already has a unit {code!r}")
    unit = Unit(program_id=program.id, code=code, name=name.strip(), kind=kind)
    db.add(unit)
    db.flush()
    return unit


def _check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidInput("role", f"must be one of {', '.join(r.value for r in Role)}") from None


def create_user(
    db: Session,
    email: str,
    display_name: str,
    role: str,
    password: str,
    program_ids: list[int],
    patient_id: str | None = None,
    *,
    actor: Actor | None = None,
) -> User:
    """A new account. `actor`: the administrator creating it, who may give it only programs
    they administer (None for the operator's CLI)."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidInput("email", "enter a valid e-mail address")
    if db.scalar(select(User.id).where(User.email == email)) is not None:
        raise InvalidInput("email", f"{email} already has an account")
    if not display_name.strip():
        raise InvalidInput("display_name", "enter the person's name")
    role_value = _check_role(role)
    try:
        password_hash = hash_password(password)
    except CredentialError as exc:
        raise InvalidInput("password", str(exc)) from None
    user = User(
        email=email,
        display_name=display_name.strip(),
        role=role_value.value,
        password_hash=password_hash,
        active=True,
    )
    _link_patient(db, user, role_value, patient_id)
    db.add(user)
    db.flush()
    set_memberships(db, user, program_ids)
    if actor is not None and not admin_reach(actor).covers(user.program_ids):
        raise InvalidInput(
            "programs", "choose at least one program, and only programs you administer"
        )
    return user


def _link_patient(db: Session, user: User, role: Role, patient_id: str | None) -> None:
    if role is Role.PATIENT:
        if not patient_id or db.get(Patient, patient_id) is None:
            raise InvalidInput(
                "patient", "a patient account must be linked to the patient's record"
            )
        taken = db.scalar(
            select(User.id).where(User.patient_id == patient_id, User.id != (user.id or -1))
        )
        if taken is not None:
            raise InvalidInput("patient", "that patient already has an account")
        user.patient_id = patient_id
    else:
        user.patient_id = None


def set_memberships(db: Session, user: User, program_ids: list[int]) -> None:
    known = set(db.scalars(select(Program.id).where(Program.id.in_(program_ids))))
    missing = set(program_ids) - known
    if missing:
        raise InvalidInput("programs", f"unknown program id {sorted(missing)[0]}")
    if user.patient_id is not None:
        patient = db.get(Patient, user.patient_id)
        known = {patient.program_id} if patient else set()
    user.memberships[:] = [m for m in user.memberships if m.program_id in known]
    have = {m.program_id for m in user.memberships}
    for program_id in sorted(known - have):
        user.memberships.append(Membership(user_id=user.id, program_id=program_id))
    db.flush()


def _program_names(db: Session, program_ids: Iterable[int]) -> str:
    ids = sorted(set(program_ids))
    names = {
        program_id: name
        for program_id, name in db.execute(
            select(Program.id, Program.name).where(Program.id.in_(ids))
        )
    }
    return ", ".join(names.get(i, str(i)) for i in ids)


def update_user(
    db: Session,
    user: User,
    display_name: str,
    role: str,
    active: bool,
    program_ids: list[int],
    patient_id: str | None,
    actor: Actor,
    now: datetime,
    keep_session: str | None = None,
) -> list[str]:
    """Change an account as `actor` (an administrator of the user's programs, the caller has
    checked): memberships change only in programs the actor administers. A change of role or
    programs, or deactivation, ends the user's sessions and tokens (but `keep_session`, the
    actor's own). Returns what changed, in words, for the audit trail."""
    role_value = _check_role(role)
    if user.id == actor.user_id and (not active or role_value is not Role.ADMIN):
        raise InvalidInput("role", "you cannot remove your own administrator access")
    if user.role == Role.ADMIN and (role_value is not Role.ADMIN or not active):
        admins = db.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == Role.ADMIN.value, User.active.is_(True))
        )
        if (admins or 0) <= 1:
            raise InvalidInput("role", "the last active administrator must stay an administrator")
    if not display_name.strip():
        raise InvalidInput("display_name", "enter the person's name")
    before_role, before_active, before_programs = user.role, user.active, user.program_ids
    changes = []
    if user.display_name != display_name.strip():
        changes.append("name changed")
    user.display_name = display_name.strip()
    user.role = role_value.value
    user.active = active
    _link_patient(db, user, role_value, patient_id)
    set_memberships(db, user, program_ids)
    after_programs = user.program_ids
    if not may_change_programs(actor, before_programs, after_programs):
        raise InvalidInput("programs", "choose only programs you administer")
    if before_role != user.role:
        changes.append(f"role {before_role} -> {user.role}")
        if user.system_admin and role_value is not Role.ADMIN:
            user.system_admin = False
            changes.append("system administrator revoked")
    if after_programs - before_programs:
        changes.append(f"programs added: {_program_names(db, after_programs - before_programs)}")
    if before_programs - after_programs:
        changes.append(f"programs removed: {_program_names(db, before_programs - after_programs)}")
    if before_active != active:
        changes.append("reactivated" if active else "deactivated")
    if before_role != user.role or before_programs != after_programs or not active:
        changes.append(_ended(db, user, now, keep_session))
    return changes


def _ended(
    db: Session, user: User, now: datetime, keep_session: str | None, forget_devices: bool = False
) -> str:
    sessions, tokens = end_access(db, user.id, now, keep_session, forget_devices)
    return f"sessions ended: {sessions}, tokens revoked: {tokens}"


def reset_password(
    db: Session, user: User, password: str, now: datetime, keep_session: str | None = None
) -> str:
    """A new password: every session (but `keep_session`) and token of the user ends, and the
    devices they signed in from are known no longer. Returns what happened, for the audit."""
    try:
        user.password_hash = hash_password(password)
    except CredentialError as exc:
        raise InvalidInput("password", str(exc)) from None
    return "password reset; " + _ended(db, user, now, keep_session, forget_devices=True)


def grant_system_admin(user: User, granted: bool) -> None:
    """Cross-program administration: only administrators hold it, only the CLI grants it."""
    if granted and user.role != Role.ADMIN:
        raise InvalidInput("user", f"{user.email} is not an administrator")
    user.system_admin = granted


def display_names(db: Session, user_ids: Iterable[int | None]) -> dict[int, str]:
    """The display names of these users (staff who recorded or gave something), by id."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    found = db.execute(select(User.id, User.display_name).where(User.id.in_(ids)))
    return {user_id: name for user_id, name in found}
