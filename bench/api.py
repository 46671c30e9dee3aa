"""The FHIR API and the pages under `tandem serve --workers N`, driven from another process.

    .venv/bin/python bench/api.py            # 10,000 patients, SQLite and PostgreSQL
    .venv/bin/python bench/api.py --quick    # 2,000 patients, short rows: a smoke run

For each engine it bulk-loads the patients (executemany on SQLite, COPY on PostgreSQL) into a
freshly migrated database and starts `tandem serve --workers N` on a loopback port as a
subprocess. The load comes from bench/loadgen.py, a process of its own keeping its connections
alive. In the same run and on the same database it measures:

  baseline  FHIR read by id and searches by name and identifier, beside the same SQL through the
            bare driver (sqlite3 / psycopg) in this process: bare, and bare + the audit row
  mixed     FHIR reads by id, FHIR searches by name, FHIR creates (POST Patient), the patient
            list and a chart (HTML), at 1, 8 and 32 concurrent clients

and prints req/s, p50/p95/p99, errors, the server's CPU per request, the ratios to the baseline
and the targets. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
from harness import LoadResult, Served, quantile, request_text, serve
from harness import load as run_load
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tandem.access import accounts
from tandem.access.credentials import create_token, start_session
from tandem.demo.names import FAMILY, GIVEN_FEMALE, GIVEN_MALE
from tandem.storage.db import (
    make_engine,
    make_sessionmaker,
    refresh_planner_statistics,
    session_scope,
)
from tandem.storage.migrate import upgrade
from tandem.storage.models import name_words

console = Console(width=None if sys.stdout.isatty() else 160)  # a log file gets the whole table
DEFAULT_PG = os.environ.get(
    "TANDEM_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/tandem_bench"
)
PATIENT_COLUMNS = (
    "id",
    "program_id",
    "family",
    "given",
    "family_lower",
    "given_lower",
    "gender",
    "birth_date",
    "phone",
    "email",
    "active",
    "synthetic",
    "version_id",
    "last_updated",
)
PATIENT_FIELDS = ", ".join(f"patients.{column}" for column in PATIENT_COLUMNS)
SELECT_PATIENT = f"SELECT {PATIENT_FIELDS} FROM patients"
ORDER_PAGE = " ORDER BY patients.family_lower, patients.given_lower, patients.id LIMIT ? OFFSET 0"
PAGE = 20  # the API's default _count


# --- the data ------------------------------------------------------------------------------


@dataclass
class Rows:
    """Synthetic patients as plain rows, the same for both engines."""

    patients: list[tuple[Any, ...]]
    identifiers: list[tuple[Any, ...]]
    name_words: list[tuple[str, str]]
    home_ids: list[str]  # patients of the program the benchmark user works in
    home_mrns: list[str]


def make_rows(
    count: int, home: tuple[int, str], other: tuple[int, str], seed: int, now: datetime
) -> Rows:
    rng = random.Random(seed)
    patients, identifiers, home_ids, home_mrns = [], [], [], []
    words: list[tuple[str, str]] = []
    today = now.date()
    for number in range(1, count + 1):
        program_id, code = home if number % 10 else other  # nine in ten in the user's own program
        female = rng.random() < 0.42
        given = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
        if rng.random() < 0.3:
            given += " " + rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
        family = rng.choice(FAMILY)
        patient_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        born = today - timedelta(days=rng.randint(19 * 365, 72 * 365))
        patients.append(
            (
                patient_id,
                program_id,
                family,
                given,
                family.lower(),
                given.lower(),
                "female" if female else "male",
                born,
                f"555-01{rng.randint(0, 99):02d}",
                None,
                True,
                True,
                1,
                now,
            )
        )
        mrn = f"{code[:3].upper()}-{number:08d}"
        identifiers.append((patient_id, f"urn:tandem:program:{code}:mrn", mrn))
        words.extend((patient_id, word) for word in sorted(name_words(family, given)))
        if program_id == home[0]:
            home_ids.append(patient_id)
            home_mrns.append(mrn)
    return Rows(patients, identifiers, words, home_ids, home_mrns)


@dataclass
class Loaded:
    engine: str  # "SQLite" | "PostgreSQL"
    url: str
    credentials: Credentials
    program_id: int
    rows: Rows
    load_seconds: float
    version: str
    connect: Callable[[], Any]  # a bare DB-API connection, as the app's pool would open it
    placeholder: str  # "?" (sqlite3) or "%s" (psycopg)
    cleanup: Callable[[], None] = lambda: None

    @property
    def token(self) -> str:
        return self.credentials.read_token


@dataclass(frozen=True)
class Credentials:
    """The bench nurse's: a read-only token, a token that may create, a signed-in browser."""

    read_token: str
    write_token: str
    session_cookie: str


