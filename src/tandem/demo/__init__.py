"""`tandem demo`: a synthetic treatment program, deterministic for a seed.

Every program and patient it makes is flagged synthetic. Later domains add their own parts
(assessments, medications, check-ins...) with the demo steps listed in their DOMAIN.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tandem.access import accounts
from tandem.demo.names import FAMILY, GIVEN_FEMALE, GIVEN_MALE
from tandem.patients.episodes import episode_changed
from tandem.storage.db import utcnow
from tandem.storage.models import Episode, Patient, PatientIdentifier, Program, Unit, User

DEMO_PROGRAM = "riverside"
OTHER_PROGRAM = "harbor"
DEMO_DOMAIN = "demo.tandem.test"


@dataclass
class DemoLogin:
    email: str
    password: str
    role: str


@dataclass
class DemoWorld:
    """What the platform step made, for the domain steps that follow."""

    rng: random.Random
    now: datetime
    program: Program
    other_program: Program
    units: dict[str, Unit]
    patients: list[Patient] = field(default_factory=list)
    users: dict[str, User] = field(default_factory=dict)


DemoStep = Callable[[Session, DemoWorld], None]  # each domain lists its steps in its DOMAIN


def logins_for(seed: int) -> list[DemoLogin]:
    roles = [
        ("admin", "admin"),
        ("prescriber", "prescriber"),
        ("nurse", "nurse"),
        ("counselor", "counselor"),
        ("researcher", "researcher"),
        ("patient", "patient"),
        ("harbor.nurse", "nurse"),
    ]
    return [
        DemoLogin(f"{name}@{DEMO_DOMAIN}", f"tandem-{name.replace('.', '-')}-{seed}", role)
        for name, role in roles
    ]


def already_loaded(db: Session) -> bool:
    return db.scalar(select(Program.id).where(Program.code == DEMO_PROGRAM)) is not None


def _synthetic_patient(rng: random.Random, program: Program, number: int, today: date) -> Patient:
    female = rng.random() < 0.42
    given = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
    middle = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE) if rng.random() < 0.3 else None
    family = rng.choice(FAMILY)
    age_days = rng.randint(19 * 365, 72 * 365)
    given_text = f"{given} {middle}" if middle else given
    patient = Patient(
        program_id=program.id,
        family=family,
        given=given_text,
        family_lower=family.lower(),
        given_lower=given_text.lower(),
        gender="female" if female else "male",
        birth_date=today - timedelta(days=age_days),
        phone=f"555-01{rng.randint(0, 99):02d}",  # 555-0100..0199 is reserved for fiction
        synthetic=True,
        version_id=1,
    )
    patient.identifiers.append(
        PatientIdentifier(
            system=program.mrn_system, value=f"{program.code[:3].upper()}-{number:08d}"
        )
    )
    return patient


def _episode(
    rng: random.Random, patient: Patient, detox: Unit | None, outpatient: Unit, now: datetime
) -> Episode:
    roll = rng.random()
    if roll < 0.35 and detox is not None:
        admitted = now - timedelta(hours=rng.randint(2, 96))
        return Episode(
            patient=patient,
            program_id=patient.program_id,
            unit_id=detox.id,
            phase="detox",
            admitted_at=admitted,
            phase_started_at=admitted,
        )
    if roll < 0.75:
        admitted = now - timedelta(days=rng.randint(6, 60))
        return Episode(
            patient=patient,
            program_id=patient.program_id,
            unit_id=outpatient.id,
            phase="rehab",
            admitted_at=admitted,
            phase_started_at=admitted + timedelta(days=5),
        )
    if roll < 0.9:
        admitted = now - timedelta(days=rng.randint(60, 200))
        return Episode(
            patient=patient,
            program_id=patient.program_id,
            unit_id=outpatient.id,
            phase="aftercare",
            admitted_at=admitted,
            phase_started_at=admitted + timedelta(days=45),
        )
    admitted = now - timedelta(days=rng.randint(30, 300))
    return Episode(
        patient=patient,
        program_id=patient.program_id,
        unit_id=outpatient.id,
        phase="rehab",
        admitted_at=admitted,
        phase_started_at=admitted + timedelta(days=5),
        discharged_at=admitted + timedelta(days=rng.randint(10, 25)),
        discharge_reason=rng.choice(["completed", "left_against_advice", "lost_to_follow_up"]),
    )


def build_platform(
    db: Session,
    patients: int,
    seed: int,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> DemoWorld:
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    program = accounts.create_program(
        db,
        DEMO_PROGRAM,
        "Riverside Recovery (synthetic)",
        "Synthetic demo site",
        "America/New_York",
        synthetic=True,
    )
    units = {
        "detox": accounts.add_unit(db, program, "detox", "Detox unit", "detox"),
        "outpatient": accounts.add_unit(
            db, program, "outpatient", "Outpatient rehab", "outpatient"
        ),
        "counseling": accounts.add_unit(db, program, "counseling", "Counseling team", "counseling"),
    }
    other = accounts.create_program(
        db,
        OTHER_PROGRAM,
        "Harbor Outpatient (synthetic)",
        "Synthetic demo site",
        "America/Chicago",
        synthetic=True,
    )
    other_outpatient = accounts.add_unit(db, other, "outpatient", "Harbor outpatient", "outpatient")
    world = DemoWorld(rng, now, program, other, units)
    today = now.date()
    for number in range(1, patients + 1):
        home = program if number % 10 else other
        patient = _synthetic_patient(rng, home, number, today)
        patient.last_updated = now
        db.add(patient)
        world.patients.append(patient)
        if progress and number % 50 == 0:
            db.flush()
            progress(50)
    db.flush()
    if progress:
        progress(patients % 50)
    episodes = []
    for patient in world.patients:
        if patient.program_id == program.id:
            episodes.append(_episode(rng, patient, units["detox"], units["outpatient"], now))
        else:
            episodes.append(_episode(rng, patient, None, other_outpatient, now))
    db.add_all(episodes)
    episode_changed(db, episodes)
    return world


def create_logins(db: Session, world: DemoWorld, seed: int) -> list[DemoLogin]:
    logins = logins_for(seed)
    first_patient = next(p for p in world.patients if p.program_id == world.program.id)
    for login in logins:
        programs = (
            [world.other_program.id] if login.email.startswith("harbor") else [world.program.id]
        )
        if login.role == "admin":
            programs = [world.program.id, world.other_program.id]
        name = login.email.split("@")[0].replace(".", " ").title()
        user = accounts.create_user(
            db,
            login.email,
            f"{name} (demo)",
            login.role,
            login.password,
            programs,
            first_patient.id if login.role == "patient" else None,
        )
        world.users[login.email.split("@")[0]] = user
    return logins


def reset_logins(db: Session, seed: int) -> list[DemoLogin]:
    logins = logins_for(seed)
    for login in logins:
        user = db.scalar(select(User).where(User.email == login.email))
        if user is not None:
            accounts.reset_password(db, user, login.password, utcnow())
            user.active = True
    return logins
