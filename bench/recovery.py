"""Ongoing therapy at program size, beside the same SQL run bare (issue 10 item 9).

    .venv/bin/python bench/recovery.py            # 10,000 patients, a year each, both engines
    .venv/bin/python bench/recovery.py --quick    # 1,000 patients, fewer runs: a smoke run

For each engine: a migrated database holding one program of `--patients` patients, each with an
active care plan (a counselor per 200 patients), a year of daily check-ins (most days) with a
craving rating and a use day each, lapses, weekly PHQ-9 and GAD-7 answers, weekly counseling
sessions (some missed), weekly urine screens (positive after a lapse), and for three in ten a
dose plan with 90 days of doses reported (some missed): several million rows, bulk-loaded with
the bare driver (`executemany` on SQLite, `COPY` on PostgreSQL). The load is kept between runs
(`--cache-dir`; `--fresh` to rebuild): the same seed and size reuse it, timed against the same
"now" it was built for.

Then, in the same run and on the same database:

  caseload        a counselor's 200 patients with every risk flag computed:
                    page     GET /caseload signed in (session, policy, queries, audit, HTML)
                    service  tandem.recovery.caseload.caseload (queries, flags, audit, commit)
                    bare     every SELECT the service issued, replayed on the bare driver
  check-in saved  the patient's own daily check-in, as the portal saves it:
                    page     POST /patients/{id}/check-in signed in as the patient (session,
                             CSRF, the answers checked, today's answers replaced, audit,
                             commit, the redirect)
                    service  tandem.recovery.portal_service.record_check_in for a new day
                             (the chart read and locked, today's dose plans and the doses
                             asked, the check-in, craving ratings, use days, doses reported,
                             audit entries, commit)
                    bare     every statement the service sent, replayed on the bare driver
  timeline        one patient's whole year (GET /patients/{id}/timeline?range=1y, the service,
                  and its SELECTs bare)

Targets (issue 10): caseload p95 < 100 ms, check-in p95 < 50 ms, timeline p95 < 100 ms.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import inspect
import json
import os
import platform
import random
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from fastapi.testclient import TestClient
from harness import Bare, Capture, Writer, libpq
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.engine import Engine, make_url

from tandem.access import accounts
from tandem.access.audit import Origin
from tandem.access.credentials import actor_for
from tandem.access.guard import Access
from tandem.instruments.engine import get_instrument, score
from tandem.medications.dose_plan import maintenance
from tandem.medications.storage import MedicationStatementRow
from tandem.recovery.caseload import caseload
from tandem.recovery.portal_service import check_in_form, record_check_in
from tandem.recovery.storage import CheckInRow, UseDayRow
from tandem.recovery.timeline import timeline
from tandem.settings import Settings
from tandem.storage.db import (
    make_engine,
    make_sessionmaker,
    refresh_planner_statistics,
    session_scope,
    utcnow,
)
from tandem.storage.migrate import upgrade
from tandem.storage.models import Patient, User
from tandem.web.app import create_app

# A database per size (`_<patients>` added to the name), so a quick run keeps the full load.
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/tandem_bench_recovery"
PASSWORD = "bench-password-1"  # noqa: S105 (a synthetic bench login)
COUNSELOR = "counselor@bench.tandem.test"
ZONE = "America/New_York"
CACHE_VERSION = 3  # bump when the shape of the loaded data changes
LOAD_BATCH = 500  # patients generated and written at a time (the random draws follow it)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the data


@dataclass
class Loaded:
    """What a load made, kept beside the database (JSON) so a later run can reuse it."""

    key: str
    url: str
    anchor: str  # the "now" the data was built for (ISO)
    program_id: int
    patients: int
    rows: int
    load_seconds: float
    timeline_patient: str
    check_in_patients: list[str]

    @property
    def now(self) -> datetime:
        return datetime.fromisoformat(self.anchor)


@functools.lru_cache(maxsize=100_000)
def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, clock_time(hour, minute), tzinfo=ZoneInfo(ZONE)).astimezone(UTC)


def _answer_templates(rng: random.Random, instrument_id: str) -> list[tuple[str, int, str | None]]:
    """A few answer sets scored by the instrument engine: (answers JSON, total, band id)."""
    instrument = get_instrument(instrument_id)
    out = []
    for _ in range(12):
        answers = {item.id: rng.choice(item.allowed_values[:3]) for item in instrument.items}
        if instrument_id == "phq9":
            answers["self_harm_thoughts"] = 0
        scored = score(instrument, answers)
        out.append(
            (json.dumps(scored.item_values), scored.total, scored.band.id if scored.band else None)
        )
    return out


Tables = dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]]


# The tables a load fills, whose secondary indexes are dropped during the load and built once
# after it (one sort each instead of millions of random B-tree inserts).
LOADED_TABLES = (
    "care_plans",
    "recovery_check_ins",
    "craving_ratings",
    "use_days",
    "questionnaire_responses",
    "therapy_sessions",
    "drug_screens",
    "drug_screen_results",
    "medication_dose_plans",
    "medication_statements",
)


@functools.lru_cache(maxsize=4)
def _naltrexone_plan(start: date) -> str:
    """A real stored plan (the medication domain reads it: the calendar, the doses a check-in
    asks about): naltrexone 50 mg daily from `start`, the demo's protocol maximum of 50 mg."""
    plan = maintenance("naltrexone", "50mg-daily", start, protocol_max_mg_day=50)
    return json.dumps(plan.to_dict())


