"""Fixtures for the medication adapters: a frozen clock and an `Access` for seeding records."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.audit import Origin
from tandem.access.credentials import actor_for
from tandem.access.guard import Access
from tandem.storage.models import User

NY = ZoneInfo("America/New_York")
# The medication pages and API read the clock through `utcnow` in their modules; tests freeze it
# at a winter evening in New York (program alpha's zone), so doses of yesterday and today are due.
NOW = datetime(2026, 3, 4, 21, 0, tzinfo=NY)
CLOCKED = tuple(
    f"tandem.medications.{name}"
    for name in (
        "pages",
        "routes",
        "facts",
        "plans",
        "dose_calendar",
        "doses",
        "side_effects",
        "missed_doses",
    )
)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> datetime:
    for module in CLOCKED:
        monkeypatch.setattr(f"{module}.utcnow", lambda: NOW.astimezone(UTC))
    return NOW


def access_for(db: Session, sessions: sessionmaker[Session], email: str) -> Access:
    user = db.scalar(select(User).where(User.email == email))
    assert user is not None
    return Access(actor_for(user), Origin(channel="cli"), db, sessions)
