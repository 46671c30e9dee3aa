"""Set-up for the records tests (use days, drug screens, care plans, sessions): written through
the services, as staff of program A."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry
from tests.conftest import World
from tests.withdrawal.helpers import access_for

T = TypeVar("T")
FHIR = {"Content-Type": "application/fhir+json"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **FHIR}


def as_staff(
    sessions: sessionmaker[Session], world: World, do: Callable[..., T], role: str = "nurse"
) -> T:
    with session_scope(sessions) as db:
        result = do(access_for(sessions, db, world, role))
        db.flush()
        if hasattr(result, "id"):
            db.refresh(result)
        return result


def count(sessions: sessionmaker[Session], model: Any) -> int:
    with sessions() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def refusals(sessions: sessionmaker[Session], resource_type: str) -> int:
    """Refusals recorded in the audit trail for this resource type."""
    with sessions() as db:
        return int(
            db.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.resource_type == resource_type, AuditEntry.outcome == "4")
            )
            or 0
        )


def yesterday_in(world: World) -> date:
    from tandem.clock import program_today

    return program_today("America/New_York", utcnow()) - timedelta(days=1)


def soon() -> datetime:
    return utcnow() + timedelta(days=2)