def _platform_rows(url: str) -> tuple[tuple[int, str], tuple[int, str], Credentials]:
    """Migrate, then make two programs, a nurse in the first, her tokens and a browser session
    (via the ORM)."""
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    with session_scope(make_sessionmaker(engine)) as db:
        home = accounts.create_program(db, "bench", "Bench Detox (synthetic)", synthetic=True)
        other = accounts.create_program(
            db, "elsewhere", "Elsewhere Outpatient (synthetic)", synthetic=True
        )
        nurse = accounts.create_user(
            db, "nurse@bench.tandem.test", "Bench Nurse", "nurse", "bench-password-1", [home.id]
        )
        read_token, _ = create_token(db, nurse, ["user/Patient.rs"], "bench", now)
        write_token, _ = create_token(db, nurse, ["user/Patient.cruds"], "bench writes", now)
        cookie, _ = start_session(db, nurse, "127.0.0.1", now)
        result = (
            (home.id, home.code),
            (other.id, other.code),
            Credentials(read_token, write_token, cookie),
        )
    engine.dispose()
    return result


def _sqlite_value(value: Any) -> Any:
    # As SQLAlchemy stores them on SQLite: ISO dates, naive UTC "YYYY-MM-DD HH:MM:SS.ffffff".
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, timeout=30)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=FULL", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")  # the pragmas tandem.storage.db sets on every connection
    return conn


