"""Scheduled jobs, run once across every server process.

`tandem serve --workers N` runs N processes, and each starts this scheduler: a background thread,
started and stopped by the app's lifespan (`create_app(run_jobs=True)`), with the domains' jobs
(`tandem.domains.scheduled_jobs()`). They agree through the `scheduled_jobs` table, one row a job:

    name (PK) | next_run_at | last_started_at | last_finished_at | last_status | claimed_by

A process claims a run with one conditional UPDATE and runs the job only if that UPDATE changed
the row; the database (a row lock on PostgreSQL, the single writer on SQLite) lets exactly one
claimer through, and the winner has already moved `next_run_at` on by `every`, so the others find
nothing due. A run still under way (started, not finished) is not claimed again until its lease
(`every`, at least `MIN_LEASE`) has passed: a slow run is not overlapped, and one whose process
died does not block the job for ever.

A job's errors are caught and written to `last_status`; the next run is due as usual. Nothing
here can stop the server: the thread logs what it cannot do and tries again at the next tick.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, String, and_, column, or_, select, table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from tandem.kit import Job
from tandem.storage.db import UTCDateTime, utcnow

log = logging.getLogger("tandem.scheduler")

# Migration 0009's table (model tandem.storage.models.ScheduledJob) as a plain table clause: the
# scheduler's few statements need nothing of the ORM's.
SCHEDULED_JOBS = table(
    "scheduled_jobs",
    column("name", String()),
    column("next_run_at", UTCDateTime()),
    column("last_started_at", UTCDateTime()),
    column("last_finished_at", UTCDateTime()),
    column("last_status", String()),
    column("claimed_by", String()),
)

MIN_LEASE = timedelta(minutes=15)  # a run unfinished after this long is taken to have died
STATUS_LENGTH = 200  # last_status keeps the start of a long error message
CLAIMED_BY_LENGTH = 120
POLL_SECONDS = 15.0  # how often each process looks for due jobs
STALE_AFTER_PERIODS = 5  # a job not finished for this many periods is shown as not running


def process_name() -> str:
    """Who claimed a run: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"[:CLAIMED_BY_LENGTH]


def run_due(
    sessions: sessionmaker[Session], jobs: Sequence[Job], now: datetime, me: str
) -> list[str]:
    """Run every job due at `now` that this process wins the claim for; their names, in order.

    Each step is a transaction of its own: read the schedule, add rows for new jobs (due at
    once), claim, run the job (with its own sessions), record how it ended.
    """
    if not jobs:
        return []
    due_at = _schedule(sessions)
    missing = [job.name for job in jobs if job.name not in due_at]
    if missing:
        _add(sessions, missing, now)
    ran = []
    for job in jobs:
        if due_at.get(job.name, now) > now:
            continue
        if not _claim(sessions, job, now, me):
            continue
        started = time.monotonic()
        status = _run(sessions, job, now)
        finished = now + timedelta(seconds=time.monotonic() - started)  # on `now`'s clock
        _finish(sessions, job.name, me, finished, status)
        ran.append(job.name)
    return ran


def _schedule(sessions: sessionmaker[Session]) -> dict[str, datetime]:
    t = SCHEDULED_JOBS.c
    with sessions() as db:
        return {name: at for name, at in db.execute(select(t.name, t.next_run_at))}


def _add(sessions: sessionmaker[Session], names: list[str], now: datetime) -> None:
    """Rows for jobs the table does not know yet; another process adding the same is fine."""
    with sessions() as db:
        insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
        db.execute(
            insert(SCHEDULED_JOBS).on_conflict_do_nothing(),
            [{"name": name, "next_run_at": now, "last_status": ""} for name in names],
        )
        db.commit()


