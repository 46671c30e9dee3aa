"""Detox census and assessment save at ward-breaking size, beside the same census SQL run bare.

    .venv/bin/python bench/census.py            # 10,000 patients, 1,000,000 assessments, both engines
    .venv/bin/python bench/census.py --quick    # 500 patients, 20,000 assessments: a smoke run

For each engine: a freshly migrated database; one program with one detox unit holding every
patient in monitoring; the assessments (and, unless --no-observations, their Observation rows)
bulk-loaded with executemany (SQLite) or COPY (PostgreSQL), answer sets scored by the real
instrument engine; one monitoring row per patient computed by the real monitoring core. Then, in
the same run and on the same database:

  census        tandem.withdrawal.census.census_rows: the one census statement through the ORM
                session, every row built and sorted with the monitoring core's census key
  census (bare) the same compiled SQL through the bare driver (sqlite3 / psycopg), fetchall only
  save          tandem.withdrawal.assessments.save_assessment + commit: validate, score, store the
                response and its Observations, re-evaluate, rewrite the monitoring row, alerts
  as-needed dose  after a save whose score the protocol treats, its first suggestion recorded as
                given (tandem.withdrawal.doses.record_dose + commit), with the time spent in the
                dose guards (issue 9: a second dose for one assessment, the 24-hour maximum;
                the patient's last 24 hours of doses read, then the pure check) timed apart; and
                a second dose for the same assessment, which the guard refuses

It also counts the statements the census issues (it must be one, whatever the size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url

from tandem.access import accounts
from tandem.access.audit import Origin
from tandem.access.credentials import actor_for
from tandem.access.guard import Access
from tandem.clock import utcnow
from tandem.instruments.engine import get_instrument, score
from tandem.instruments.models import Instrument
from tandem.storage.db import make_engine, make_sessionmaker, session_scope
from tandem.storage.migrate import upgrade
from tandem.storage.models import User
from tandem.withdrawal import assessments as assessment_service
from tandem.withdrawal import census as census_queries
from tandem.withdrawal import doses as dose_service
from tandem.withdrawal import protocols
from tandem.withdrawal.demo import demo_protocol
from tandem.withdrawal.monitoring import ScoredAssessment, evaluate
from tandem.withdrawal.prn import DoseInput, DoseRefused, dose_range
from tandem.withdrawal.storage import MonitoringRow

DEFAULT_PG = os.environ.get(
    "TANDEM_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/tandem_bench_census"
)
ASSESSMENT_COLUMNS = (
    "id",
    "patient_id",
    "program_id",
    "episode_id",
    "instrument_id",
    "instrument_version",
    "total",
    "band_scheme_id",
    "band_id",
    "band_label",
    "item_values",
    "flags",
    "protocol_version_id",
    "protocol_version",
    "due_at",
    "interval_minutes",
    "assessed_at",
    "recorded_at",
    "recorded_by",
    "channel",
)
HISTORY_FOR_STATE = 40  # enough of each patient's series for the step-down and stop rules


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the data


@dataclass
class Answer:
    values: dict[str, int]
    total: int
    band_id: str | None
    band_label: str | None
    scheme_id: str | None
    flags: list[str]


def answer_pool(
    instrument: Instrument, protocol: Any, rng: random.Random, size: int = 4000
) -> list[Answer]:
    """Answer sets scored by the engine, mostly mild, some severe, so totals and bands are real."""
    scheme = protocol.instrument(instrument.id).band_scheme
    pool = []
    for _ in range(size):
        share = rng.choice((0.05, 0.1, 0.15, 0.2, 0.25, 0.35, 0.5))
        values = {
            i.id: min(
                i.allowed_values,
                key=lambda v, i=i: abs(v - share * i.max_value * rng.uniform(0, 2)),
            )
            for i in instrument.items
        }
        result = score(instrument, values, scheme.id if scheme else None)
        pool.append(
            Answer(
                dict(result.item_values),
                result.total,
                result.band.id if result.band else None,
                protocols.band_label(protocol, instrument.id, result.total, result.band),
                result.scheme_id,
                [f.id for f in result.flags],
            )
        )
    return pool


@dataclass
class World:
    url: str
    program_id: int
    unit_id: int
    nurse_id: int
    version_id: int
    patients: list[tuple[str, int, str]]  # (patient id, episode id, instrument id)
    load_seconds: float
    rows: int
    observations: int


def _prepare(url: str) -> tuple[int, int, int, int]:
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(make_sessionmaker(engine)) as db:
        program = accounts.create_program(
            db, "bench", "Bench Detox (synthetic)", time_zone="America/New_York", synthetic=True
        )
        unit = accounts.add_unit(db, program, "detox", "Bench detox unit", "detox")
        nurse = accounts.create_user(
            db, "nurse@bench.tandem.test", "Bench Nurse", "nurse", "bench-password-1", [program.id]
        )
        version = protocols.set_program_protocol(db, program.id, demo_protocol(), origin="program")
        assert version.version_id is not None
        ids = (program.id, unit.id, nurse.id, version.version_id)
    engine.dispose()
    return ids


def generate(
    n_patients: int,
    n_assessments: int,
    program_id: int,
    unit_id: int,
    nurse_id: int,
    version_id: int,
    now: datetime,
    seed: int,
    sink: Callable[[str, Sequence[str], Iterator[tuple[Any, ...]]], None],
) -> tuple[list[tuple[str, int, str]], int]:
    """Stream the rows of every table to `sink(table, columns, rows)`; returns the patients."""
    rng = random.Random(seed)
    protocol = demo_protocol()
    instruments = {"ciwa_ar": get_instrument("ciwa_ar"), "cows": get_instrument("cows")}
    pools = {k: answer_pool(v, protocol, rng) for k, v in instruments.items()}
    patients = []
    episode_rows, patient_rows, context_rows = [], [], []
    for n in range(n_patients):
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        instrument_id = "ciwa_ar" if rng.random() < 0.62 else "cows"
        patients.append((pid, n + 1, instrument_id))
        patient_rows.append(
            (pid, program_id, f"Bench{n:05d}", "Pat", f"bench{n:05d}", "pat", True, True, 1, now)
        )
        admitted = now - timedelta(days=9)
        episode_rows.append((n + 1, pid, program_id, unit_id, "detox", admitted, admitted))
        context_rows.append(
            (
                n + 1,
                pid,
                program_id,
                "alcohol" if instrument_id == "ciwa_ar" else "opioid",
                admitted - timedelta(hours=8),
                rng.random() < 0.06,
                rng.random() < 0.04,
                "",
                now,
            )
        )
    sink(
        "patients",
        (
            "id",
            "program_id",
            "family",
            "given",
            "family_lower",
            "given_lower",
            "active",
            "synthetic",
            "version_id",
            "last_updated",
        ),
        iter(patient_rows),
    )
    sink(
        "episodes",
        ("id", "patient_id", "program_id", "unit_id", "phase", "admitted_at", "phase_started_at"),
        iter(episode_rows),
    )
    sink(
        "withdrawal_contexts",
        (
            "episode_id",
            "patient_id",
            "program_id",
            "substance",
            "last_use_at",
            "history_withdrawal_seizures",
            "history_delirium_tremens",
            "note",
            "recorded_at",
        ),
        iter(context_rows),
    )

    per_patient = max(1, n_assessments // n_patients)
    version = protocol.version
    last: dict[int, list[tuple[int, Answer, datetime]]] = {}
    counts = {"assessments": 0}

    def assessments() -> Iterator[tuple[Any, ...]]:
        aid = 0
        for pid, episode_id, instrument_id in patients:
            pool = pools[instrument_id]
            inst = instruments[instrument_id]
            # The latest one 0-3 h ago, so some are overdue; the rest every ~2 h before it.
            at = now - timedelta(minutes=rng.randint(0, 180))
            times = [
                at - timedelta(minutes=120 * k + (rng.randint(-10, 10) if k else 0))
                for k in range(per_patient)
            ][::-1]
            tail = []
            for when in times:
                aid += 1
                answer = rng.choice(pool)
                counts["assessments"] += 1
                tail.append((aid, answer, when))
                yield (
                    aid,
                    pid,
                    program_id,
                    episode_id,
                    instrument_id,
                    inst.version,
                    answer.total,
                    answer.scheme_id,
                    answer.band_id,
                    answer.band_label,
                    json.dumps(answer.values),
                    json.dumps(answer.flags),
                    version_id,
                    version,
                    when + timedelta(minutes=120),
                    120,
                    when,
                    when,
                    nurse_id,
                    "bench",
                )
            last[episode_id] = tail[-HISTORY_FOR_STATE:]

    sink("withdrawal_assessments", ASSESSMENT_COLUMNS, assessments())
    # One monitoring row per patient, from the real core over the latest part of its series.
    monitoring = []
    for pid, episode_id, instrument_id in patients:
        tail = last[episode_id]
        series = [
            ScoredAssessment(
                instrument_id, a.total, a.band_id, when, a.scheme_id, version, str(aid)
            )
            for aid, a, when in tail
        ]
        state = evaluate(protocol, instrument_id, series, now)
        row = MonitoringRow()
        done = [
            SimpleNamespace(id=aid, total=a.total, assessed_at=when, instrument_id=instrument_id)
            for aid, a, when in tail
        ]
        assessment_service.fill_monitoring(row, protocol, version_id, done, state, now)  # type: ignore[arg-type]
        monitoring.append(
            (
                episode_id,
                pid,
                program_id,
                unit_id,
                True,
                now - timedelta(days=9),
                instrument_id,
                row.last_assessment_id,
                row.last_total,
                row.band_id,
                row.band_label,
                row.band_rank,
                row.last_assessed_at,
                row.due_at,
                row.interval_minutes,
                row.overdue_alert_at,
                False,
                row.may_end,
                json.dumps(row.trend),
                -1,
                0,
                version_id,
                now,
            )
        )
    sink(
        "withdrawal_monitoring",
        (
            "episode_id",
            "patient_id",
            "program_id",
            "unit_id",
            "active",
            "admitted_at",
            "instrument_id",
            "last_assessment_id",
            "last_total",
            "band_id",
            "band_label",
            "band_rank",
            "last_assessed_at",
            "due_at",
            "interval_minutes",
            "overdue_alert_at",
            "overdue_alerted",
            "may_end",
            "trend",
            "alert_rank",
            "alert_count",
            "protocol_version_id",
            "updated_at",
        ),
        iter(monitoring),
    )
    alerts = [
        (
            pid,
            program_id,
            "withdrawal_escalation",
            "ciwa_severe_band",
            rng.choice(["high", "critical"]),
            "prescriber",
            "CIWA-Ar in the severe band (bench)",
            "",
            "",
            now,
            "",
        )
        for pid, _e, inst in rng.sample(patients, max(1, n_patients // 40))
        if inst == "ciwa_ar"
    ]
    sink(
        "alerts",
        (
            "patient_id",
            "program_id",
            "kind",
            "rule_id",
            "severity",
            "for_role",
            "title",
            "detail",
            "source",
            "raised_at",
            "acknowledgement_note",
        ),
        iter(alerts),
    )
    return patients, counts["assessments"]


OBSERVATIONS_FROM_ASSESSMENTS = {
    # Every stored assessment's total and items as Observation rows, expanded by the database.
    "sqlite": (
        "INSERT INTO withdrawal_observations (assessment_id, patient_id, instrument_id, code, value, "
        "effective_at) SELECT a.id, a.patient_id, a.instrument_id, 'total', a.total, a.assessed_at "
        "FROM withdrawal_assessments a UNION ALL SELECT a.id, a.patient_id, a.instrument_id, j.key, "
        "j.value, a.assessed_at FROM withdrawal_assessments a, json_each(a.item_values) j"
    ),
    "postgresql": (
        "INSERT INTO withdrawal_observations (assessment_id, patient_id, instrument_id, code, value, "
        "effective_at) SELECT a.id, a.patient_id, a.instrument_id, 'total', a.total, a.assessed_at "
        "FROM withdrawal_assessments a UNION ALL SELECT a.id, a.patient_id, a.instrument_id, j.key, "
        "j.value::int, a.assessed_at FROM withdrawal_assessments a, json_each_text(a.item_values) j"
    ),
}


def refresh_alert_summaries(url: str) -> None:
    """The census reads each patient's open-alert summary from the monitoring row (one UPDATE)."""
    engine = make_engine(url)
    with session_scope(make_sessionmaker(engine)) as db:
        assessment_service.refresh_alerts(db)
    engine.dispose()


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):  # as SQLAlchemy stores them on SQLite: naive UTC text
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return value