def load_sqlite(workdir: str, count: int, seed: int, now: datetime) -> Loaded:
    path = os.path.join(workdir, "bench.db")
    url = f"sqlite:///{path}"
    home, other, credentials = _platform_rows(url)
    rows = make_rows(count, home, other, seed, now)
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")  # only this loading connection; the app runs FULL
    with conn:
        conn.executemany(
            f"INSERT INTO patients ({', '.join(PATIENT_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(PATIENT_COLUMNS))})",
            ([_sqlite_value(v) for v in row] for row in rows.patients),
        )
        conn.executemany(
            "INSERT INTO patient_identifiers (patient_id, system, value) VALUES (?, ?, ?)",
            rows.identifiers,
        )
        conn.executemany(
            "INSERT INTO patient_name_words (patient_id, word) VALUES (?, ?)", rows.name_words
        )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    stats_engine = make_engine(url)
    refresh_planner_statistics(stats_engine)  # as `tandem serve` does at start
    stats_engine.dispose()
    return Loaded(
        "SQLite",
        url,
        credentials,
        home[0],
        rows,
        time.perf_counter() - started,
        f"SQLite {sqlite3.sqlite_version}",
        lambda: sqlite_connect(path),
        "?",
    )


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def load_postgres(url: str, count: int, seed: int, now: datetime, keep: bool) -> Loaded | str:
    """Load into a database of the benchmark's own (created here); a string says why not."""
    name = make_url(url).database or "tandem_bench"
    server_url = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    try:
        server = make_engine(
            server_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server, no rights: say so and carry on with SQLite
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    home, other, credentials = _platform_rows(url)
    rows = make_rows(count, home, other, seed, now)
    started = time.perf_counter()
    with psycopg.connect(_libpq(url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY patients ({', '.join(PATIENT_COLUMNS)}) FROM STDIN") as copy:
            for row in rows.patients:
                copy.write_row(row)
        with cur.copy("COPY patient_identifiers (patient_id, system, value) FROM STDIN") as copy:
            for row in rows.identifiers:
                copy.write_row(row)
        with cur.copy("COPY patient_name_words (patient_id, word) FROM STDIN") as copy:
            for row in rows.name_words:
                copy.write_row(row)
        conn.commit()
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by the first morning
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    def drop() -> None:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()

    return Loaded(
        "PostgreSQL",
        url,
        credentials,
        home[0],
        rows,
        time.perf_counter() - started,
        f"PostgreSQL {version}",
        lambda: psycopg.connect(_libpq(url)),
        "%s",
        (lambda: server.dispose()) if keep else drop,
    )


# --- the two ways of asking --------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One request: read a patient by id, or search by name or identifier."""

    kind: str  # read | name | identifier
    value: str


def workload(kind: str, rows: Rows, n: int, rng: random.Random) -> list[Ask]:
    if kind == "read":
        return [Ask(kind, rng.choice(rows.home_ids)) for _ in range(n)]
    if kind == "identifier":
        return [Ask(kind, rng.choice(rows.home_mrns)) for _ in range(n)]
    # A clinician types the first letters of a family name.
    return [Ask(kind, rng.choice(FAMILY).lower()[: rng.randint(3, 6)]) for _ in range(n)]


class Bare:
    """The queries the app issues for each request, by hand, through the driver."""

    def __init__(self, loaded: Loaded, audit: bool) -> None:
        self.conn = loaded.connect()
        self.program_id = loaded.program_id
        self.ph = loaded.placeholder
        self.audit = audit
        self.sqlite = loaded.engine == "SQLite"

    def sql(self, statement: str) -> str:
        return statement.replace("?", self.ph)

    def _rows(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(self.sql(statement), params).fetchall())

    def _with_identifiers_and_program(self, patients: list[tuple[Any, ...]]) -> None:
        # What selectinload(Patient.identifiers) and selectinload(Patient.program) add.
        if not patients:
            return
        marks = ", ".join("?" * len(patients))
        self._rows(
            f"SELECT id, patient_id, system, value FROM patient_identifiers WHERE patient_id IN ({marks}) "
            "ORDER BY id",
            [p[0] for p in patients],
        )
        self._rows(
            "SELECT id, code, name, site, time_zone, synthetic, created_at FROM programs WHERE id IN (?)",
            [patients[0][1]],
        )

    def __call__(self, ask: Ask) -> list[str]:
        if ask.kind == "read":
            found = self._rows(SELECT_PATIENT + " WHERE id = ?", [ask.value])
        elif ask.kind == "identifier":
            found = self._rows(
                f"SELECT DISTINCT {PATIENT_FIELDS} FROM patients JOIN patient_identifiers "
                "ON patient_identifiers.patient_id = patients.id "
                "WHERE patients.program_id IN (?) AND patient_identifiers.value = ?" + ORDER_PAGE,
                [self.program_id, ask.value, PAGE + 1],
            )
        else:
            word = ask.value
            found = self._rows(
                SELECT_PATIENT
                + " WHERE program_id IN (?) AND id IN (SELECT patient_id FROM patient_name_words "
                "WHERE word >= ? AND word < ?)"
                + ORDER_PAGE.replace("patients.family_lower,", "patients.family_lower || '',"),
                [self.program_id, word, word + "\uffff", PAGE + 1],
            )
        page = found[:PAGE]
        self._with_identifiers_and_program(page)
        if self.audit:
            stamp: Any = datetime.now(UTC)
            entry_id = self.conn.execute(
                self.sql(
                    "INSERT INTO audit_entries (recorded_at, user_id, actor, role, action, operation, resource_type, "
                    "resource_id, patient_id, outcome, outcome_detail, source_ip, user_agent, channel, query) "
                    "VALUES (?, 1, 'nurse@bench.tandem.test', 'nurse', 'R', ?, 'Patient', ?, ?, '0', '', '127.0.0.1', "
                    "'bench', 'api', ?) RETURNING id"
                ),
                [
                    _sqlite_value(stamp) if self.sqlite else stamp,
                    "read" if ask.kind == "read" else "search",
                    ask.value if ask.kind == "read" else None,
                    page[0][0] if ask.kind == "read" and page else None,
                    "" if ask.kind == "read" else f"{ask.kind}={ask.value}",
                ],
            ).fetchone()[0]
            if ask.kind != "read" and page:  # a search audits every patient it showed
                self.conn.cursor().executemany(
                    self.sql(
                        "INSERT INTO audit_entry_patients (audit_entry_id, patient_id) VALUES (?, ?)"
                    ),
                    [(entry_id, p[0]) for p in page],
                )
        self.conn.commit()  # the app ends every request's transaction too
        return [p[0] for p in page]

    def close(self) -> None:
        self.conn.close()


class App:
    """The API as a FHIR client asks it (httpx, in this process): only to check, before timing,
    that `bare` is the same query as the app's. The timed requests come from bench/loadgen.py."""

    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
            timeout=60,
        )

    def __call__(self, ask: Ask) -> list[str]:
        if ask.kind == "read":
            response = self.http.get(f"/fhir/Patient/{ask.value}")
            response.raise_for_status()
            return [response.json()["id"]]
        response = self.http.get("/fhir/Patient", params={ask.kind: ask.value})
        response.raise_for_status()
        return [entry["resource"]["id"] for entry in response.json().get("entry", [])]

    def close(self) -> None:
        self.http.close()


def check_same_answers(app: App, bare: Bare, asks: list[Ask]) -> None:
    """The baseline must be the same query: same patients, same order, for a sample of requests."""
    for ask in asks:
        got, expected = app(ask), bare(ask)
        if got != expected:
            raise SystemExit(
                f"bare query and app disagree for {ask}: {expected[:3]}... vs {got[:3]}..."
            )


# --- timing ------------------------------------------------------------------------------


@dataclass
class Timing:
    latencies: list[float] = field(default_factory=list)  # ms
    wall: float = 0.0
    errors: int = 0
    server_cpu_ms: float | None = None  # the server's CPU per request (Tandem rows only)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def quantile(self, q: float) -> float:
        return quantile(self.latencies, q)


def timed(
    make: Callable[[], Any], asks: list[Ask], clients: int, warmup: int, max_seconds: float
) -> Timing:
    """The bare runners: each client thread has its own connection and its share of `asks`; a
    row stops early when `max_seconds` have passed, so one slow query cannot hold the whole run."""
    shares = [asks[i::clients] for i in range(clients)]
    ready = threading.Barrier(clients + 1)
    done: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        runner = make()
        try:
            for ask in shares[index][:warmup]:
                runner(ask)
            ready.wait()
            clock, mine = time.perf_counter, done[index]
            deadline = clock() + max_seconds
            for ask in shares[index]:
                if clock() > deadline:
                    break
                start = clock()
                runner(ask)
                mine.append((clock() - start) * 1000)
        except BaseException as exc:  # reported below, after the other threads finish
            errors.append(exc)
            ready.abort()
        finally:
            runner.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return Timing([t for share in done for t in share], wall)


def from_load(result: LoadResult, warmup_requests: int, kind: str | None = None) -> Timing:
    served = result.total + warmup_requests
    return Timing(
        result.latencies(kind),
        result.wall,
        result.errors if kind is None else int(result.kinds[kind]["errors"]),
        result.server_cpu * 1000 / served if served else None,
    )


# --- the requests the load generator sends ---------------------------------------------

FHIR_ACCEPT = {"Accept": "application/fhir+json"}


def fhir_get(path: str, token: str) -> str:
    return request_text("GET", path, {"Authorization": f"Bearer {token}", **FHIR_ACCEPT})


def fhir_requests(asks: list[Ask], token: str) -> list[str]:
    return [
        fhir_get(
            f"/fhir/Patient/{ask.value}"
            if ask.kind == "read"
            else f"/fhir/Patient?{ask.kind}={quote(ask.value)}",
            token,
        )
        for ask in asks
    ]


def new_patients(token: str, n: int, rng: random.Random) -> list[str]:
    """POST /fhir/Patient bodies: synthetic people the nurse registers (the MRN is assigned)."""
    requests = []
    for _ in range(n):
        female = rng.random() < 0.42
        body = {
            "resourceType": "Patient",
            "meta": {  # synthetic data, labelled as FHIR labels it (HL7 v3 ActReason HTEST)
                "security": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": "HTEST",
                    }
                ]
            },
            "name": [
                {
                    "family": rng.choice(FAMILY),
                    "given": [rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)],
                }
            ],
            "gender": "female" if female else "male",
            "birthDate": (date(1960, 1, 1) + timedelta(days=rng.randint(0, 14_000))).isoformat(),
        }
        requests.append(
            request_text(
                "POST",
                "/fhir/Patient",
                {
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/fhir+json",
                    **FHIR_ACCEPT,
                },
                json.dumps(body).encode(),
            )
        )
    return requests


