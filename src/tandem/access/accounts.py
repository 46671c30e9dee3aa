"""People and places: programs with their units, users with roles and program memberships.

Used by the admin pages, `tandem init` and `tandem demo`; callers pass the actor for auditing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tandem.access.credentials import CredentialError, hash_password
from tandem.access.policy import Role
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
) -> User:
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


def update_user(
    db: Session,
    user: User,
    display_name: str,
    role: str,
    active: bool,
    program_ids: list[int],
    patient_id: str | None,
    acting_user_id: int,
) -> User:
    role_value = _check_role(role)
    if user.id == acting_user_id and (not active or role_value is not Role.ADMIN):
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
    user.display_name = display_name.strip()
    user.role = role_value.value
    user.active = active
    _link_patient(db, user, role_value, patient_id)
    set_memberships(db, user, program_ids)
    return user


def reset_password(user: User, password: str) -> None:
    try:
        user.password_hash = hash_password(password)
    except CredentialError as exc:
        raise InvalidInput("password", str(exc)) from None


def display_names(db: Session, user_ids: Iterable[int | None]) -> dict[int, str]:
    """The display names of these users (staff who recorded or gave something), by id."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    found = db.execute(select(User.id, User.display_name).where(User.id.in_(ids)))
    return {user_id: name for user_id, name in found}