def _claim(sessions: sessionmaker[Session], job: Job, now: datetime, me: str) -> bool:
    t = SCHEDULED_JOBS.c
    lease = max(job.every, MIN_LEASE)
    with sessions() as db:
        result = db.execute(
            update(SCHEDULED_JOBS)
            .where(
                t.name == job.name,
                t.next_run_at <= now,
                or_(
                    t.last_started_at.is_(None),
                    and_(
                        t.last_finished_at.is_not(None),
                        t.last_finished_at >= t.last_started_at,
                    ),
                    t.last_started_at < now - lease,
                ),
            )
            .values(next_run_at=now + job.every, last_started_at=now, claimed_by=me)
        )
        db.commit()
        return cast(CursorResult[Any], result).rowcount == 1


def _run(sessions: sessionmaker[Session], job: Job, now: datetime) -> str:
    try:
        job.run(sessions, now)
    except Exception as exc:  # a job's failure is recorded, never raised into the server
        log.exception("scheduled job %s failed", job.name)
        return f"error: {type(exc).__name__}: {exc}"[:STATUS_LENGTH]
    return "ok"


def _finish(
    sessions: sessionmaker[Session], name: str, me: str, finished: datetime, status: str
) -> None:
    t = SCHEDULED_JOBS.c
    with sessions() as db:
        db.execute(
            update(SCHEDULED_JOBS)
            .where(t.name == name, t.claimed_by == me)
            .values(last_finished_at=finished, last_status=status)
        )
        db.commit()


@dataclass(frozen=True)
class JobRun:
    """What the schedule says of one job's last run, as a page shows it."""

    name: str
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_status: str

    @property
    def ok(self) -> bool:
        return self.last_status == "ok"

    def stale(self, every: timedelta, now: datetime) -> bool:
        """Not finished within `STALE_AFTER_PERIODS` periods (or never run): nothing runs it."""
        if self.last_finished_at is None:
            return True
        return now - self.last_finished_at > every * STALE_AFTER_PERIODS


def last_run(db: Session, name: str) -> JobRun:
    """The job's last run from the schedule (never run: every time empty)."""
    t = SCHEDULED_JOBS.c
    row = db.execute(
        select(t.last_started_at, t.last_finished_at, t.last_status).where(t.name == name)
    ).first()
    if row is None:
        return JobRun(name, None, None, "")
    return JobRun(name, row.last_started_at, row.last_finished_at, row.last_status or "")


class Scheduler:
    """One process's scheduler thread: every `poll` seconds, `run_due` at the current time."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        jobs: Sequence[Job],
        *,
        poll: float = POLL_SECONDS,
        me: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.jobs = list(jobs)
        self.poll = poll
        self.me = me or process_name()
        self.clock = clock
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tandem-scheduler", daemon=True)

    def start(self) -> None:
        if self.jobs:  # no jobs, no thread
            self._thread.start()

    def run(self) -> None:
        """Run the loop in the calling thread until `request_stop` (`tandem worker`)."""
        self._loop()

    def request_stop(self) -> None:
        """Ask the loop to end after the run under way (safe from a signal handler)."""
        self._stopping.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop and wait for it (a job under way is let finish, up to `timeout`)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                run_due(self.sessions, self.jobs, self.clock(), self.me)
            except Exception:  # the database is away, the table not migrated yet: next tick
                log.exception("scheduler tick failed")
            self._stopping.wait(self.poll)


def domain_jobs() -> list[Job]:
    """The jobs the domains declare (imported here, when the scheduler starts)."""
    from tandem.domains import scheduled_jobs

    return scheduled_jobs()


def start(
    app_state: Any, jobs: Sequence[Job] | None = None, poll: float = POLL_SECONDS
) -> Scheduler:
    """Start this process's scheduler on the app's sessions; kept as `app_state.scheduler`."""
    scheduler = Scheduler(app_state.sessions, domain_jobs() if jobs is None else jobs, poll=poll)
    scheduler.start()
    app_state.scheduler = scheduler
    return scheduler


def stop(app_state: Any) -> None:
    """Stop the scheduler `start` put on `app_state` (nothing if none)."""
    scheduler: Scheduler | None = getattr(app_state, "scheduler", None)
    if scheduler is not None:
        scheduler.stop()