def page_requests(paths: list[str], cookie: str) -> list[str]:
    return [
        request_text("GET", path, {"Cookie": f"tandem_session={cookie}", "Accept": "text/html"})
        for path in paths
    ]


MIX_KINDS = ("read", "search", "write", "list", "chart")
MIX_LABELS = {
    "read": "FHIR read by id",
    "search": "FHIR search ?name=",
    "write": "FHIR create Patient",
    "list": "page /patients",
    "chart": "page chart",
}


def mixed_kinds(loaded: Loaded, weights: dict[str, float], seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}-mixed")
    creds, rows = loaded.credentials, loaded.rows
    n = 2_000
    prefixes = [rng.choice(FAMILY).lower()[: rng.randint(3, 6)] for _ in range(200)]
    lists = ["/patients", "/patients?page=2"] + [f"/patients?q={p}" for p in prefixes[:50]]
    built = {
        "read": (fhir_requests(workload("read", rows, n, rng), creds.read_token), [200]),
        "search": (fhir_requests(workload("name", rows, n, rng), creds.read_token), [200]),
        "write": (new_patients(creds.write_token, 500, rng), [201]),
        "list": (page_requests(lists, creds.session_cookie), [200]),
        "chart": (
            page_requests(
                [f"/patients/{rng.choice(rows.home_ids)}" for _ in range(n)], creds.session_cookie
            ),
            [200],
        ),
    }
    return [
        {
            "name": kind,
            "weight": weights[kind],
            "expect": built[kind][1],
            "requests": built[kind][0],
        }
        for kind in MIX_KINDS
        if weights.get(kind, 0) > 0
    ]


