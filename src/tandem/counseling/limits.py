"""The public form's rate limit: posts per client address over the last hour, counted in the
database (so the limit holds across server processes), in a short transaction of its own before
the post is read further (so a refused or failed post still counts). Counts are kept per clock
hour; the last hour is this hour's count plus the share of the previous hour's still inside it
(a sliding window, so a burst cannot pass twice the limit across the turn of an hour)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from tandem.counseling.storage import AskCountRow
from tandem.storage.db import session_scope

# A person asks one or two questions; a few more from one address (a shared connection, a
# family) are allowed; a flood is not.
PER_HOUR = 5


@dataclass(frozen=True)
class Count:
    count: int
    limit: int
    retry_after_minutes: int

    @property
    def over(self) -> bool:
        return self.count > self.limit


def count_post(
    factory: sessionmaker[Session], source_ip: str, now: datetime, limit: int = PER_HOUR
) -> Count:
    """Count one post of the form from `source_ip`; `over` once the hour's limit is passed."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    with session_scope(factory) as db:
        insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
        row = insert(AskCountRow).values(source_ip=source_ip[:64], hour=hour, count=1)
        counted = row.on_conflict_do_update(
            index_elements=[AskCountRow.source_ip, AskCountRow.hour],
            set_={"count": AskCountRow.count + 1},
        ).returning(AskCountRow.count)
        count = int(db.execute(counted).scalar_one())
        previous = db.scalar(
            select(AskCountRow.count).where(
                AskCountRow.source_ip == source_ip[:64],
                AskCountRow.hour == hour - timedelta(hours=1),
            )
        )
    still_inside = 1 - (now - hour) / timedelta(hours=1)
    in_last_hour = count + math.ceil((previous or 0) * still_inside)
    left = hour + timedelta(hours=1) - now
    return Count(in_last_hour, limit, max(1, int(left.total_seconds() // 60) + 1))
