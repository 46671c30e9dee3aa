"""The scheduler runs a due job once across every claimer, on SQLite and PostgreSQL.

Claimers are threads sharing an engine, threads with engines (pools) of their own, and separate
processes, as `tandem serve --workers N` runs one scheduler per process.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Column, Engine, MetaData, String, Table, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from tandem import domains, scheduler
from tandem.kit import Job
from tandem.settings import Settings
from tandem.storage.db import UTCDateTime, make_engine, make_sessionmaker
from tests.scheduler_claimer import claim_in_a_process

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def jobs_table(engine: Engine) -> Iterator[None]:
    """`scheduled_jobs` (migration 0009; created here on a database that predates it), emptied."""
    if not inspect(engine).has_table("scheduled_jobs"):
        Table(
            "scheduled_jobs",
            MetaData(),
            Column("name", String(100), primary_key=True),
            Column("next_run_at", UTCDateTime(), nullable=False),
            Column("last_started_at", UTCDateTime()),
            Column("last_finished_at", UTCDateTime()),
            Column("last_status", String(200), nullable=False, default=""),
            Column("claimed_by", String(200)),
        ).create(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM scheduled_jobs"))
    yield


class Counter:
    """A job body that counts its runs (thread-safe) and can be made to fail or to wait."""

    def __init__(self, fail: bool = False, hold: threading.Event | None = None) -> None:
        self.runs: list[datetime] = []
        self.fail = fail
        self.hold = hold
        self.started = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, sessions: sessionmaker[Session], now: datetime) -> None:
        with self._lock:
            self.runs.append(now)
        self.started.set()
        if self.hold is not None and len(self.runs) == 1:  # only the first run is slow
            self.hold.wait(10)
        with sessions() as db:  # a session of the job's own
            db.execute(select(1))
        if self.fail:
            raise RuntimeError("the sweep fell over")


def row(sessions: sessionmaker[Session], name: str) -> dict[str, object]:
    with sessions() as db:
        found = db.execute(
            select(scheduler.SCHEDULED_JOBS).where(scheduler.SCHEDULED_JOBS.c.name == name)
        ).one()
    return dict(found._mapping)


def test_a_due_job_runs_once(sessions: sessionmaker[Session], jobs_table: None) -> None:
    body = Counter()
    job = Job("sweep", timedelta(hours=1), body)
    assert scheduler.run_due(sessions, [job], NOW, "a") == ["sweep"]  # a new job is due at once
    assert scheduler.run_due(sessions, [job], NOW, "a") == []
    assert scheduler.run_due(sessions, [job], NOW + timedelta(minutes=59), "b") == []
    assert body.runs == [NOW]
    stored = row(sessions, "sweep")
    assert stored["next_run_at"] == NOW + timedelta(hours=1)
    assert stored["last_started_at"] == NOW
    assert stored["claimed_by"] == "a" and stored["last_status"] == "ok"
    assert stored["last_finished_at"] >= NOW  # type: ignore[operator]

    assert scheduler.run_due(sessions, [job], NOW + timedelta(hours=1), "b") == ["sweep"]
    assert body.runs == [NOW, NOW + timedelta(hours=1)]
    assert row(sessions, "sweep")["claimed_by"] == "b"


def test_not_due_is_not_run(sessions: sessionmaker[Session], jobs_table: None) -> None:
    body = Counter()
    job = Job("later", timedelta(minutes=5), body)
    with sessions() as db:
        db.execute(
            scheduler.SCHEDULED_JOBS.insert().values(
                name="later", next_run_at=NOW + timedelta(seconds=1), last_status=""
            )
        )
        db.commit()
    assert scheduler.run_due(sessions, [job], NOW, "a") == []
    assert body.runs == []
    assert scheduler.run_due(sessions, [job], NOW + timedelta(seconds=1), "a") == ["later"]


def test_jobs_are_independent(sessions: sessionmaker[Session], jobs_table: None) -> None:
    hourly, daily = Counter(), Counter()
    jobs = [Job("hourly", timedelta(hours=1), hourly), Job("daily", timedelta(days=1), daily)]
    assert scheduler.run_due(sessions, jobs, NOW, "a") == ["hourly", "daily"]
    assert scheduler.run_due(sessions, jobs, NOW + timedelta(hours=1), "a") == ["hourly"]
    assert len(hourly.runs) == 2 and len(daily.runs) == 1


def test_a_failing_job_records_its_error_and_runs_again(
    sessions: sessionmaker[Session], jobs_table: None, caplog: pytest.LogCaptureFixture
) -> None:
    body = Counter(fail=True)
    job = Job("fragile", timedelta(minutes=10), body)
    assert scheduler.run_due(sessions, [job], NOW, "a") == ["fragile"]
    stored = row(sessions, "fragile")
    assert stored["last_status"] == "error: RuntimeError: the sweep fell over"
    assert stored["last_finished_at"] is not None
    assert "scheduled job fragile failed" in caplog.text
    body.fail = False
    assert scheduler.run_due(sessions, [job], NOW + timedelta(minutes=10), "a") == ["fragile"]
    assert row(sessions, "fragile")["last_status"] == "ok"
    assert len(body.runs) == 2


def _race(claimers: list[sessionmaker[Session]], job: Job, now: datetime) -> list[list[str]]:
    """Every claimer calls run_due at the same moment, each in a thread of its own."""
    gate = threading.Barrier(len(claimers))
    results: list[list[str]] = [[] for _ in claimers]
    errors: list[BaseException] = []

    def claim(index: int) -> None:
        try:
            gate.wait(10)
            results[index] = scheduler.run_due(claimers[index], [job], now, f"claimer-{index}")
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(claimers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def test_concurrent_claimers_on_one_engine_run_it_once(
    sessions: sessionmaker[Session], jobs_table: None
) -> None:
    body = Counter()
    job = Job("race", timedelta(hours=1), body)
    for round_, now in enumerate((NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2))):
        results = _race([sessions] * 6, job, now)
        assert sum(len(r) for r in results) == 1, results
        assert len(body.runs) == round_ + 1
    assert body.runs == [NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2)]


def test_concurrent_claimers_with_engines_of_their_own_run_it_once(
    database_url: str, sessions: sessionmaker[Session], jobs_table: None
) -> None:
    engines = [make_engine(database_url) for _ in range(4)]
    try:
        body = Counter()
        job = Job("race", timedelta(minutes=30), body)
        for now in (NOW, NOW + timedelta(minutes=30)):
            results = _race([make_sessionmaker(e) for e in engines], job, now)
            assert sum(len(r) for r in results) == 1, results
        assert body.runs == [NOW, NOW + timedelta(minutes=30)]
        winner = row(sessions, "race")["claimed_by"]
        assert isinstance(winner, str) and winner.startswith("claimer-")
    finally:
        for engine in engines:
            engine.dispose()


def test_claimers_in_separate_processes_run_it_once(
    database_url: str, jobs_table: None, sessions: sessionmaker[Session]
) -> None:
    # Fresh processes (not forks of this one), forked from one server that has imported the
    # scheduler once: three cold starts would cost seconds each.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.scheduler_claimer"])
    go, results = context.Event(), context.Queue()
    processes = [
        context.Process(
            target=claim_in_a_process, args=(database_url, NOW, f"process-{i}", go, results)
        )
        for i in range(3)
    ]
    for process in processes:
        process.start()
    try:
        assert sorted(results.get(timeout=120) for _ in processes) == [
            ("ready", f"process-{i}") for i in range(3)
        ]
        go.set()
        ran = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(60)
    assert sorted(len(names) for _, names in ran) == [0, 0, 1], ran
    assert row(sessions, "processes")["claimed_by"] in {f"process-{i}" for i in range(3)}


def test_a_run_under_way_is_not_overlapped(
    sessions: sessionmaker[Session], jobs_table: None
) -> None:
    """A run slower than its period: the next is not claimed until it finishes (or its lease
    ends, for a process that died mid-run)."""
    hold = threading.Event()
    body = Counter(hold=hold)
    job = Job("slow", timedelta(minutes=1), body)
    first = threading.Thread(target=scheduler.run_due, args=(sessions, [job], NOW, "a"))
    first.start()
    assert body.started.wait(10)
    try:
        assert scheduler.run_due(sessions, [job], NOW + timedelta(minutes=1), "b") == []
        died = NOW + scheduler.MIN_LEASE + timedelta(seconds=1)
        assert scheduler.run_due(sessions, [job], died, "b") == ["slow"]
    finally:
        hold.set()
        first.join(10)
    # The first run's late finish does not overwrite the later claimer's record.
    assert row(sessions, "slow")["claimed_by"] == "b"
    assert scheduler.run_due(sessions, [job], died + timedelta(minutes=1), "a") == ["slow"]


def test_the_thread_runs_jobs_and_survives_errors(
    sessions: sessionmaker[Session], jobs_table: None
) -> None:
    good, bad = Counter(), Counter(fail=True)
    runner = scheduler.Scheduler(
        sessions,
        [Job("bad", timedelta(hours=1), bad), Job("good", timedelta(hours=1), good)],
        poll=0.05,
        me="thread",
    )
    runner.start()
    try:
        assert good.started.wait(10) and bad.started.wait(10)
    finally:
        runner.stop()
    assert not runner.running
    assert len(good.runs) == 1 and len(bad.runs) == 1  # hourly: once, whatever the ticks
    assert row(sessions, "bad")["last_status"].startswith("error: RuntimeError")  # type: ignore[union-attr]


def test_no_jobs_no_thread(sessions: sessionmaker[Session]) -> None:
    runner = scheduler.Scheduler(sessions, [])
    runner.start()
    assert not runner.running
    runner.stop()


def test_the_served_app_runs_the_scheduler_in_its_lifespan(
    database_url: str,
    sessions: sessionmaker[Session],
    jobs_table: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tandem.web.app import create_app

    body = Counter()
    monkeypatch.setattr(
        domains, "scheduled_jobs", lambda: [Job("lifespan", timedelta(hours=1), body)]
    )
    app = create_app(Settings(database_url=database_url), run_jobs=True)
    with TestClient(app) as client:
        assert body.started.wait(10)
        assert client.get("/healthz").status_code == 200
        running = app.state.scheduler
        assert running.running
    assert not running.running  # stopped with the app
    assert row(sessions, "lifespan")["last_status"] == "ok"


def test_tests_apps_run_no_jobs(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tandem.web.app import create_app

    body = Counter()
    monkeypatch.setattr(domains, "scheduled_jobs", lambda: [Job("never", timedelta(hours=1), body)])
    app = create_app(Settings(database_url=database_url))
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
    assert body.runs == [] and getattr(app.state, "scheduler", None) is None
