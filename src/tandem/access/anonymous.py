"""Requests refused for want of credentials (an API call without a valid token), counted per
source address and minute instead of one audit entry each: a flood of anonymous requests
cannot grow the audit trail. The first refusal of each address in a minute is audited (so the
trail shows it began); the counter holds how many followed. Failed sign-ins and refusals of
signed-in people are audited one by one as before (`access.credentials`, `Access.refused`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import audit
from tandem.storage.db import session_scope
from tandem.storage.models import AnonymousRefusal


def record_refusal(
    factory: sessionmaker[Session], origin: audit.Origin, detail: str, path: str, now: datetime
) -> int:
    """Count one anonymous refusal; returns how many this address has had this minute."""
    minute = now.replace(second=0, microsecond=0)
    with session_scope(factory) as db:
        dialect = db.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        values = {
            "source_ip": origin.source_ip[:64],
            "minute": minute,
            "count": 1,
            "last_path": path[:200],
        }
        new_row = insert(AnonymousRefusal).values(**values)
        counted = new_row.on_conflict_do_update(
            index_elements=[AnonymousRefusal.source_ip, AnonymousRefusal.minute],
            set_={"count": AnonymousRefusal.count + 1, "last_path": new_row.excluded.last_path},
        ).returning(AnonymousRefusal.count)
        count = int(db.execute(counted).scalar_one())
        if count == 1:
            audit.record(
                db,
                None,
                "authenticate",
                origin,
                outcome=audit.MINOR_FAILURE,
                detail=f"{detail} (later refusals from this address this minute are counted "
                "in anonymous_refusals)",
                resource_type=path[:60],
                now=now,
            )
    return count