# --- one engine ----------------------------------------------------------------------------


@dataclass
class Line:
    engine: str
    operation: str
    runner: str
    timing: Timing
    clients: int


OPERATIONS = {"read": "read by id", "name": "search ?name=", "identifier": "search ?identifier="}


def bench_baseline(loaded: Loaded, served: Served, args: argparse.Namespace) -> list[Line]:
    """Each FHIR request beside its bare SQL, with and without the audit row, same inputs."""
    lines: list[Line] = []
    warmup = 3
    for kind, label in OPERATIONS.items():
        rng = random.Random(f"{args.seed}-{kind}")
        asks = workload(kind, loaded.rows, args.requests, rng)
        probe_app, probe_bare = App(served.base, loaded.token), Bare(loaded, audit=False)
        check_same_answers(probe_app, probe_bare, workload(kind, loaded.rows, 10, rng))
        probe_app.close()
        probe_bare.close()
        for runner in ("bare", "bare+audit", "Tandem"):
            console.print(f"  {loaded.engine}: {label:<20} {runner:<11}", end="")
            if runner == "Tandem":
                result = run_load(
                    served,
                    [
                        {
                            "name": kind,
                            "weight": 1,
                            "expect": [200],
                            "requests": fhir_requests(asks, loaded.token),
                        }
                    ],
                    args.clients,
                    args.max_seconds,
                    limit=max(1, len(asks) // args.clients),
                    warmup=warmup,
                    seed=args.seed,
                )
                timing = from_load(result, warmup * args.clients, kind)
            else:
                audit = runner == "bare+audit"
                timing = timed(
                    lambda audit=audit: Bare(loaded, audit=audit),  # type: ignore[misc]
                    asks,
                    args.clients,
                    warmup,
                    args.max_seconds,
                )
            console.print(
                f" {timing.rate:8.0f} req/s  p95 {timing.quantile(0.95):8.2f} ms"
                f"  ({len(timing.latencies)} requests, {timing.errors} errors)"
            )
            lines.append(Line(loaded.engine, label, runner, timing, args.clients))
    return lines


def bench_mixed(loaded: Loaded, served: Served, args: argparse.Namespace) -> list[Line]:
    kinds = mixed_kinds(loaded, args.mix, args.seed)
    lines: list[Line] = []
    warmup = 3
    for clients in args.concurrency:
        result = run_load(served, kinds, clients, args.seconds, warmup=warmup, seed=args.seed)
        total = from_load(result, warmup * clients)
        console.print(
            f"  {loaded.engine}: mixed, {clients:>3} clients {total.rate:8.0f} req/s"
            f"  p50 {total.quantile(0.5):7.2f}  p95 {total.quantile(0.95):7.2f}"
            f"  p99 {total.quantile(0.99):7.2f} ms  {total.errors} errors"
            f"  server CPU {total.server_cpu_ms or 0:.1f} ms/req, load generator"
            f" {result.client_cpu * 1000 / max(1, result.total):.2f} ms/req"
        )
        for kind in kinds:
            timing = from_load(result, 0, kind["name"])
            timing.server_cpu_ms = None  # the CPU is measured for the whole mix only
            timing.wall = result.wall
            lines.append(Line(loaded.engine, kind["name"], "mixed", timing, clients))
            for sample in result.kinds[kind["name"]]["samples"]:
                console.print(f"    [red]{kind['name']}[/] {sample[:200]}")
        lines.append(Line(loaded.engine, "all", "mixed", total, clients))
    return lines


# --- the report --------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def _find(lines: list[Line], engine: str, operation: str, runner: str) -> Line | None:
    return next(
        (x for x in lines if (x.engine, x.operation, x.runner) == (engine, operation, runner)),
        None,
    )


def report(
    lines: list[Line], loaded: list[Loaded], args: argparse.Namespace, skipped: dict[str, str]
) -> dict[str, Any]:
    console.print()
    baseline = Table(
        title=f"Baseline: FHIR Patient API, {args.patients:,} patients, up to {args.requests:,} "
        f"requests or {args.max_seconds:g} s per row, {args.clients} concurrent clients; "
        f"`tandem serve --workers {args.workers}`",
    )
    for name, justify in (
        ("Engine", "left"),
        ("Operation", "left"),
        ("Runner", "left"),
        ("n", "right"),
        ("req/s", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("p99 ms", "right"),
        ("× bare+audit p50", "right"),
        ("bare+audit/this req/s", "right"),
        ("server CPU ms/req", "right"),
    ):
        baseline.add_column(name, justify=justify)  # type: ignore[arg-type]
    previous = None
    for line in (x for x in lines if x.runner != "mixed"):
        key = (line.engine, line.operation)
        if previous is not None and key != previous:
            baseline.add_section()
        first, previous = key != previous, key
        ref = _find(lines, line.engine, line.operation, "bare+audit")
        t = line.timing
        baseline.add_row(
            line.engine if first else "",
            line.operation if first else "",
            line.runner,
            f"{len(t.latencies):,}",
            f"{t.rate:,.0f}",
            _ms(t.quantile(0.50)),
            _ms(t.quantile(0.95)),
            _ms(t.quantile(0.99)),
            f"{t.quantile(0.50) / ref.timing.quantile(0.50):.1f}×" if ref else "",
            f"{ref.timing.rate / t.rate:.1f}×" if ref and t.rate else "",
            f"{t.server_cpu_ms:.1f}" if t.server_cpu_ms is not None else "",
            style="bold" if line.runner == "Tandem" else None,
        )
    console.print(baseline)

    mix_text = ", ".join(f"{MIX_LABELS[k]} {w:g}" for k, w in args.mix.items() if w)
    mixed = Table(
        title=f"Mixed workload, {args.seconds:g} s per level, weights: {mix_text}; "
        f"`tandem serve --workers {args.workers}`, load from a separate process",
    )
    for name, justify in (
        ("Engine", "left"),
        ("Clients", "right"),
        ("Request", "left"),
        ("n", "right"),
        ("req/s", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("p99 ms", "right"),
        ("errors", "right"),
        ("× bare+audit p50", "right"),
        ("server CPU ms/req", "right"),
    ):
        mixed.add_column(name, justify=justify)  # type: ignore[arg-type]
    previous = None
    reference = {"read": "read by id", "search": "search ?name="}
    for line in (x for x in lines if x.runner == "mixed"):
        key = (line.engine, line.clients)
        if previous is not None and key != previous:
            mixed.add_section()
        first, previous = key != previous, key
        t = line.timing
        ref_op = reference.get(line.operation)
        ref = _find(lines, line.engine, ref_op, "bare+audit") if ref_op else None
        mixed.add_row(
            line.engine if first else "",
            str(line.clients) if first else "",
            "all" if line.operation == "all" else MIX_LABELS[line.operation],
            f"{len(t.latencies):,}",
            f"{t.rate:,.0f}",
            _ms(t.quantile(0.50)),
            _ms(t.quantile(0.95)),
            _ms(t.quantile(0.99)),
            f"{t.errors:,}",
            f"{t.quantile(0.50) / ref.timing.quantile(0.50):.1f}×" if ref else "",
            f"{t.server_cpu_ms:.1f}" if t.server_cpu_ms is not None else "",
            style="bold" if line.operation == "all" else None,
        )
    console.print(mixed)

    targets = Table(title="Targets")
    for name in ("Engine", "Target", "Measured", "Met"):
        targets.add_column(name)
    verdicts: list[dict[str, Any]] = []

    def target(engine: str, what: str, measured: float | None, unit: str, ok: bool) -> None:
        shown = "not measured" if measured is None else f"{measured:,.1f}{unit}"
        met = "n/a" if measured is None else ("yes" if ok else "NO")
        targets.add_row(engine, what, shown, met, style=None if ok else "red")
        verdicts.append({"engine": engine, "target": what, "measured": measured, "met": met})

    for item in loaded:
        engine = item.engine
        tandem, ref = (
            _find(lines, engine, "read by id", "Tandem"),
            _find(lines, engine, "read by id", "bare+audit"),
        )
        if tandem and ref:
            ratio = tandem.timing.quantile(0.5) / ref.timing.quantile(0.5)
            target(engine, "read by id p50 ≤ 3× bare+audit p50", ratio, "×", ratio <= 3)
            rate_ratio = ref.timing.rate / tandem.timing.rate if tandem.timing.rate else None
            target(
                engine,
                "read by id req/s ≥ ⅓ of bare+audit",
                rate_ratio,
                "× fewer",
                rate_ratio is not None and rate_ratio <= 3,
            )
        for clients, p95_limit in ((8, 50.0), (32, 200.0)):
            line = next(
                (
                    x
                    for x in lines
                    if (x.engine, x.operation, x.runner, x.clients)
                    == (engine, "all", "mixed", clients)
                ),
                None,
            )
            if clients == 8:
                rate = line.timing.rate if line else None
                target(
                    engine, "mixed ≥ 1,000 req/s at 8 clients", rate, " req/s", (rate or 0) >= 1000
                )
            p95 = line.timing.quantile(0.95) if line else None
            target(
                engine,
                f"mixed p95 < {p95_limit:g} ms at {clients} clients",
                p95,
                " ms",
                p95 is not None and p95 < p95_limit,
            )
    console.print(targets)

    for item in loaded:
        console.print(
            f"{item.version}: bulk load of {args.patients:,} patients + identifiers "
            f"in {item.load_seconds:.1f} s"
        )
    for engine, why in skipped.items():
        console.print(f"[yellow]{engine} skipped:[/] {why}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    console.print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs (load average {load} at the "
        f"end); server: `tandem serve --workers {args.workers}` (uvicorn, one process a worker); "
        "client: bench/loadgen.py, one process, keep-alive connections."
    )
    console.print(
        "bare = the SELECTs the app issues, through the same driver, in this process's threads; "
        "bare+audit = those plus the audit INSERT and commit every Tandem read makes; Tandem = "
        "HTTP, token lookup, policy, ORM, FHIR mapping and validation, audit, JSON. Server CPU = "
        "user+system time of every server process over the requests it served (warm-up included)."
    )
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "postgres_url"},
        "lines": [
            {
                "engine": x.engine,
                "operation": x.operation,
                "runner": x.runner,
                "clients": x.clients,
                "n": len(x.timing.latencies),
                "rate": x.timing.rate,
                "p50": x.timing.quantile(0.5),
                "p95": x.timing.quantile(0.95),
                "p99": x.timing.quantile(0.99),
                "errors": x.timing.errors,
                "server_cpu_ms": x.timing.server_cpu_ms,
            }
            for x in lines
        ],
        "targets": verdicts,
        "versions": [item.version for item in loaded],
    }


def _mix(text_: str) -> dict[str, float]:
    weights = {kind: 0.0 for kind in MIX_KINDS}
    for part in text_.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in weights:
            raise argparse.ArgumentTypeError(f"unknown kind {name!r}; use {', '.join(MIX_KINDS)}")
        weights[name.strip()] = float(value)
    return weights


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--patients", type=int, default=10_000, help="patients to load (default 10000)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="tandem serve --workers (default: the CPU count)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=2_000,
        help="baseline: timed requests per row (default 2000)",
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="baseline: concurrent clients (default 4)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="baseline: stop a row after this many seconds even if requests remain (default 30)",
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="mixed: seconds per level (default 30)"
    )
    parser.add_argument(
        "--concurrency",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 8, 32],
        help="mixed: concurrent clients per level (default 1,8,32)",
    )
    parser.add_argument(
        "--mix",
        type=_mix,
        default=_mix("read=40,search=15,write=10,list=15,chart=20"),
        help="mixed: weights (default read=40,search=15,write=10,list=15,chart=20)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2,000 patients, 200 requests per baseline row, 5 s per mixed level",
    )
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_PG,
        help="a database the benchmark may DROP and CREATE (default %(default)s; "
        "env TANDEM_BENCH_POSTGRES_URL)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.patients, args.requests, args.seconds = 2_000, 200, 5.0
    if args.patients < 10 or args.requests < args.clients:
        parser.error("need at least 10 patients and one request per client")

    now = datetime.now(UTC)
    workdir = tempfile.mkdtemp(prefix="tandem-bench-")
    loaded: list[Loaded] = []
    skipped: dict[str, str] = {}
    lines: list[Line] = []

    def run_engine(item: Loaded) -> None:
        console.print(f"  serving with `tandem serve --workers {args.workers}`")
        with serve(item.url, args.workers) as served:
            lines.extend(bench_baseline(item, served, args))
            lines.extend(bench_mixed(item, served, args))

    try:
        if args.engine in ("sqlite", "both"):
            console.print(f"[bold]SQLite[/]: loading {args.patients:,} patients into {workdir}")
            loaded.append(load_sqlite(workdir, args.patients, args.seed, now))
            run_engine(loaded[-1])
        if args.engine in ("postgresql", "both"):
            console.print(
                f"[bold]PostgreSQL[/]: loading {args.patients:,} patients into "
                f"{make_url(args.postgres_url).render_as_string()}"
            )
            result = load_postgres(args.postgres_url, args.patients, args.seed, now, args.keep)
            if isinstance(result, str):
                skipped["PostgreSQL"] = result
            else:
                loaded.append(result)
                run_engine(result)
    finally:
        for item in loaded:
            item.cleanup()
        if args.keep:
            console.print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not lines:
        sys.exit("nothing was measured")
    figures = report(lines, loaded, args, skipped)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
