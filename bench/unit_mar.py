"""The unit's medication administration record at ward size, beside the same SQL run bare.

    .venv/bin/python bench/unit_mar.py            # a 60-bed unit among 1,000 other patients, both engines
    .venv/bin/python bench/unit_mar.py --quick    # fewer runs: a smoke run

For each engine: a freshly migrated database; the unit's program with `--beds` patients, each on
one to two dose plans built by the real plan core (baclofen titration, acamprosate three times
daily) started up to a month ago, 30 days of doses given recorded against them
(each linked to its planned dose) and some patients' own reports; another program with
`--others` patients and the same kind of history, to be filtered out. Shift times are the
program's setting (07:00 and 19:00). Then, in the same run and on the same database:

  page          GET /unit/medications signed in as the unit's nurse (the real app in-process:
                session, policy, the list, its audit entries and commit, the rendered HTML)
  service       tandem.medications.unit_mar.unit_record alone (reads, dose states, audit)
  bare SQL      every SELECT the service issued for one page (captured from the engine),
                replayed through the bare driver (sqlite3 / psycopg) with the same parameters

The ratios are page and service time over the bare SQL time, at p50 and p95.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import event, insert, text
from sqlalchemy.engine import Engine, make_url

from tandem.access import accounts
from tandem.access.audit import Origin
from tandem.access.credentials import actor_for
from tandem.access.guard import Access
from tandem.clock import program_today, zone
from tandem.medications.administrations import load_administrations
from tandem.medications.dose_plan import DosePlan, maintenance, titration
from tandem.medications.schedule import planned_through
from tandem.medications.storage import (
    AdministrationDueRow,
    DosePlanRow,
    MedicationStatementRow,
)
from tandem.medications.unit_mar import set_program_shifts, unit_record
from tandem.settings import Settings
from tandem.storage.db import make_engine, make_sessionmaker, session_scope
from tandem.storage.migrate import upgrade
from tandem.storage.models import Patient, PatientIdentifier, User
from tandem.web.app import create_app

DEFAULT_PG = os.environ.get(
    "TANDEM_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/tandem_bench_mar"
)
PASSWORD = "bench-password-1"  # noqa: S105 (a synthetic bench login)
HISTORY_DAYS = 30


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the data


def _plan(rng: random.Random, start: date) -> tuple[str, DosePlan]:
    if rng.random() < 0.6:
        return "titration", titration("baclofen", "5mg-tid", 5, 3, "20mg-tid", start)
    return "maintenance", maintenance("acamprosate", "666mg-tid", start)


@dataclass
class World:
    url: str
    beds: int
    plans: int
    administrations: int
    statements: int
    load_seconds: float


def _fill(
    db: Any, program: Any, n: int, rng: random.Random, now: datetime, prescriber: int, nurse: int
) -> tuple[int, int, int]:
    """`n` patients of `program`, their plans and 30 days of doses recorded."""
    code = program.code
    set_program_shifts(db, program.id, "07:00 19:00", "program setting")
    today = program_today(program.time_zone, now)
    tz = zone(program.time_zone)
    patients = []
    for i in range(n):
        family = f"{code.title()}{i:04d}"
        patient = Patient(
            program_id=program.id,
            family=family,
            given="Sam",
            family_lower=family.lower(),
            given_lower="sam",
            synthetic=True,
        )
        patient.identifiers.append(
            PatientIdentifier(system=program.mrn_system, value=f"{code.upper()}-{i:05d}")
        )
        patients.append(patient)
    db.add_all(patients)
    db.flush()
    n_plans = n_admins = n_statements = 0
    for patient in patients:
        for _ in range(rng.choice((1, 1, 2))):
            start = today - timedelta(days=rng.randint(1, HISTORY_DAYS))
            kind, plan = _plan(rng, start)
            row = DosePlanRow(
                patient_id=patient.id,
                program_id=program.id,
                medication_id=plan.medication_id,
                kind=kind,
                status="active",
                start_date=plan.start_date,
                ends_on=plan.stop_date,
                plan=plan.to_dict(),
                inputs={"bench": True},
                prescriber_id=prescriber,
                created_at=now - timedelta(days=HISTORY_DAYS + 1),
            )
            db.add(row)
            db.flush()
            n_plans += 1
            given, dues, reports = [], [], []
            for dose in planned_through(plan, today, tz, row.ends_on):
                if dose.due_at > now - timedelta(hours=rng.randint(1, 14)):
                    continue  # the latest doses of each plan are still to be recorded
                if rng.random() < 0.8:
                    late = timedelta(minutes=rng.randint(0, 50))
                    done = rng.random() < 0.93
                    given.append(
                        dict(
                            patient_id=patient.id,
                            program_id=program.id,
                            medication_id=plan.medication_id,
                            medication_text=f"{plan.medication_id} {dose.mg:g} mg",
                            dose_value=Decimal(str(dose.mg)),
                            dose_unit="mg",
                            route="oral",
                            status="completed" if done else "not-done",
                            status_reason="" if done else "Held: asleep",
                            indication="",
                            administered_at=dose.due_at + late,
                            performer_id=nurse,
                            dose_plan_id=row.id,
                            note="",
                            recorded_at=dose.due_at + late,
                        )
                    )
                    dues.append(dose.due_at)
                elif rng.random() < 0.5:
                    reports.append(
                        dict(
                            patient_id=patient.id,
                            program_id=program.id,
                            dose_plan_id=row.id,
                            medication_id=plan.medication_id,
                            due_at=dose.due_at,
                            time_slot=dose.time_slot,
                            dose_mg=dose.mg,
                            taken=rng.random() < 0.9,
                            reason="",
                            reported_at=dose.due_at + timedelta(hours=1),
                            recorded_by=nurse,
                        )
                    )
            if given:
                load_administrations(db, given)
                ids = db.execute(
                    text(
                        "SELECT id FROM medication_administrations WHERE dose_plan_id = :p ORDER BY id"
                    ),
                    {"p": row.id},
                ).scalars()
                db.execute(
                    insert(AdministrationDueRow),
                    [
                        dict(administration_id=a, dose_plan_id=row.id, due_at=d)
                        for a, d in zip(ids, dues, strict=True)
                    ],
                )
            if reports:
                db.execute(insert(MedicationStatementRow), reports)
            n_admins += len(given)
            n_statements += len(reports)
    return n_plans, n_admins, n_statements


def load(url: str, args: argparse.Namespace, now: datetime) -> World:
    started = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(args.seed)
    with session_scope(make_sessionmaker(engine)) as db:
        unit, other = (
            accounts.create_program(db, code, name, time_zone="America/New_York", synthetic=True)
            for code, name in (("unit", "Bench ward (synthetic)"), ("other", "Other (synthetic)"))
        )
        both = [unit.id, other.id]
        prescriber = accounts.create_user(
            db, "prescriber@bench.tandem.test", "Bench Prescriber", "prescriber", PASSWORD, both
        )
        # The unit's nurse works on the unit only: the other program's doses are filtered out.
        nurse = accounts.create_user(
            db, "nurse@bench.tandem.test", "Bench Nurse", "nurse", PASSWORD, [unit.id]
        )
        plans, admins, reports = _fill(db, unit, args.beds, rng, now, prescriber.id, nurse.id)
        _fill(db, other, args.others, rng, now, prescriber.id, nurse.id)
    engine.dispose()
    return World(url, args.beds, plans, admins, reports, time.perf_counter() - started)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def recreate_postgres(url: str) -> str | None:
    name = make_url(url).database
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
    return None


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
    cpu: list[float]  # this process's CPU time (the in-process app's threads included)

    def p(self, q: float) -> float:
        return percentile(self.seconds, q) * 1000

    def cpu_p(self, q: float) -> float:
        return percentile(self.cpu, q) * 1000


def _timed(label: str, runs: int, run: Any) -> Timing:
    """Wall time, and CPU time: on a shared machine the wall time also counts waiting for a
    CPU (the load average is printed with the results)."""
    timings, cpu = [], []
    for i in range(runs + 3):  # three warm-up runs
        started, cpu_started = time.perf_counter(), time.process_time()
        run()
        if i >= 3:
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    return Timing(label, timings, cpu)


def time_page(world: World, runs: int) -> tuple[Timing, int]:
    app = create_app(Settings(database_url=world.url, cookie_secure=True))
    shown = 0
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        login = client.get("/login").text
        csrf = login.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        answer = client.post(
            "/login",
            data={
                "email": "nurse@bench.tandem.test",
                "password": PASSWORD,
                "csrf_token": csrf,
                "next": "/unit/medications",
            },
        )
        assert answer.status_code == 303, answer.text

        def run() -> None:
            nonlocal shown
            page = client.get("/unit/medications")
            assert page.status_code == 200
            shown = page.text.count('<tr id="dose-')

        timing = _timed("page GET /unit/medications", runs, run)
    app.state.engine.dispose()
    return timing, shown


def time_service(engine: Engine, runs: int) -> tuple[Timing, list[tuple[str, Any]], int]:
    """The service alone; and every SELECT one call issues, with its parameters as sent."""
    sessions = make_sessionmaker(engine)
    with sessions() as db:
        nurse = db.scalar(text("SELECT id FROM users WHERE email = 'nurse@bench.tandem.test'"))
        actor = actor_for(db.get(User, nurse))  # type: ignore[arg-type]
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    doses = 0

    def run() -> None:
        nonlocal doses
        with sessions() as db:
            record = unit_record(Access(actor, Origin(channel="web"), db, sessions))
            db.commit()
            doses = len(record.doses)

    run()
    event.listen(engine, "before_cursor_execute", capture)
    run()
    event.remove(engine, "before_cursor_execute", capture)
    return _timed("service unit_record", runs, run), captured, doses


def time_bare(
    world: World, statements: list[tuple[str, Any]], runs: int, sqlite_path: str | None
) -> Timing:
    if sqlite_path is not None:
        conn: Any = sqlite3.connect(sqlite_path)

        def run() -> None:
            for sql, params in statements:
                conn.execute(sql, params).fetchall()
    else:
        conn = psycopg.connect(_libpq(world.url))

        def run() -> None:
            with conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, params)
                    cur.fetchall()
            conn.commit()

    timing = _timed(f"same {len(statements)} SELECTs, bare driver", runs, run)
    conn.close()
    return timing


def run_engine(
    label: str, world: World, args: argparse.Namespace, sqlite_path: str | None
) -> list[str]:
    engine = make_engine(world.url)
    try:
        service, statements, doses = time_service(engine, args.runs)
        bare = time_bare(world, statements, args.runs, sqlite_path)
    finally:
        engine.dispose()
    page, rows = time_page(world, args.runs)
    assert rows == doses, (rows, doses)

    def line(t: Timing) -> str:
        text_ = (
            f"  {t.label:<34} p50 {t.p(0.5):7.1f} ms   p95 {t.p(0.95):7.1f} ms   "
            f"(CPU p50 {t.cpu_p(0.5):6.1f} ms, p95 {t.cpu_p(0.95):6.1f} ms; n={len(t.seconds)})"
        )
        if t is not bare:
            text_ += (
                f"   x{t.p(0.5) / bare.p(0.5):.1f} of bare at p50, "
                f"x{t.p(0.95) / bare.p(0.95):.1f} at p95"
            )
        return text_

    verdict = "MET" if page.p(0.95) < 100 else "NOT MET"
    load_now = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return [
        f"{label}: {world.beds} beds, {world.plans} plans on the unit ({world.administrations:,} doses "
        f"given, {world.statements:,} reports), {args.others:,} patients in another program "
        f"(loaded in {world.load_seconds:.1f} s)",
        f"  doses in the current shift: {doses}",
        line(page),
        line(service),
        line(bare),
        f"  target: page p95 < 100 ms -> {verdict} ({page.p(0.95):.1f} ms wall, "
        f"{page.cpu_p(0.95):.1f} ms CPU; load average {load_now:.1f} after)",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--beds", type=int, default=60, help="patients on the unit (default 60)")
    parser.add_argument(
        "--others", type=int, default=1000, help="patients in another program (default 1000)"
    )
    parser.add_argument("--runs", type=int, default=100, help="timed runs per runner (default 100)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_PG,
        help="a database the benchmark may DROP and CREATE (default %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help="200 other patients, 20 runs")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = parser.parse_args(argv)
    if args.quick:
        args.others, args.runs = min(args.others, 200), min(args.runs, 20)
    now = datetime.now(UTC)
    report: list[str] = []
    load_avg = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    if args.engine in ("sqlite", "both"):
        workdir = tempfile.mkdtemp(prefix="tandem-mar-")
        path = os.path.join(workdir, "mar.db")
        log(f"SQLite: loading into {path}")
        world = load(f"sqlite:///{path}", args, now)
        log(f"SQLite: loaded in {world.load_seconds:.1f} s; timing")
        report += run_engine(f"SQLite {sqlite3.sqlite_version}", world, args, path)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.engine in ("postgresql", "both"):
        log("PostgreSQL: loading")
        failed = recreate_postgres(args.postgres_url)
        if failed is not None:
            report.append(f"PostgreSQL: SKIPPED ({failed})")
        else:
            world = load(args.postgres_url, args, now)
            with psycopg.connect(_libpq(world.url), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
                version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            log(f"PostgreSQL: loaded in {world.load_seconds:.1f} s; timing")
            report += run_engine(f"PostgreSQL {version}", world, args, None)
            if not args.keep:
                drop_postgres(world.url)
    print(
        f"bench/unit_mar.py  Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load_avg[0]:.1f} at start"
    )
    print("\n".join(report))


if __name__ == "__main__":
    main()
