"""Shared fixtures. Storage and API tests run on SQLite and on PostgreSQL (the real servers).

PostgreSQL: TANDEM_TEST_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test.
When no server answers there, those tests are skipped and the run says so at the end.

Each test gets a database of its own, made from what is built once per run: a copy of a template
file on SQLite; on PostgreSQL a schema holding a replay of the recorded migrations (see
tests/postgres_schemas.py). A test that asks for `world` gets one that already holds the world;
any other test gets an empty, migrated one. Nothing a test does is seen by another: audit entries
are append-only, so no test truncates or deletes; between tests the harness puts a PostgreSQL
schema back as the replay left it and hands it to the next test of the process (unless the test
changed its structure, when it is dropped instead).

Keeping the suite fast (it must stay under 5 minutes on a 2-core machine, `scripts/test`: 4
pytest-xdist workers, `--dist loadgroup`), in order of what it saved:
- PostgreSQL: replaying ~200 DDL statements into a new schema and dropping it afterwards cost
  far more than most tests (clone 4.2 s + drop 1.4 s against 0.4 s for a checkin: fingerprint
  and reset, measured side by side on the shared, loaded machine); with some 600 PostgreSQL
  tests, a reset schema is reused instead. It also spares the catalogs the dead rows that
  thousands of dropped schemas leave, which slow every catalog lookup. A failed test's schema
  is dropped, not reused.
- Built once per run, not once per worker (`once_per_run`): the PostgreSQL recordings (the
  migrations, the world, and the authorization matrix's records, each checked by a replay), the
  SQLite templates and the matrix's seeded SQLite file. The first worker to need one builds it
  under a file lock; the others read it from the run's shared temporary directory.
- tests/access/test_authorization_matrix.py: every cell (route × engine) is a test of its own,
  which `--dist loadgroup` hands to whichever worker is free (only tests marked with an
  `xdist_group` are kept together: the browser tests, which share one live server and one
  Chromium). Each worker that runs cells copies the seeded database once per engine, instead
  of seeding it again (13 callers' sessions and tokens, records of every kind).
- tests/test_crash_durability.py: the kill lands after 15 acknowledged creates (was 40), the
  restart is one worker, and the chain is verified in this process; every acknowledged create
  is still checked, with its audit row, after the kill -9.
- Password hashing is argon2id at its smallest cost (below).
- Page tests (`one_engine`) and the matrix's page form posts run on SQLite only: the storage,
  API and FHIR tests under them run on both engines, and a PostgreSQL test costs the server
  about as much CPU again as the test itself (measured: 181 s of server CPU for 633 s of the
  suite's own, 2 December 2026).
- The browser tests run on two workers (a file's tests together), each with its own copy of one
  demo database built once per run.
- `tandem` commands run in this process (tests/cli_runner.py) unless the process is what is
  tested (serve, kill -9, the installed script): a new interpreter costs seconds of imports.
Where the time goes: `scripts/test --durations=40`, or `--durations=0` on a subset and sum per
file; on a shared machine, CPU rather than wall: `TANDEM_TEST_CPU_LOG=/tmp/cpu.log scripts/test`
appends each test's CPU seconds (a child process's CPU counts where it is reaped). Starting `tandem` as a process of its own costs seconds (imports), so a test does it only
where the process is what it tests (serve, kill -9, the CLI as an operator runs it).

Safe under pytest-xdist: files are per test, schema names carry the worker's pid, and the
workers report to the controller whether PostgreSQL was there.
"""

from __future__ import annotations

import copy
import fcntl
import os
import pickle
import re
import resource
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from tandem.settings import Settings
from tandem.storage.db import make_engine, make_sessionmaker
from tandem.storage.migrate import upgrade
from tests.postgres_schemas import SchemaCloner, Statement

T = TypeVar("T")

# Every FHIR resource the app sends in a test is validated against fhir.resources (servers skip
# it for speed; see tandem.fhir.output). Set before any Settings is read, servers started by
# tests inherit it.
os.environ.setdefault("TANDEM_VALIDATE_FHIR_OUTPUT", "true")

