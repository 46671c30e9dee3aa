"""Records the portal tests start from, written straight to the tables (or through the
medication domain's services): a dose plan, a care plan, a booked session, and a frozen clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.audit import Origin
from tandem.access.credentials import actor_for
from tandem.access.guard import Access
from tandem.medications.plans import create_titration
from tandem.recovery.storage import CarePlanRow, TherapySessionRow
from tandem.storage.db import session_scope
from tandem.storage.models import User
from tests.conftest import World

NY = ZoneInfo("America/New_York")
# A winter evening in New York (program alpha's zone): today's three doses are due.
NOW = datetime(2026, 3, 4, 21, 0, tzinfo=NY)
CLOCKED = (
    "tandem.recovery.portal_pages",
    *(
        f"tandem.medications.{name}"
        for name in ("pages", "plans", "dose_calendar", "doses", "side_effects", "missed_doses")
    ),
)


def freeze(monkeypatch: pytest.MonkeyPatch, now: datetime = NOW) -> datetime:
    for module in CLOCKED:
        monkeypatch.setattr(f"{module}.utcnow", lambda: now.astimezone(UTC))
    return now


def access_for(db: Session, sessions: sessionmaker[Session], email: str) -> Access:
    user = db.scalar(select(User).where(User.email == email))
    assert user is not None
    return Access(actor_for(user), Origin(channel="cli"), db, sessions)


def give_plan(sessions: sessionmaker[Session], world: World, patient_id: str) -> int:
    """Baclofen 5 mg three times a day, prescribed yesterday morning (yesterday's 08:00 dose
    predates it), so yesterday's midday and evening doses and today's three are due by NOW."""
    written = datetime(2026, 3, 3, 9, 0, tzinfo=NY)
    with session_scope(sessions) as db:
        plan = create_titration(
            access_for(db, sessions, world.email("prescriber")),
            patient_id,
            "baclofen",
            start="5mg-tid",
            step_mg=5,
            every_days=7,
            target="10mg-tid",
            start_date=date(2026, 3, 3),
            now=written,
        )
        return plan.id


def give_care_plan(
    sessions: sessionmaker[Session], patient_id: str, program_id: int, substances: list[str]
) -> None:
    with session_scope(sessions) as db:
        db.add(
            CarePlanRow(
                patient_id=patient_id,
                program_id=program_id,
                substances=substances,
                started_on=date(2026, 2, 1),
                retention="active",
            )
        )


def book_session(
    sessions: sessionmaker[Session],
    patient_id: str,
    program_id: int,
    starts_at: datetime,
    service: str = "group_therapy",
) -> int:
    with session_scope(sessions) as db:
        row = TherapySessionRow(
            patient_id=patient_id,
            program_id=program_id,
            service=service,
            starts_at=starts_at,
            minutes=60,
            status="booked",
        )
        db.add(row)
        db.flush()
        return row.id


def count(sessions: sessionmaker[Session], model: type, **where: object) -> int:
    with sessions() as db:
        statement = select(func.count()).select_from(model)
        for name, value in where.items():
            statement = statement.where(getattr(model, name) == value)
        return int(db.scalar(statement) or 0)


def days_ago(days: int) -> datetime:
    return NOW - timedelta(days=days)
