"""A scheduler claimer in a process of its own, as each `tandem serve` worker is.

Kept apart from the test module so that a child process imports only the scheduler and the
database layer, not the web framework the tests import.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from tandem import scheduler
from tandem.kit import Job
from tandem.storage.db import make_engine, make_sessionmaker


def claim_in_a_process(url: str, now: datetime, me: str, go: Any, results: Any) -> None:
    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        with sessions() as db:
            db.execute(select(1))  # connected before the start signal
        results.put(("ready", me))
        go.wait(60)
        job = Job("processes", timedelta(hours=1), _nothing)
        results.put(("ran", scheduler.run_due(sessions, [job], now, me)))
    finally:
        engine.dispose()


def _nothing(_sessions: object, _now: datetime) -> None:
    return None