def _generate(
    rng: random.Random,
    patient_ids: Sequence[str],
    program_id: int,
    counselors: Sequence[int],
    per_counselor: int,
    prescriber: int,
    anchor: datetime,
    days: int,
    ids: dict[str, int],
    first_index: int,
) -> Tables:
    """The rows of a batch of patients (explicit ids, so linked rows can point at them)."""
    today = anchor.astimezone(ZoneInfo(ZONE)).date()
    start = today - timedelta(days=days)
    phq9, gad7 = _answer_templates(rng, "phq9"), _answer_templates(rng, "gad7")
    t: Tables = {
        "care_plans": (
            (
                "id",
                "patient_id",
                "program_id",
                "title",
                "substances",
                "counselor_id",
                "started_on",
                "retention",
                "note",
                "created_at",
            ),
            [],
        ),
        "recovery_check_ins": (
            (
                "id",
                "patient_id",
                "program_id",
                "day",
                "checked_in_at",
                "mood",
                "side_effects",
                "note",
                "source",
                "recorded_at",
            ),
            [],
        ),
        "craving_ratings": (
            (
                "patient_id",
                "program_id",
                "substance",
                "rating",
                "rated_at",
                "day",
                "source",
                "check_in_id",
                "recorded_at",
            ),
            [],
        ),
        "use_days": (
            (
                "patient_id",
                "program_id",
                "day",
                "substance",
                "used",
                "standard_drinks",
                "source",
                "check_in_id",
                "recorded_at",
            ),
            [],
        ),
        "questionnaire_responses": (
            (
                "patient_id",
                "program_id",
                "instrument_id",
                "instrument_version",
                "answers",
                "total",
                "scheme_id",
                "band_id",
                "flags",
                "urgent",
                "authored_at",
                "day",
                "source",
                "recorded_at",
            ),
            [],
        ),
        "therapy_sessions": (
            (
                "patient_id",
                "program_id",
                "service",
                "starts_at",
                "minutes",
                "status",
                "status_at",
                "note",
                "created_at",
            ),
            [],
        ),
        "drug_screens": (
            (
                "id",
                "patient_id",
                "program_id",
                "collected_at",
                "day",
                "specimen",
                "note",
                "recorded_at",
            ),
            [],
        ),
        "drug_screen_results": (
            ("screen_id", "patient_id", "program_id", "substance", "result"),
            [],
        ),
        "medication_dose_plans": (
            (
                "id",
                "patient_id",
                "program_id",
                "medication_id",
                "kind",
                "status",
                "status_reason",
                "start_date",
                "plan",
                "inputs",
                "prescriber_id",
                "created_at",
            ),
            [],
        ),
        "medication_statements": (
            (
                "patient_id",
                "program_id",
                "dose_plan_id",
                "medication_id",
                "due_at",
                "time_slot",
                "dose_mg",
                "taken",
                "reason",
                "reported_at",
                "recorded_by",
            ),
            [],
        ),
    }
    for offset, pid in enumerate(patient_ids):
        index = first_index + offset
        counselor = counselors[min(index // per_counselor, len(counselors) - 1)]
        substance = "alcohol" if rng.random() < 0.6 else "opioids"
        ids["plan"] += 1
        t["care_plans"][1].append(
            (
                ids["plan"],
                pid,
                program_id,
                "Recovery plan",
                json.dumps([substance]),
                counselor,
                start,
                "active",
                "",
                _at(start, 9),
            )
        )
        crave0, floor, pace = rng.uniform(5, 8.5), rng.uniform(0.8, 3), rng.uniform(20, 60)
        rate = rng.uniform(0.01, 0.05)
        silent = rng.randint(3, 8) if rng.random() < 0.06 else 0  # stopped checking in lately
        use: set[date] = set()
        for d in range(days):
            if rng.random() < rate * (0.3 + 0.7 * (1 - d / days)):
                use.add(start + timedelta(days=d))
        for d in range(days):
            day = start + timedelta(days=d)
            if silent and (today - day).days <= silent:
                continue
            if rng.random() > 0.9 and day not in use:
                continue
            ids["check_in"] += 1
            check_in = ids["check_in"]
            at = _at(day, 20, rng.randint(0, 59))
            t["recovery_check_ins"][1].append(
                (check_in, pid, program_id, day, at, "okay", "", "", "portal", at)
            )
            pressure = 3 if any(day + timedelta(days=k) in use for k in range(1, 4)) else 0
            level = floor + (crave0 - floor) * pow(2.718, -d / pace) + pressure + rng.gauss(0, 0.9)
            rating = max(0, min(10, round(level)))
            t["craving_ratings"][1].append(
                (pid, program_id, substance, rating, at, day, "portal", check_in, at)
            )
            used = day in use
            drinks = (float(rng.randint(3, 9)) if used else 0.0) if substance == "alcohol" else None
            t["use_days"][1].append(
                (pid, program_id, day, substance, used, drinks, "portal", check_in, at)
            )
        for week in range(days // 7):
            day = start + timedelta(days=week * 7 + 3)
            for instrument_id, templates in (("phq9", phq9), ("gad7", gad7)):
                answers, total, band = rng.choice(templates)
                at = _at(day, 19, 30)
                t["questionnaire_responses"][1].append(
                    (
                        pid,
                        program_id,
                        instrument_id,
                        "1",
                        answers,
                        total,
                        None,
                        band,
                        "[]",
                        False,
                        at,
                        day,
                        "portal",
                        at,
                    )
                )
            session_at = _at(day, 10)
            status = "missed" if rng.random() < 0.1 else "attended"
            t["therapy_sessions"][1].append(
                (
                    pid,
                    program_id,
                    "individual_counseling",
                    session_at,
                    50,
                    status,
                    session_at + timedelta(minutes=55),
                    "",
                    _at(start, 9),
                )
            )
            ids["screen"] += 1
            screen_day = day + timedelta(days=1)
            positive = any(screen_day - timedelta(days=k) in use for k in range(4))
            t["drug_screens"][1].append(
                (
                    ids["screen"],
                    pid,
                    program_id,
                    _at(screen_day, 11),
                    screen_day,
                    "urine",
                    "",
                    _at(screen_day, 16),
                )
            )
            t["drug_screen_results"][1].append(
                (ids["screen"], pid, program_id, substance, "positive" if positive else "negative")
            )
        if rng.random() < 0.3:
            ids["dose_plan"] += 1
            plan_start = today - timedelta(days=90)
            t["medication_dose_plans"][1].append(
                (
                    ids["dose_plan"],
                    pid,
                    program_id,
                    "naltrexone",
                    "maintenance",
                    "active",
                    "",
                    plan_start,
                    _naltrexone_plan(plan_start),
                    '{"bench": true, "protocol_max_mg_day": 50}',
                    prescriber,
                    _at(plan_start, 8),
                )
            )
            for d in range(90):
                day = plan_start + timedelta(days=d)
                due = _at(day, 9)
                if due > anchor:
                    break
                taken = rng.random() < 0.92
                t["medication_statements"][1].append(
                    (
                        pid,
                        program_id,
                        ids["dose_plan"],
                        "naltrexone",
                        due,
                        "morning",
                        50.0,
                        taken,
                        "",
                        due + timedelta(hours=1),
                        prescriber,
                    )
                )
    return t


def load(url: str, args: argparse.Namespace, anchor: datetime, key: str) -> Loaded:
    started = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(args.seed)  # noqa: S311 - synthetic data
    sessions = make_sessionmaker(engine)
    counselors_needed = -(-args.patients // args.caseload)
    with session_scope(sessions) as db:
        program = accounts.create_program(
            db, "bench", "Bench program (synthetic)", time_zone=ZONE, synthetic=True
        )
        program_id = program.id
        counselor = accounts.create_user(
            db, COUNSELOR, "Bench Counselor", "counselor", PASSWORD, [program_id]
        )
        prescriber = accounts.create_user(
            db,
            "prescriber@bench.tandem.test",
            "Bench Prescriber",
            "prescriber",
            PASSWORD,
            [program_id],
        )
        counselors = [counselor.id]
        for n in range(1, counselors_needed):
            other = User(
                email=f"counselor{n}@bench.tandem.test",
                display_name=f"Counselor {n}",
                role="counselor",
                password_hash="!",  # noqa: S106 - no sign-in
                active=True,
            )
            db.add(other)
            db.flush()
            accounts.set_memberships(db, other, [program_id])
            counselors.append(other.id)
        prescriber_id = prescriber.id
    patient_ids = [
        str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(args.patients)
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(Patient.__table__),
            [
                {
                    "id": pid,
                    "program_id": program_id,
                    "family": f"Bench{i:05d}",
                    "given": "Sam",
                    "family_lower": f"bench{i:05d}",
                    "given_lower": "sam",
                    "synthetic": True,
                }
                for i, pid in enumerate(patient_ids)
            ],
        )
    engine.dispose()
    writer = Writer(url, LOADED_TABLES)
    ids = {"plan": 0, "check_in": 0, "screen": 0, "dose_plan": 0}
    batch = LOAD_BATCH
    for first in range(0, len(patient_ids), batch):
        tables = _generate(
            rng,
            patient_ids[first : first + batch],
            program_id,
            counselors,
            args.caseload,
            prescriber_id,
            anchor,
            args.days,
            ids,
            first,
        )
        for table, (columns, rows) in tables.items():
            writer.write(table, columns, rows)
        writer.commit()
        if first // batch % 4 == 0:
            log(f"  {first + batch:,} patients, {writer.count:,} rows")
    log(f"  {writer.count:,} rows; building {len(writer.indexes)} indexes")
    writer.finish(("care_plans", "recovery_check_ins", "drug_screens", "medication_dose_plans"))
    rows = writer.count
    writer.close()
    engine = make_engine(url)
    if url.startswith("postgresql"):
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    else:
        refresh_planner_statistics(engine)
    engine.dispose()
    # The counselor's first patient for the timeline; the check-ins go to the next ones.
    mine = patient_ids[: args.caseload]
    return Loaded(
        key,
        url,
        anchor.isoformat(),
        program_id,
        args.patients,
        rows,
        time.perf_counter() - started,
        mine[0],
        mine[1:41],
    )


def _postgres_server(url: str) -> Any:
    return make_engine(
        make_url(url).set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )


def _ensure_indexes(engine: Engine) -> None:
    """Every index the models declare on the recovery tables, on a load made before a revision
    of the migration added it (each is in the migrations for a real database)."""
    from tandem.storage.registry import full_metadata

    wanted = (
        "use_days",
        "craving_ratings",
        "recovery_check_ins",
        "questionnaire_responses",
        "therapy_sessions",
        "drug_screens",
        "drug_screen_results",
        "care_plans",
        "medication_statements",
    )
    metadata = full_metadata()
    for name in wanted:
        for index in metadata.tables[name].indexes:
            index.create(engine, checkfirst=True)


def _data_key(args: argparse.Namespace) -> str:
    """What a load is: its size and seed, and the code that generates its rows (a change to the
    generator makes the cached load stale, so it is built again rather than timed)."""
    code = "".join(inspect.getsource(f) for f in (_generate, _answer_templates))
    digest = hashlib.sha256(f"{CACHE_VERSION} {LOAD_BATCH}\n{code}".encode()).hexdigest()[:12]
    return f"v{CACHE_VERSION}-{digest}-{args.patients}-{args.days}-{args.caseload}-{args.seed}"


def _schema_current(engine: Engine) -> str | None:
    """None when the database is at the migrations' head and has every table and column the
    models declare; else what is not."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import inspect as inspect_schema

    from tandem.storage.migrate import head_revision
    from tandem.storage.registry import full_metadata

    with engine.connect() as conn:
        at = MigrationContext.configure(conn).get_current_revision()
        if at != head_revision():
            return f"at revision {at}, not {head_revision()}"
        found = inspect_schema(conn)
        tables = set(found.get_table_names())
        for table in full_metadata().tables.values():
            if table.name not in tables:
                return f"no table {table.name}"
            columns = {c["name"] for c in found.get_columns(table.name)}
            missing = [c.name for c in table.columns if c.name not in columns]
            if missing:
                return f"{table.name} lacks {', '.join(missing)}"
    return None


def _reuse(url: str, args: argparse.Namespace, meta: Path, key: str, label: str) -> Loaded | None:
    """The cached load, migrated to the head revision first, when it is the load asked for and
    its schema is current; None (and why, in the log) when it must be built again."""
    if args.fresh:
        return None
    if not meta.exists():
        log(f"{label}: no cached load")
        return None
    try:
        found = Loaded(**json.loads(meta.read_text()))
    except (ValueError, TypeError) as exc:  # written by another version of this file
        log(f"{label}: cache description not readable ({type(exc).__name__}); loading afresh")
        return None
    if found.key != key or found.url != url:
        log(f"{label}: the cache holds another load ({found.key}); loading afresh")
        return None
    engine = make_engine(url)
    try:
        upgrade(engine)  # migrations added since the load apply to it, as to a real database
        _ensure_indexes(engine)
        stale = _schema_current(engine)
        if stale:
            log(f"{label}: cached schema not current after upgrade ({stale}); loading afresh")
            return None
        with engine.connect() as conn:
            plans = conn.execute(text("SELECT count(*) FROM care_plans")).scalar()
        if plans != args.patients:
            log(f"{label}: cache holds {plans} care plans, not {args.patients}; loading afresh")
            return None
    except Exception as exc:  # a missing, broken or unmigratable cache: build it again
        first = str(exc).splitlines()[0] if str(exc) else ""
        log(f"{label}: cache not usable ({type(exc).__name__}: {first}); loading afresh")
        return None
    finally:
        engine.dispose()
    log(f"{label}: reusing the load in {url} (built for {found.anchor})")
    if url.startswith("postgresql"):
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            conn.execute("ANALYZE")
    return found


def cached_or_load(url: str, args: argparse.Namespace, label: str) -> Loaded | str:
    """The cached load when it matches (same size, seed, generator; migrated to the head
    revision), else a fresh one; or why not."""
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    key = _data_key(args)
    meta = cache / f"{label}.json"
    found = _reuse(url, args, meta, key, label)
    if found is not None:
        return found
    meta.unlink(missing_ok=True)  # written again only once the new load is complete
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        name = make_url(url).database
        try:
            server = _postgres_server(url)
            with server.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            server.dispose()
        except Exception as exc:  # no server or no rights: say so, carry on with SQLite
            return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    anchor = datetime.now(UTC).replace(microsecond=0)
    log(f"{label}: loading {args.patients:,} patients x {args.days} days into {url}")
    loaded = load(url, args, anchor, key)
    meta.write_text(json.dumps(asdict(loaded), indent=1))
    log(f"{label}: {loaded.rows:,} rows in {loaded.load_seconds:.0f} s")
    return loaded


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
    cpu: list[float]
    server_ms: float | None = None  # PostgreSQL's CPU a run (mean), when it can be read

    def p(self, q: float) -> float:
        return percentile(self.seconds, q) * 1000

    def cpu_p(self, q: float) -> float:
        return percentile(self.cpu, q) * 1000


class ServerCpu:
    """The CPU time of the PostgreSQL backends serving the bench's database (read from Linux's
    /proc: the server runs on this machine), around a timed loop. Like this process's CPU time,
    and unlike wall time, it hardly depends on what else the shared machine is running."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq(url), autocommit=True)
        self.tick = os.sysconf("SC_CLK_TCK")

    def seconds(self) -> float | None:
        pids = [
            row[0]
            for row in self.conn.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
        ticks, read = 0, False
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone, or not on this machine
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            read = True
        return ticks / self.tick if read else None

    def close(self) -> None:
        self.conn.close()


SERVER: list[ServerCpu] = []  # the PostgreSQL server being measured, while one is


def _timed(
    label: str, runs: int, run: Callable[[int], None], before: Callable[[], None] | None = None
) -> Timing:
    """Wall and CPU time of `runs` calls after three warm-up calls (on a shared machine the wall
    time also counts waiting for a CPU: the load average is printed), and on PostgreSQL the
    server's CPU a call (a mean over the warm-ups and runs, `before` included). `before`, if
    given, runs untimed before each call."""
    seconds, cpu = [], []
    server_before = SERVER[0].seconds() if SERVER else None
    for i in range(runs + 3):
        if before is not None:
            before()
        started, cpu_started = time.perf_counter(), time.process_time()
        run(i)
        if i >= 3:
            seconds.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
    server_after = SERVER[0].seconds() if SERVER else None
    server_ms = None
    if server_before is not None and server_after is not None:
        server_ms = (server_after - server_before) * 1000 / (runs + 3)
    return Timing(label, seconds, cpu, server_ms)


def _access(sessions: Any, db: Any) -> Access:
    user = db.scalar(select(User).where(User.email == COUNSELOR))
    return Access(actor_for(user), Origin(channel="web"), db, sessions)


def _patient_users(sessions: Any, loaded: Loaded) -> dict[str, int]:
    """A portal account for each check-in patient (made once, kept with the load)."""
    users: dict[str, int] = {}
    with session_scope(sessions) as db:
        for patient_id in loaded.check_in_patients:
            email = f"patient-{patient_id[:8]}@bench.tandem.test"
            user = db.scalar(select(User).where(User.email == email))
            if user is None:
                user = accounts.create_user(
                    db, email, "Bench Patient", "patient", PASSWORD, [], patient_id
                )
            users[patient_id] = user.id
    return users


def _first_free_day(sessions: Any, loaded: Loaded) -> date:
    """The day after the pool's last check-in: every timed check-in is a new day's (an earlier
    run of the bench has checked in after the load's last day)."""
    with sessions() as db:
        last = db.scalar(
            select(func.max(CheckInRow.day)).where(
                CheckInRow.patient_id.in_(loaded.check_in_patients)
            )
        )
    return max(last or loaded.now.date(), loaded.now.astimezone(ZoneInfo(ZONE)).date()) + (
        timedelta(days=1)
    )


def check_in_answers(access: Access, patient_id: str, when: datetime, i: int) -> dict[str, Any]:
    """What a patient answers in the portal: a craving and use for each substance of their care
    plan (a lapse now and then), a mood, and every dose the check-in asks about (one in five
    missed), as the form posts them."""
    asked = check_in_form(access, patient_id, when)
    form: dict[str, Any] = {"use_day": "today", "mood": "okay"}
    for each in asked.substances:
        used = i % 9 == 0
        form[f"craving_{each.id}"] = str(2 + i % 5)
        form[f"use_{each.id}"] = "yes" if used else "no"
        if each.drinks and used:
            form[f"drinks_{each.id}"] = "3"
    for n, dose in enumerate(asked.doses):
        form[dose.field] = "missed" if (i + n) % 5 == 0 else "taken"
    return form


def run_engine(label: str, loaded: Loaded, args: argparse.Namespace) -> list[str]:
    if loaded.url.startswith("postgresql"):
        SERVER.append(ServerCpu(loaded.url))
    try:
        return _run_engine(label, loaded, args)
    finally:
        while SERVER:
            SERVER.pop().close()


def _run_engine(label: str, loaded: Loaded, args: argparse.Namespace) -> list[str]:
    url, now = loaded.url, loaded.now
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    bare = Bare(url)
    results: list[tuple[str, list[Timing], float]] = []
    shown = 0
    flagged = 0
    try:
        # --- the caseload
        def caseload_once(_: int) -> None:
            nonlocal shown, flagged
            with sessions() as db:
                found = caseload(_access(sessions, db), loaded.program_id, now=now)
                db.commit()
                shown, flagged = len(found.rows), sum(1 for r in found.rows if r.flags)

        caseload_once(0)
        with Capture(engine, selects_only=True) as capture:
            caseload_once(0)
        selects = capture.found
        service = _timed("service caseload()", args.runs, caseload_once)
        bare_t = _timed(
            f"same {len(selects)} SELECTs, bare driver",
            args.runs,
            lambda _: bare.run(selects, False),
        )
        results.append(("caseload", [service, bare_t], 100))

        # --- one patient's whole-year timeline
        def timeline_once(_: int) -> None:
            with sessions() as db:
                timeline(_access(sessions, db), loaded.timeline_patient, "1y", now=now)
                db.commit()

        timeline_once(0)
        with Capture(engine, selects_only=True) as capture:
            timeline_once(0)
        selects_tl = capture.found
        service_tl = _timed("service timeline(1y)", args.runs, timeline_once)
        bare_tl = _timed(
            f"same {len(selects_tl)} SELECTs, bare driver",
            args.runs,
            lambda _: bare.run(selects_tl, False),
        )
        results.append(("timeline, a year", [service_tl, bare_tl], 100))

        # --- a check-in saved: the patient's own, in the portal (record_check_in: the chart
        # read through the policy and locked, the answers checked, today's dose plans and the
        # doses asked, the check-in, its craving ratings and use days, the doses reported, the
        # audit entry), a new day each time for each of 40 patients, committed.
        pool = loaded.check_in_patients
        users = _patient_users(sessions, loaded)
        day0 = _first_free_day(sessions, loaded)
        hour = loaded.now.astimezone(ZoneInfo(ZONE)).time()
        runs_ci = args.runs + 5

        def when(i: int) -> datetime:
            day = day0 + timedelta(days=i // len(pool))
            return datetime.combine(day, hour, ZoneInfo(ZONE)).astimezone(UTC)

        forms = []
        with sessions() as db:
            for i in range(runs_ci):
                patient_id = pool[i % len(pool)]
                access = Access(
                    actor_for(db.get(User, users[patient_id])), Origin(channel="web"), db, sessions
                )
                forms.append(check_in_answers(access, patient_id, when(i), i))
            db.rollback()

        def check_in_once(i: int) -> None:
            patient_id = pool[i % len(pool)]
            with sessions() as db:
                user = db.get(User, users[patient_id])
                access = Access(actor_for(user), Origin(channel="web"), db, sessions)
                saved = record_check_in(access, patient_id, forms[i], when(i))
                assert not saved.updated, "a new day's check-in"
                db.commit()

        check_in_once(0)
        with Capture(engine, selects_only=False) as capture:
            check_in_once(1)
        writes = capture.found
        service_ci = _timed(
            "service record_check_in + commit", args.runs, lambda i: check_in_once(i + 2)
        )
        again = pool[1], when(1).astimezone(ZoneInfo(ZONE)).date()

        def clear_use_answers() -> None:
            # The replay answers the same patient's same day again: the answers kept one a day
            # (use days a substance, doses a planned time) are cleared first, untimed; the rest
            # is appended again.
            with sessions() as db:
                db.execute(
                    delete(UseDayRow).where(
                        UseDayRow.patient_id == again[0], UseDayRow.day == again[1]
                    )
                )
                db.execute(
                    delete(MedicationStatementRow).where(
                        MedicationStatementRow.patient_id == again[0],
                        MedicationStatementRow.due_at > loaded.now,
                    )
                )
                db.commit()

        bare_ci = _timed(
            f"same {len(writes)} statements + commit, bare",
            args.runs,
            lambda _: bare.run(writes, True),
            before=clear_use_answers,
        )
        results.append(("check-in saved", [service_ci, bare_ci], 50))
    finally:
        bare.close()

    # --- the pages, signed in, in-process (session, policy, queries, audit, commit, HTML)
    app = create_app(Settings(database_url=url, cookie_secure=True))
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        login = client.get("/login").text
        csrf = login.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        answer = client.post(
            "/login",
            data={
                "email": COUNSELOR,
                "password": PASSWORD,
                "csrf_token": csrf,
                "next": "/caseload",
            },
        )
        assert answer.status_code == 303, answer.text

        def page(path: str) -> Callable[[int], None]:
            def run(_: int) -> None:
                got = client.get(path)
                assert got.status_code == 200, (path, got.status_code)

            return run

        page_cl = _timed("page GET /caseload", args.runs, page("/caseload"))
        page_tl = _timed(
            "page GET timeline?range=1y",
            args.runs,
            page(f"/patients/{loaded.timeline_patient}/timeline?range=1y"),
        )

        # The patient's check-in page, posted as the patient's phone posts it. The load ends on
        # the load's day, so here the patient's day already has a check-in: each post replaces
        # today's answers (the service above times new days).
        patient_id = loaded.check_in_patients[0]
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as phone:
            login = phone.get("/login").text
            csrf = login.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            email = f"patient-{patient_id[:8]}@bench.tandem.test"
            signed = phone.post(
                "/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf}
            )
            assert signed.status_code == 303, signed.text
            form_page = phone.get(f"/patients/{patient_id}/check-in").text
            csrf = form_page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]

            with sessions() as db:
                access = Access(
                    actor_for(db.get(User, users[patient_id])), Origin(channel="web"), db, sessions
                )
                today_answers = [
                    check_in_answers(access, patient_id, utcnow(), i) for i in range(5)
                ]

            def post_check_in(i: int) -> None:
                form = {**today_answers[i % 5], "csrf_token": csrf}
                got = phone.post(f"/patients/{patient_id}/check-in", data=form)
                assert got.status_code == 303, (got.status_code, got.text[:2000])

            page_ci = _timed("page POST check-in (answers replaced)", args.runs, post_check_in)
    app.state.engine.dispose()
    engine.dispose()
    results[0][1].insert(0, page_cl)
    results[1][1].insert(0, page_tl)
    results[2][1].insert(0, page_ci)

    def line(t: Timing, base: Timing) -> str:
        out = (
            f"    {t.label:<40} p50 {t.p(0.5):7.1f} ms   p95 {t.p(0.95):7.1f} ms   "
            f"(CPU p50 {t.cpu_p(0.5):6.1f}, p95 {t.cpu_p(0.95):6.1f}"
        )
        out += f"; server CPU {t.server_ms:5.1f})" if t.server_ms is not None else ")"
        if t is not base:
            out += f"   x{t.p(0.5) / base.p(0.5):.1f} of bare at p50, x{t.p(0.95) / base.p(0.95):.1f} at p95"
        return out

    load_now = os.getloadavg()[0]
    report = [
        f"{label}: {loaded.patients:,} patients, {loaded.rows:,} rows (loaded in {loaded.load_seconds:.0f} s); "
        f"caseload shows {shown} patients, {flagged} flagged"
    ]
    for name, timings, target in results:
        base = timings[-1]
        report.append(f"  {name}:")
        report += [line(t, base) for t in timings]
        judged = timings[0]
        verdict = "MET" if judged.p(0.95) < target else "NOT MET"
        report.append(
            f"    target p95 < {target} ms ({judged.label}): {verdict} ({judged.p(0.95):.1f} ms)"
        )
    report.append(f"  load average {load_now:.1f} after")
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365, help="days of history (default a year)")
    parser.add_argument(
        "--caseload", type=int, default=200, help="patients a counselor (default 200)"
    )
    parser.add_argument("--runs", type=int, default=100, help="timed runs each (default 100)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("TANDEM_BENCH_POSTGRES_URL"),
        help="a database the benchmark may DROP and CREATE (default: "
        "tandem_bench_recovery_<patients> on 127.0.0.1)",
    )
    parser.add_argument(
        "--cache-dir",
        default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "tandem-bench-recovery"),  # noqa: S108
    )
    parser.add_argument(
        "--fresh", action="store_true", help="rebuild the data even if a cached load matches"
    )
    parser.add_argument("--quick", action="store_true", help="1,000 patients, 20 runs")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument(
        "--load-only", action="store_true", help="build (or check) the cache, time nothing"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.patients, args.runs = min(args.patients, 1000), min(args.runs, 20)
    load_avg = os.getloadavg()
    report: list[str] = []
    if args.engine in ("sqlite", "both"):
        path = Path(args.cache_dir) / f"recovery-{args.patients}.db"
        Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
        loaded = cached_or_load(f"sqlite:///{path}", args, f"sqlite-{args.patients}")
        assert isinstance(loaded, Loaded)
        if not args.load_only:
            report += run_engine(f"SQLite {sqlite3.sqlite_version}", loaded, args)
    if args.engine in ("postgresql", "both"):
        pg_url = args.postgres_url or make_url(DEFAULT_PG).set(
            database=f"tandem_bench_recovery_{args.patients}"
        ).render_as_string(hide_password=False)
        found = cached_or_load(pg_url, args, f"postgresql-{args.patients}")
        if isinstance(found, str):
            report.append(f"PostgreSQL: SKIPPED ({found})")
        elif not args.load_only:
            with psycopg.connect(libpq(found.url)) as conn:
                version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            report += run_engine(f"PostgreSQL {version}", found, args)
    print(
        f"bench/recovery.py  Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load_avg[0]:.1f} at start"
    )
    print("\n".join(report))


if __name__ == "__main__":
    main()