PG_URL = os.environ.get(
    "TANDEM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_pg_state: dict[str, object] = {}


def postgres_available() -> tuple[bool, str]:
    if "ok" not in _pg_state:
        try:
            engine = make_engine(PG_URL, connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(text("select 1"))
            engine.dispose()
            _pg_state.update(ok=True, why="")
        except Exception as exc:  # any failure to connect means: no PostgreSQL here
            _pg_state.update(ok=False, why=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return bool(_pg_state["ok"]), str(_pg_state["why"])


# --- pytest-xdist: the workers probe PostgreSQL, the controller prints the verdict -------------


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and "ok" in _pg_state:  # an xdist worker: tell the controller
        workeroutput["tandem_postgres"] = dict(_pg_state)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # type: ignore[no-untyped-def]
    """Controller side of pytest-xdist: a worker finished; keep what it learnt of PostgreSQL."""
    state = getattr(node, "workeroutput", {}).get("tandem_postgres")
    if state and (not state["ok"] or "ok" not in _pg_state):
        _pg_state.update(state)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """Last in the summary (after the slowest durations and the short summary), so that it is
    seen; in the controller under pytest-xdist."""
    yield
    if "ok" in _pg_state and not _pg_state["ok"]:
        terminalreporter.write_sep("!", "PostgreSQL SKIPPED", red=True, bold=True)
        terminalreporter.write_line(
            f"No PostgreSQL at {PG_URL} ({_pg_state['why']}): every PostgreSQL storage and API test was "
            "SKIPPED. Start the server or set TANDEM_TEST_POSTGRES_URL."
        )
    elif _pg_state.get("ok"):
        terminalreporter.write_line(f"PostgreSQL tests ran against {PG_URL}.")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `one_engine` run on SQLite only: page tests, whose storage and API run on
    both engines in their own tests (the suite must stay under 5 minutes on 2 CPUs, and each
    PostgreSQL test costs the server about as much CPU again as the test itself)."""
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        on_postgres = "postgresql" in (params.get("database_url"), params.get("matrix"))
        (dropped if on_postgres and item.get_closest_marker("one_engine") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):  # type: ignore[no-untyped-def]
    """With TANDEM_TEST_CPU_LOG=<file>: append each test's CPU seconds (this process and the
    processes it waited for, setup and teardown included) and its id, to find what makes the
    suite long on a shared machine, where wall times mostly measure the queue for a CPU."""
    log = os.environ.get("TANDEM_TEST_CPU_LOG")
    if not log:
        return (yield)
    before = _cpu_seconds()
    try:
        return (yield)
    finally:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{_cpu_seconds() - before:.3f}\t{item.nodeid}\n")


def _cpu_seconds() -> float:
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Keep each phase's report on the test, for fixtures to see in their teardown whether the
    test failed."""
    report = yield
    item.__dict__.setdefault("tandem_reports", {})[report.when] = report
    return report


@pytest.fixture(scope="session", autouse=True)
def _state_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tandem's state directory (where it keeps the key secret when none is configured) in the
    run's temporary directory, shared by the xdist workers and the processes tests start: a
    test run never writes to the runner's home."""
    if os.environ.get("XDG_STATE_HOME"):
        yield
        return
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ["XDG_STATE_HOME"] = str(shared / "state")
    yield
    del os.environ["XDG_STATE_HOME"]


@pytest.fixture(scope="session", autouse=True)
def _quick_password_hashing() -> Iterator[None]:
    """argon2id still, with the smallest cost: a test creates many users and tries unknown
    e-mails (checked against a dummy hash). Production keeps the library's recommended
    parameters (tandem.access.credentials)."""
    from argon2 import PasswordHasher

    from tandem.access import credentials

    original = credentials._hasher
    # An unknown e-mail is checked against a hash made by the hasher in use (same cost).
    credentials._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    yield
    credentials._hasher = original


@dataclass
class World:
    """Two programs, a user of every role in program A, a nurse in B, patients in both."""

    program_a: int = 0
    program_b: int = 0
    unit_a_detox: int = 0
    unit_b: int = 0
    patient_a: str = ""
    patient_a2: str = ""
    patient_b: str = ""
    passwords: dict[str, str] = field(default_factory=dict)

    def email(self, name: str) -> str:
        return f"{name}@test.tandem.test"


# --- templates: built once per test process -----------------------------------------------


def sqlite_checkpoint(engine: Engine) -> None:
    """Fold the WAL into the main file, so that copying that one file copies the database."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()


def once_per_run(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]
) -> T:
    """What `build` returns, built once for the whole run: under pytest-xdist the first worker
    to ask builds it (in a directory every worker of this run shares) while the others wait,
    then they read what it left there (pickled). `build` gets a directory for its files."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    # Workers' base temporary directories are popen-gw<N> under the run's own one.
    shared = tmp_path_factory.getbasetemp().parent / "once-per-run"
    shared.mkdir(exist_ok=True)
    with (shared / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        done = shared / f"{name}.pickle"
        if done.exists():
            value: T = pickle.loads(done.read_bytes())  # noqa: S301 - written by this run
            return value
        directory = shared / name
        shutil.rmtree(directory, ignore_errors=True)  # a worker that failed half-way
        directory.mkdir()
        value = build(directory)
        partial = done.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(value))
        partial.rename(done)
        return value


def _migrated_sqlite(directory: Path) -> Path:
    path = directory / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    sqlite_checkpoint(engine)
    return path


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite database file (copied, never opened, by the tests)."""
    return once_per_run(tmp_path_factory, "sqlite-template", _migrated_sqlite)


@pytest.fixture(scope="session")
def sqlite_world_template(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, _quick_password_hashing: None
) -> tuple[Path, World]:
    """A migrated SQLite database file holding the world, and the world's ids."""

    def build(directory: Path) -> tuple[Path, World]:
        path = directory / "world.db"
        shutil.copy(sqlite_template, path)
        engine = make_engine(f"sqlite:///{path}")
        built = build_world(make_sessionmaker(engine))
        sqlite_checkpoint(engine)
        return path, built

    return once_per_run(tmp_path_factory, "sqlite-world", build)


@dataclass
class PostgresClones:
    cloner: SchemaCloner
    world: World


@pytest.fixture(scope="session")
def postgres_schemas(
    tmp_path_factory: pytest.TempPathFactory, _quick_password_hashing: None
) -> Iterator[PostgresClones]:
    """Recordings of the migrations and of the world (made once per run), replayed into a schema
    that each test gets reset to what they made (tests/postgres_schemas.py)."""
    ok, why = postgres_available()
    if not ok:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {why}")

    def record(_: Path) -> tuple[dict[str, list[Statement]], World]:
        recorder = SchemaCloner(PG_URL)
        try:
            built = recorder.record(
                {
                    "migrations": upgrade,
                    "world": lambda engine: build_world(make_sessionmaker(engine)),
                },
                make_engine,
            )
        finally:
            recorder.close()
        assert isinstance(built["world"], World)
        return recorder.recordings, built["world"]

    recordings, built = once_per_run(tmp_path_factory, "postgres-recordings", record)
    cloner = SchemaCloner(PG_URL)
    cloner.recordings = recordings
    yield PostgresClones(cloner, built)
    cloner.close()


# --- a database of each test's own --------------------------------------------------------

_worlds: dict[str, World] = {}  # database URL -> the world its template holds


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """A database of this test's own on each engine, migrated: holding the world when the test
    asks for `world`, empty otherwise."""
    seeded = "world" in request.fixturenames
    if request.param == "sqlite":
        template, built = sqlite_template, None
        if seeded:
            template, built = request.getfixturevalue("sqlite_world_template")
        path = tmp_path / "tandem.db"
        shutil.copy(template, path)
        url = f"sqlite:///{path}"
        if built is not None:
            _worlds[url] = built
        yield url
        _worlds.pop(url, None)
        return
    postgres: PostgresClones = request.getfixturevalue("postgres_schemas")
    steps = ("migrations", "world") if seeded else ("migrations",)
    schema = postgres.cloner.checkout(*steps)
    url = postgres.cloner.url(schema)
    if seeded:
        _worlds[url] = postgres.world
    yield url
    _worlds.pop(url, None)
    # A failed test may have left work under way in it (a request still running): never reused.
    failed = any(report.failed for report in getattr(request.node, "tandem_reports", {}).values())
    postgres.cloner.checkin(schema, *steps, reuse=not failed)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def world(database_url: str, sessions: sessionmaker[Session]) -> World:
    """The world, already in the test's database (cloned from a template that holds it)."""
    built = _worlds.get(database_url)
    if built is None:  # a database that did not come from a world template
        built = build_world(sessions)
    return copy.deepcopy(built)


def build_world(sessions: sessionmaker[Session]) -> World:
    """Create the world's programs, units, patients and users in an empty, migrated database."""
    from tandem.access import accounts
    from tandem.storage.db import session_scope
    from tandem.storage.models import Patient, PatientIdentifier

    w = World()
    with session_scope(sessions) as db:
        a = accounts.create_program(db, "alpha", "Alpha Detox", time_zone="America/New_York")
        b = accounts.create_program(db, "bravo", "Bravo Outpatient", time_zone="Europe/Paris")
        w.program_a, w.program_b = a.id, b.id
        w.unit_a_detox = accounts.add_unit(db, a, "detox", "Alpha detox", "detox").id
        accounts.add_unit(db, a, "outpatient", "Alpha outpatient", "outpatient")
        w.unit_b = accounts.add_unit(db, b, "outpatient", "Bravo outpatient", "outpatient").id
        patients = []
        for program, family, given, mrn in (
            (a, "Rivera", "Ana", "ALP-1"),
            (a, "Okafor", "Kofi", "ALP-2"),
            (b, "Novak", "Ivan", "BRA-1"),
        ):
            patient = Patient(
                program_id=program.id,
                family=family,
                given=given,
                family_lower=family.lower(),
                given_lower=given.lower(),
                gender="female" if given == "Ana" else "male",
            )
            patient.identifiers.append(PatientIdentifier(system=program.mrn_system, value=mrn))
            db.add(patient)
            patients.append(patient)
        db.flush()
        w.patient_a, w.patient_a2, w.patient_b = (p.id for p in patients)
        for role in ("admin", "prescriber", "nurse", "counselor", "researcher", "patient"):
            w.passwords[role] = f"pw-{role}-0123456789"
            accounts.create_user(
                db,
                w.email(role),
                role.title(),
                role,
                w.passwords[role],
                [a.id],
                w.patient_a if role == "patient" else None,
            )
        w.passwords["nurse_b"] = "pw-nurse-b-0123456789"
        accounts.create_user(
            db, w.email("nurse_b"), "Nurse B", "nurse", w.passwords["nurse_b"], [b.id]
        )
        w.passwords["prescriber_b"] = "pw-prescriber-b-0123456789"
        accounts.create_user(
            db,
            w.email("prescriber_b"),
            "Prescriber B",
            "prescriber",
            w.passwords["prescriber_b"],
            [b.id],
        )
        w.passwords["patient2"] = "pw-patient2-0123456789"
        accounts.create_user(
            db,
            w.email("patient2"),
            "Patient Two",
            "patient",
            w.passwords["patient2"],
            [a.id],
            w.patient_a2,
        )
    return w


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        cookie_secure=True,
        login_max_failures=3,
        login_window_minutes=15,
        session_idle_minutes=30,
        login_slowdown_ms=0,  # tests/web/test_sign_in_limits.py times the slowing
    )


@pytest.fixture
def client(settings: Settings, world: World) -> Iterator[TestClient]:
    from tandem.web.app import create_app

    app = create_app(settings)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as test_client:
        yield test_client
    app.state.engine.dispose()


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def sign_in(client: TestClient, email: str, password: str) -> str:
    """Sign in through the login form; returns the CSRF token of the signed-in session."""
    page = client.get("/login")
    response = client.post(
        "/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": csrf_from(page.text),
            "next": "/patients",
        },
    )
    assert response.status_code == 303, response.text
    landing = client.get(response.headers["location"])
    return csrf_from(landing.text)


def make_token(sessions: sessionmaker[Session], email: str, *scopes: str) -> str:
    from sqlalchemy import select

    from tandem.access.credentials import create_token
    from tandem.storage.db import session_scope, utcnow
    from tandem.storage.models import User

    with session_scope(sessions) as db:
        user = db.scalar(select(User).where(User.email == email))
        secret, _ = create_token(db, user, list(scopes), "test", utcnow())
    return secret