def load_sqlite(workdir: str, args: argparse.Namespace, now: datetime) -> World:
    path = os.path.join(workdir, "census.db")
    url = f"sqlite:///{path}"
    program_id, unit_id, nurse_id, version_id = _prepare(url)
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")  # this loading connection only; the app runs FULL

    def sink(table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> None:
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            ([_sqlite_value(v) for v in row] for row in rows),
        )

    with conn:
        patients, n_rows = generate(
            args.patients,
            args.assessments,
            program_id,
            unit_id,
            nurse_id,
            version_id,
            now,
            args.seed,
            sink,
        )
        if not args.no_observations:
            log("  expanding observations")
            conn.execute(OBSERVATIONS_FROM_ASSESSMENTS["sqlite"])
    n_obs = conn.execute("SELECT count(*) FROM withdrawal_observations").fetchone()[0]
    conn.close()
    refresh_alert_summaries(url)
    conn = sqlite3.connect(path)
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return World(
        url,
        program_id,
        unit_id,
        nurse_id,
        version_id,
        patients,
        time.perf_counter() - started,
        n_rows,
        n_obs,
    )


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def load_postgres(args: argparse.Namespace, now: datetime) -> World | str:
    url = args.postgres_url
    name = make_url(url).database or "tandem_bench_census"
    server_url = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    try:
        server = make_engine(
            server_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        server.dispose()
    except Exception as exc:  # no server or no rights: say so, carry on with SQLite
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    program_id, unit_id, nurse_id, version_id = _prepare(url)
    started = time.perf_counter()
    with psycopg.connect(_libpq(url)) as conn, conn.cursor() as cur:

        def sink(table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> None:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

        patients, n_rows = generate(
            args.patients,
            args.assessments,
            program_id,
            unit_id,
            nurse_id,
            version_id,
            now,
            args.seed,
            sink,
        )
        # Ids were given explicitly: move the sequences past them, as the app's inserts need.
        for table in ("withdrawal_assessments", "episodes"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        if not args.no_observations:
            log("  expanding observations")
            cur.execute(OBSERVATIONS_FROM_ASSESSMENTS["postgresql"])
        conn.commit()
        n_obs = cur.execute("SELECT count(*) FROM withdrawal_observations").fetchone()[0]  # type: ignore[index]
    refresh_alert_summaries(url)
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return World(
        url,
        program_id,
        unit_id,
        nurse_id,
        version_id,
        patients,
        time.perf_counter() - started,
        n_rows,
        n_obs,
    )


def drop_postgres(url: str) -> None:
    name = make_url(url).database
    server = make_engine(
        make_url(url).set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
    )
    with server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    server.dispose()


# --------------------------------------------------------------------------- timing


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


@dataclass
class Timing:
    label: str
    seconds: list[float]

    def p(self, q: float) -> float:
        return percentile(self.seconds, q) * 1000


PAGE = 100  # the census page size (tandem.withdrawal.pages.CENSUS_PAGE)


def time_census(
    engine: Engine, world: World, runs: int, limit: int | None
) -> tuple[Timing, int, int]:
    sessions = make_sessionmaker(engine)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    timings = []
    rows = 0
    for i in range(runs + 3):
        with sessions() as db:
            now = datetime.now(UTC)
            if i == 3:
                event.listen(engine, "before_cursor_execute", count)
            started = time.perf_counter()
            result, counts = census_queries.census_rows(db, world.unit_id, now, limit)
            elapsed = time.perf_counter() - started
            if i == 3:
                event.remove(engine, "before_cursor_execute", count)
            rows = len(result)
            assert counts["in_monitoring"] == len(world.patients)
        if i >= 3:  # three warm-up runs
            timings.append(elapsed)
    label = f"census (page of {limit})" if limit else "census (all rows, unpaged)"
    return Timing(label, timings), rows, len(statements)


def time_bare(
    engine: Engine, world: World, runs: int, sqlite_path: str | None, limit: int | None
) -> Timing:
    """The census statement the service runs, compiled once, through the bare driver."""
    now = datetime.now(UTC)
    compiled = census_queries.census_statement(world.unit_id, now, limit).compile(
        dialect=engine.dialect
    )
    sql = str(compiled)

    def bind(value: Any) -> Any:  # what the UTCDateTime column type does on the way in
        if isinstance(value, datetime) and sqlite_path is not None:
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    if sqlite_path is not None:
        conn: Any = sqlite3.connect(sqlite_path)
        positional = [bind(compiled.params[name]) for name in compiled.positiontup or []]

        def run() -> int:
            return len(conn.execute(sql, positional).fetchall())
    else:
        conn = psycopg.connect(_libpq(world.url))
        params = {k: bind(v) for k, v in compiled.params.items()}

        def run() -> int:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                n = len(cur.fetchall())
            conn.commit()
            return n

    timings = []
    for i in range(runs + 3):
        started = time.perf_counter()
        n = run()
        if i >= 3:
            timings.append(time.perf_counter() - started)
    assert n == (limit or len(world.patients))
    conn.close()
    label = "  same SQL, bare driver"
    return Timing(label, timings)


GUARD_STEPS = ("given_for_check", "_prior", "check_repeat_dose")


def time_saves(
    engine: Engine, world: World, saves: int, seed: int
) -> tuple[Timing, Timing, Timing, Timing]:
    """Assessment saves; and after each save the protocol suggests a dose for, that dose given
    (with the guards' share timed apart) and a second one for the same assessment (refused)."""
    sessions = make_sessionmaker(engine)
    rng = random.Random(seed + 1)
    protocol = demo_protocol()
    pools = {k: answer_pool(get_instrument(k), protocol, rng, 200) for k in ("ciwa_ar", "cows")}
    with sessions() as db:
        nurse = db.get(User, world.nurse_id)
        assert nurse is not None
        actor = actor_for(nurse)
    guard_seconds = [0.0]

    def timed_guard(function: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            # CPU time of this thread: the guards' own cost, not the wait for a shared CPU.
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                guard_seconds[0] += time.thread_time() - started

        return run

    # The guards as record_dose calls them: the patient's doses of the last 24 hours, read and
    # summed, then the repeat-dose and 24-hour checks.
    originals = {name: getattr(dose_service, name) for name in GUARD_STEPS}
    for name, function in originals.items():
        setattr(dose_service, name, timed_guard(function))
    timings, doses, guards, refusals = [], [], [], []
    try:
        for i in range(saves + 3):
            patient_id, _episode, instrument_id = rng.choice(world.patients)
            answer = rng.choice(pools[instrument_id])
            with sessions() as db:
                access = Access(actor, Origin(channel="web"), db, sessions)
                started = time.perf_counter()
                saved = assessment_service.save_assessment(
                    access, patient_id, instrument_id, answer.values
                )
                db.commit()
                elapsed = time.perf_counter() - started
                options = dose_service.dose_options(db, saved.assessment)
                given = None
                for n, option in enumerate(options):
                    found = dose_range(option.dose_text)
                    if found is not None:
                        given = DoseInput(
                            saved.assessment.id, n, f"{found.low}", option.route or "oral", utcnow()
                        )
                        break
                if given is not None:
                    guard_seconds[0] = 0.0
                    started = time.perf_counter()
                    dose_service.record_dose(access, patient_id, given)
                    db.commit()
                    dose_elapsed, guard_elapsed = time.perf_counter() - started, guard_seconds[0]
                    started = time.perf_counter()
                    try:
                        dose_service.record_dose(access, patient_id, given)
                        raise AssertionError("a second dose for one assessment was accepted")
                    except DoseRefused:
                        db.rollback()
                    refused_elapsed = time.perf_counter() - started
            if i >= 3:
                timings.append(elapsed)
                if given is not None:
                    doses.append(dose_elapsed)
                    guards.append(guard_elapsed)
                    refusals.append(refused_elapsed)
    finally:
        for name, function in originals.items():
            setattr(dose_service, name, function)
    return (
        Timing("assessment save", timings),
        Timing("as-needed dose save", doses),
        Timing("  of which the guards (CPU)", guards),
        Timing("second dose refused", refusals),
    )


# --------------------------------------------------------------------------- main


def run_engine(
    label: str, world: World, args: argparse.Namespace, sqlite_path: str | None
) -> list[str]:
    engine = make_engine(world.url)
    try:
        census, rows, statements = time_census(engine, world, args.runs, PAGE)
        bare = time_bare(engine, world, args.runs, sqlite_path, PAGE)
        full, all_rows, _ = time_census(engine, world, max(5, args.runs // 4), None)
        full_bare = time_bare(engine, world, max(5, args.runs // 4), sqlite_path, None)
        saves, dose_saves, guard_share, refused = time_saves(engine, world, args.saves, args.seed)
        after, _, _ = time_census(engine, world, max(5, args.runs // 4), PAGE)
    finally:
        engine.dispose()
    lines = [
        f"{label}: {len(world.patients):,} patients in monitoring on one unit, {world.rows:,} assessments, "
        f"{world.observations:,} observations (loaded in {world.load_seconds:.1f} s)",
        f"  statements issued by one census: {statements}  (rows: page {rows}, all {all_rows:,})",
    ]

    def line(t: Timing, bare_t: Timing | None = None) -> str:
        text = f"  {t.label:<26} p50 {t.p(0.5):8.1f} ms   p95 {t.p(0.95):8.1f} ms   (n={len(t.seconds)})"
        if bare_t is not None:
            text += f"   x{t.p(0.5) / bare_t.p(0.5):.2f} of bare at p50"
        return text

    lines += [
        line(census, bare),
        line(bare),
        line(full, full_bare),
        line(full_bare),
        line(saves),
        line(dose_saves),
        line(guard_share),
        line(refused),
        line(after) + "   (census again, after the saves)",
    ]
    if guard_share.seconds:
        verdict = "MET" if guard_share.p(0.95) < 5 else "NOT MET"
        lines.append(
            f"  target: the guards add < 5 ms to a dose save -> {verdict} "
            f"(p50 {guard_share.p(0.5):.2f} ms, p95 {guard_share.p(0.95):.2f} ms)"
        )
    verdict = "MET" if census.p(0.95) < 100 else "NOT MET"
    lines.append(f"  target: census p95 < 100 ms -> {verdict} ({census.p(0.95):.1f} ms)")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--patients", type=int, default=10_000, help="patients in monitoring (default 10000)"
    )
    parser.add_argument(
        "--assessments", type=int, default=1_000_000, help="stored assessments (default 1000000)"
    )
    parser.add_argument(
        "--runs", type=int, default=40, help="timed census runs per runner (default 40)"
    )
    parser.add_argument(
        "--saves", type=int, default=200, help="timed assessment saves (default 200)"
    )
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_PG,
        help="a database the benchmark may DROP and CREATE (default %(default)s)",
    )
    parser.add_argument(
        "--no-observations",
        action="store_true",
        help="do not expand the stored assessments into Observation rows (faster load)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="500 patients, 20,000 assessments, few runs"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args(argv)
    if args.quick:
        args.patients, args.assessments = min(args.patients, 500), min(args.assessments, 20_000)
        args.runs, args.saves = min(args.runs, 15), min(args.saves, 20)
    now = datetime.now(UTC)
    report: list[str] = []
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    if args.engine in ("sqlite", "both"):
        workdir = tempfile.mkdtemp(prefix="tandem-census-")
        log(f"SQLite: loading into {workdir}")
        world = load_sqlite(workdir, args, now)
        log(f"SQLite: loaded in {world.load_seconds:.1f} s; timing")
        report += run_engine(
            f"SQLite {sqlite3.sqlite_version}", world, args, os.path.join(workdir, "census.db")
        )
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    if args.engine in ("postgresql", "both"):
        log("PostgreSQL: loading")
        loaded = load_postgres(args, now)
        if isinstance(loaded, str):
            report.append(f"PostgreSQL: SKIPPED ({loaded})")
        else:
            log(f"PostgreSQL: loaded in {loaded.load_seconds:.1f} s; timing")
            with psycopg.connect(_libpq(loaded.url)) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            report += run_engine(f"PostgreSQL {version}", loaded, args, None)
            if not args.keep:
                drop_postgres(loaded.url)
    print(
        f"bench/census.py  Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.1f} at start"
    )
    print("\n".join(report))


if __name__ == "__main__":
    main()
