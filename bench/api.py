"""FHIR Patient read and search: Tandem over HTTP beside the same SQL on the bare driver.

    .venv/bin/python bench/api.py               # 100,000 patients, SQLite and PostgreSQL
    .venv/bin/python bench/api.py --quick       # 2,000 patients, fewer requests: a smoke run

For each engine it bulk-loads the patients (executemany on SQLite, COPY on PostgreSQL) into a
freshly migrated database, starts the real app under uvicorn on a loopback port in a thread, and
drives it with httpx clients that keep their connections alive. In the same run, on the same
database and with the same inputs, it times the queries the app issues through the same driver
(sqlite3 / psycopg) with no framework at all, so the overhead is a ratio. See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tandem.access import accounts
from tandem.access.credentials import create_token
from tandem.demo.names import FAMILY, GIVEN_FEMALE, GIVEN_MALE
from tandem.settings import Settings
from tandem.storage.db import (
    make_engine,
    make_sessionmaker,
    refresh_planner_statistics,
    session_scope,
)
from tandem.storage.migrate import upgrade
from tandem.storage.models import name_words

console = Console(width=None if sys.stdout.isatty() else 120)  # a log file gets the whole table
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
    token: str
    program_id: int
    rows: Rows
    load_seconds: float
    version: str
    connect: Callable[[], Any]  # a bare DB-API connection, as the app's pool would open it
    placeholder: str  # "?" (sqlite3) or "%s" (psycopg)
    cleanup: Callable[[], None] = lambda: None


def _platform_rows(url: str) -> tuple[tuple[int, str], tuple[int, str], str]:
    """Migrate, then make two programs, a nurse in the first, and her read-only token (via the ORM)."""
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(make_sessionmaker(engine)) as db:
        home = accounts.create_program(db, "bench", "Bench Detox (synthetic)", synthetic=True)
        other = accounts.create_program(
            db, "elsewhere", "Elsewhere Outpatient (synthetic)", synthetic=True
        )
        nurse = accounts.create_user(
            db, "nurse@bench.tandem.test", "Bench Nurse", "nurse", "bench-password-1", [home.id]
        )
        token, _ = create_token(db, nurse, ["user/Patient.rs"], "bench", datetime.now(UTC))
        result = (home.id, home.code), (other.id, other.code), token
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
    home, other, token = _platform_rows(url)
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
        token,
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
    home, other, token = _platform_rows(url)
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
        token,
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
            self.conn.execute(
                self.sql(
                    "INSERT INTO audit_entries (recorded_at, user_id, actor, role, action, operation, resource_type, "
                    "resource_id, patient_id, outcome, outcome_detail, source_ip, user_agent, channel, query) "
                    "VALUES (?, 1, 'nurse@bench.tandem.test', 'nurse', 'R', ?, 'Patient', ?, ?, '0', '', '127.0.0.1', "
                    "'bench', 'api', ?)"
                ),
                [
                    _sqlite_value(stamp) if self.sqlite else stamp,
                    "read" if ask.kind == "read" else "search",
                    ask.value if ask.kind == "read" else None,
                    page[0][0] if len(page) == 1 else None,
                    "" if ask.kind == "read" else f"{ask.kind}={ask.value}",
                ],
            )
        self.conn.commit()  # the app ends every request's transaction too
        return [p[0] for p in page]

    def close(self) -> None:
        self.conn.close()


class App:
    """The same request as a FHIR client sends it, over HTTP with keep-alive."""

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


@contextmanager
def live_app(database_url: str) -> Iterator[str]:
    import uvicorn

    from tandem.web.app import create_app

    app = create_app(Settings(database_url=database_url, cookie_secure=True))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        app.state.engine.dispose()


# --- timing ------------------------------------------------------------------------------


@dataclass
class Timing:
    latencies: list[float] = field(default_factory=list)  # seconds
    wall: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall

    def quantile(self, q: float) -> float:
        return (
            statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q * 100) - 1] * 1000
        )


def timed(
    make: Callable[[], Any], asks: list[Ask], clients: int, warmup: int, max_seconds: float
) -> Timing:
    """Each client thread has its own connection (HTTP or DB) and its share of `asks`; a row stops
    early when `max_seconds` have passed, so one slow query cannot hold the whole run."""
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
                mine.append(clock() - start)
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


def check_same_answers(app: App, bare: Bare, asks: list[Ask]) -> None:
    """The baseline must be the same query: same patients, same order, for a sample of requests."""
    for ask in asks:
        got, expected = app(ask), bare(ask)
        if got != expected:
            raise SystemExit(
                f"bare query and app disagree for {ask}: {expected[:3]}... vs {got[:3]}..."
            )


@dataclass
class Line:
    engine: str
    operation: str
    runner: str
    timing: Timing


OPERATIONS = {"read": "read by id", "name": "search ?name=", "identifier": "search ?identifier="}


def bench_engine(
    loaded: Loaded, requests: int, clients: int, seed: int, max_seconds: float
) -> list[Line]:
    lines: list[Line] = []
    warmup = 3
    with live_app(loaded.url) as base:
        for kind, label in OPERATIONS.items():
            rng = random.Random(f"{seed}-{kind}")
            asks = workload(kind, loaded.rows, requests, rng)
            probe_app, probe_bare = App(base, loaded.token), Bare(loaded, audit=False)
            check_same_answers(probe_app, probe_bare, workload(kind, loaded.rows, 10, rng))
            probe_app.close()
            probe_bare.close()
            for runner, make in (
                ("bare", lambda: Bare(loaded, audit=False)),
                ("bare+audit", lambda: Bare(loaded, audit=True)),
                ("Tandem", lambda: App(base, loaded.token)),
            ):
                console.print(f"  {loaded.engine}: {label:<20} {runner:<11}", end="")
                timing = timed(make, asks, clients, warmup, max_seconds)
                console.print(
                    f" {timing.rate:8.0f} req/s  p95 {timing.quantile(0.95):8.2f} ms"
                    f"  ({len(timing.latencies)} requests)"
                )
                lines.append(Line(loaded.engine, label, runner, timing))
    return lines


def report(
    lines: list[Line], loaded: list[Loaded], args: argparse.Namespace, skipped: dict[str, str]
) -> None:
    table = Table(
        title=f"FHIR Patient API, {args.patients:,} patients, up to {args.requests:,} requests or "
        f"{args.max_seconds:g} s per row, {args.clients} client thread{'s' if args.clients > 1 else ''}",
        show_lines=False,
    )
    for name, justify in (
        ("Engine", "left"),
        ("Operation", "left"),
        ("Runner", "left"),
        ("n", "right"),
        ("req/s", "right"),
        ("p50 ms", "right"),
        ("p95 ms", "right"),
        ("× bare p50", "right"),
        ("× bare p95", "right"),
        ("bare/this req/s", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    previous = None
    for line in lines:
        bare = next(
            b
            for b in lines
            if (b.engine, b.operation, b.runner) == (line.engine, line.operation, "bare")
        )
        key = (line.engine, line.operation)
        if previous is not None and key != previous:
            table.add_section()
        first = key != previous
        previous = key
        is_app = line.runner.startswith("Tandem")
        style = "bold" if is_app else None
        t, b = line.timing, bare.timing
        table.add_row(
            line.engine if first else "",
            line.operation if first else "",
            line.runner,
            f"{len(t.latencies):,}",
            f"{t.rate:,.0f}",
            f"{t.quantile(0.50):.2f}",
            f"{t.quantile(0.95):.2f}",
            f"{t.quantile(0.50) / b.quantile(0.50):.1f}×",
            f"{t.quantile(0.95) / b.quantile(0.95):.1f}×",
            f"{b.rate / t.rate:.1f}×",
            style=style,
        )
    console.print()
    console.print(table)
    for item in loaded:
        console.print(
            f"{item.version}: bulk load of {args.patients:,} patients + identifiers "
            f"in {item.load_seconds:.1f} s"
        )
    for engine, why in skipped.items():
        console.print(f"[yellow]{engine} skipped:[/] {why}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    console.print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs (load average {load} at the end), "
        "client and server in one process (uvicorn in a thread)."
    )
    console.print(
        "bare = the SELECTs the app issues, through the same driver; bare+audit = those plus the "
        "audit INSERT and commit every Tandem read makes; Tandem = HTTP, token lookup, policy, ORM, "
        "FHIR mapping and validation, audit, JSON. × columns: each row over bare."
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--patients", type=int, default=100_000, help="patients to load (default 100000)"
    )
    parser.add_argument(
        "--requests", type=int, default=2_000, help="timed requests per row (default 2000)"
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent client threads (default 4)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="stop a row after this many seconds even if requests remain (default 30)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2,000 patients, 200 requests per row"
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
    args = parser.parse_args(argv)
    if args.quick:
        args.patients, args.requests = 2_000, 200
    if args.patients < 10 or args.requests < args.clients:
        parser.error("need at least 10 patients and one request per client")

    now = datetime.now(UTC)
    workdir = tempfile.mkdtemp(prefix="tandem-bench-")
    loaded: list[Loaded] = []
    skipped: dict[str, str] = {}
    lines: list[Line] = []
    try:
        if args.engine in ("sqlite", "both"):
            console.print(f"[bold]SQLite[/]: loading {args.patients:,} patients into {workdir}")
            loaded.append(load_sqlite(workdir, args.patients, args.seed, now))
            lines += bench_engine(
                loaded[-1], args.requests, args.clients, args.seed, args.max_seconds
            )
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
                lines += bench_engine(
                    result, args.requests, args.clients, args.seed, args.max_seconds
                )
    finally:
        for item in loaded:
            item.cleanup()
        if args.keep:
            console.print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not lines:
        sys.exit("nothing was measured")
    report(lines, loaded, args, skipped)


if __name__ == "__main__":
    main()
