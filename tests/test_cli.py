"""The `tandem` console script, run as an operator runs it: a subprocess with TANDEM_DATABASE_URL.

init, demo, token create|list|revoke, backup and restore, on SQLite and on a PostgreSQL database
of their own (created here and dropped at the end, so `pg_restore --clean` never touches the
shared `test` database the other suites use).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from tandem.settings import Settings
from tandem.storage.db import make_engine
from tandem.storage.models import Patient, PatientIdentifier
from tests.cli_runner import run_init, run_tandem
from tests.conftest import PG_URL, postgres_available, sign_in

pytestmark = pytest.mark.slow

TANDEM = str(Path(sys.executable).with_name("tandem"))
ADMIN = ("Head.Nurse@clinic.example", "Hana Admin", "correct-horse-battery")
FHIR_JSON = "application/fhir+json"


def tandem(
    database_url: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return run_tandem(database_url, *args, cwd=cwd)


def tandem_script(
    database_url: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The installed `tandem` script in a process of its own."""
    env = {**os.environ, "TANDEM_DATABASE_URL": database_url, "COLUMNS": "200"}
    return subprocess.run(
        [TANDEM, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,  # noqa: S603
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    return result


def said(text_: str) -> str:
    """What the terminal showed, with Rich's line wrapping undone."""
    return " ".join(text_.split())


@contextmanager
def web(database_url: str) -> Iterator[TestClient]:
    from tandem.web.app import create_app

    app = create_app(Settings(database_url=database_url, cookie_secure=True))
    try:
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
            yield client
    finally:
        app.state.engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON}


def demo_patients(database_url: str) -> list[tuple[str, str, str, str]]:
    """Every patient as (family, given, MRN, birth date), in a stable order."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Patient.family, Patient.given, PatientIdentifier.value, Patient.birth_date)
                .join(PatientIdentifier, PatientIdentifier.patient_id == Patient.id)
                .order_by(PatientIdentifier.value)
            ).all()
    finally:
        engine.dispose()
    return [(f, g, mrn, str(born)) for f, g, mrn, born in rows]


def scalar(database_url: str, statement: str) -> object:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(statement)).scalar()
    finally:
        engine.dispose()


# --- databases -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_postgres() -> Iterator[str]:
    """A PostgreSQL database of this module's own, dropped when the module is done."""
    available, why = postgres_available()
    if not available:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {why}")
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore are not installed (apt-get install postgresql-client)")
    name = f"tandem_cli_test_{os.getpid()}"
    server = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def cli_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no tables at all): the CLI has to create everything itself."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tandem.db'}"
    url: str = request.getfixturevalue("cli_postgres")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


# --- tandem init -------------------------------------------------------------------------


def test_init_creates_the_database_and_an_admin_who_can_sign_in(cli_db: str) -> None:
    email, _, password = ADMIN
    result = ok(
        run_init(
            cli_db,
            ADMIN,
            "--program-code",
            "eastside",
            "--program-name",
            "Eastside Detox",
            "--time-zone",
            "America/New_York",
        )
    )
    assert email in said(result.stdout)

    with web(cli_db) as client:
        sign_in(client, email, password)  # typed as given to init, capitals and all
        programs = client.get("/admin/programs")
        assert programs.status_code == 200, "the first user is an administrator"
        assert "Eastside Detox" in programs.text


def test_second_init_with_the_same_email_exits_2_and_changes_nothing(cli_db: str) -> None:
    email = ADMIN[0]
    ok(run_init(cli_db, ADMIN))

    again = tandem(
        cli_db,
        "init",
        "--admin-email",
        email.upper(),
        "--admin-name",
        "Someone Else",
        "--admin-password",
        "another-password-123",
        "--program-code",
        "second",
    )

    assert again.returncode == 2
    assert "already exists" in said(again.stderr)
    assert again.stdout == ""
    assert scalar(cli_db, "SELECT count(*) FROM users") == 1
    assert scalar(cli_db, "SELECT count(*) FROM programs") == 1


def test_init_refuses_a_short_password_naming_the_flag(cli_db: str) -> None:
    result = tandem(
        cli_db,
        "init",
        "--admin-email",
        "a@clinic.example",
        "--admin-name",
        "A",
        "--admin-password",
        "short",
    )
    assert result.returncode == 2
    assert "--admin-password" in said(result.stderr)
    assert "10 characters" in said(result.stderr)


# --- tandem demo -------------------------------------------------------------------------

LOGIN_LINE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+ \S{10,}$")


def test_demo_on_an_empty_database_prints_only_logins_and_each_one_signs_in(cli_db: str) -> None:
    result = ok(tandem(cli_db, "demo", "--patients", "40", "--seed", "3"))

    lines = result.stdout.splitlines()
    assert lines, "no logins printed"
    assert [line for line in lines if not LOGIN_LINE.match(line)] == [], (
        "stdout holds more than logins"
    )
    logins = dict(line.split(" ") for line in lines)
    assert len(logins) == len(lines) >= 6
    assert any(e.startswith("admin@") for e in logins) and any(
        e.startswith("patient@") for e in logins
    )

    with web(cli_db) as client:
        for email, password in logins.items():
            client.cookies.clear()
            sign_in(client, email, password)

    assert scalar(cli_db, "SELECT count(*) FROM patients") == 40
    assert scalar(cli_db, "SELECT count(*) FROM patients WHERE NOT synthetic") == 0
    assert scalar(cli_db, "SELECT count(*) FROM programs WHERE NOT synthetic") == 0


def test_demo_patients_are_tagged_synthetic_in_the_fhir_api(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    logins = dict(
        line.split(" ")
        for line in ok(tandem(url, "demo", "--patients", "15", "--seed", "3")).stdout.splitlines()
    )
    admin = next(e for e in logins if e.startswith("admin@"))
    token = ok(
        tandem(url, "token", "create", "--user", admin, "--scope", "user/Patient.rs")
    ).stdout.strip()

    with web(url) as client:
        bundle = client.get("/fhir/Patient", params={"_count": "50"}, headers=bearer(token)).json()

    assert len(bundle["entry"]) == 15
    for entry in bundle["entry"]:
        tags = entry["resource"]["meta"].get("security", [])
        assert {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": "HTEST",
            "display": "test health data",
        } in tags
        assert "synthetic" in entry["resource"]["managingOrganization"]["display"]


def test_demo_is_deterministic_for_a_seed_and_differs_across_seeds(tmp_path: Path) -> None:
    first, again, other = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db", "c.db"))
    for url, seed in ((first, "3"), (again, "3"), (other, "4")):
        ok(tandem(url, "demo", "--patients", "40", "--seed", seed))

    assert len(demo_patients(first)) == 40
    assert demo_patients(first) == demo_patients(again)
    names = {(family, given) for family, given, _, _ in demo_patients(first)}
    other_names = {(family, given) for family, given, _, _ in demo_patients(other)}
    assert names != other_names
    assert demo_patients(first) != demo_patients(other)


# --- tandem token ------------------------------------------------------------------------


@pytest.fixture
def demo_db(cli_db: str) -> tuple[str, dict[str, str]]:
    result = ok(tandem(cli_db, "demo", "--patients", "12", "--seed", "9"))
    return cli_db, dict(line.split(" ") for line in result.stdout.splitlines())


def test_token_create_prints_only_the_token_which_works_until_revoked(
    demo_db: tuple[str, dict[str, str]],
) -> None:
    url, _ = demo_db
    created = ok(
        tandem(
            url,
            "token",
            "create",
            "--user",
            "nurse@demo.tandem.test",
            "--scope",
            "user/Patient.rs",
            "--label",
            "lab interface",
        )
    )
    assert created.stdout.count("\n") == 1
    token = created.stdout.strip()
    assert token and " " not in token

    with web(url) as client:
        found = client.get("/fhir/Patient", headers=bearer(token))
        assert found.status_code == 200, found.text
        patient_id = found.json()["entry"][0]["resource"]["id"]
        assert client.get(f"/fhir/Patient/{patient_id}", headers=bearer(token)).status_code == 200
        write = client.post(
            "/fhir/Patient",
            headers=bearer(token),
            json={"resourceType": "Patient", "name": [{"family": "Nope"}]},
        )
        assert write.status_code == 403, "a read-only token must not create patients"

    listed = ok(tandem(url, "token", "list"))
    assert token not in listed.stdout, "token list must never show the secret"
    assert "nurse@demo.tandem.test" in listed.stdout

    ok(tandem(url, "token", "revoke", token))
    with web(url) as client:
        refused = client.get("/fhir/Patient", headers=bearer(token))
    assert refused.status_code == 401
    assert refused.json()["resourceType"] == "OperationOutcome"


def test_token_revoke_by_listed_id(demo_db: tuple[str, dict[str, str]]) -> None:
    url, _ = demo_db
    token = ok(
        tandem(
            url, "token", "create", "--user", "nurse@demo.tandem.test", "--scope", "user/Patient.rs"
        )
    ).stdout.strip()
    listed = ok(tandem(url, "token", "list")).stdout.splitlines()
    (token_id,) = [
        line.split("\t")[0] for line in listed if line.split("\t")[1].rstrip("…") == token[:10]
    ]

    ok(tandem(url, "token", "revoke", token_id))

    with web(url) as client:
        assert client.get("/fhir/Patient", headers=bearer(token)).status_code == 401
    assert "revoked" in ok(tandem(url, "token", "list")).stdout


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite database after `tandem init`, shared by tests that must leave it unchanged."""
    url = f"sqlite:///{tmp_path_factory.mktemp('initialised') / 'tandem.db'}"
    ok(run_init(url, ADMIN))
    return url


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--scope", "user/Patient.readall"], "user/Patient.readall"),
        (["--scope", "user/Patient.rs", "--scope", "Patient.rs"], "Patient.rs"),
        (["--scope", "patient/*.rs"], "patient/"),
    ],
)
def test_token_create_refuses_a_bad_scope_naming_it(
    initialised: str, args: list[str], named: str
) -> None:
    url = initialised
    result = tandem(url, "token", "create", "--user", ADMIN[0], *args)

    assert result.returncode == 2
    assert result.stdout == ""
    assert named in said(result.stderr)
    assert scalar(url, "SELECT count(*) FROM api_tokens") == 0


def test_token_create_for_an_unknown_user_exits_2(initialised: str) -> None:
    url = initialised
    result = tandem(
        url, "token", "create", "--user", "nobody@clinic.example", "--scope", "user/Patient.rs"
    )
    assert result.returncode == 2
    assert "nobody@clinic.example" in said(result.stderr)
    assert result.stdout == ""
    assert scalar(url, "SELECT count(*) FROM api_tokens") == 0


# --- tandem backup / restore -------------------------------------------------------------


def test_backup_then_restore_brings_the_data_back_but_keeps_revocations(
    demo_db: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, logins = demo_db
    token = ok(
        tandem(
            url,
            "token",
            "create",
            "--user",
            "nurse@demo.tandem.test",
            "--scope",
            "user/Patient.cruds",
        )
    ).stdout.strip()
    kept_token = ok(
        tandem(url, "token", "create", "--user", "nurse@demo.tandem.test", "--scope", "user/*.rs")
    ).stdout.strip()
    with web(url) as client:  # a session open at the backup, signed out after it
        csrf = sign_in(client, "nurse@demo.tandem.test", logins["nurse@demo.tandem.test"])
        session_cookie = dict(client.cookies)
    before = demo_patients(url)
    backup = tmp_path / "backups" / "tandem.backup"
    backup.parent.mkdir()

    ok(tandem(url, "backup", str(backup)))
    again = tandem(url, "backup", str(backup))
    assert again.returncode == 2 and "exists" in said(again.stderr), (
        "backup must not overwrite a file"
    )
    assert backup.stat().st_mode & 0o777 == 0o600, "a backup is readable by its owner only"

    # The day goes on: a patient is registered, the token is revoked, the nurse signs out.
    with web(url) as client:
        created = client.post(
            "/fhir/Patient",
            headers=bearer(token),
            json={"resourceType": "Patient", "name": [{"family": "Afterbackup", "given": ["Al"]}]},
        )
        assert created.status_code == 201, created.text
        client.cookies.update(session_cookie)
        assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    ok(tandem(url, "token", "revoke", token))
    assert len(demo_patients(url)) == len(before) + 1

    # The backup is one self-contained file: move it alone somewhere else and restore from there.
    moved = tmp_path / "elsewhere" / "copy.backup"
    moved.parent.mkdir()
    shutil.move(backup, moved)
    if url.startswith("sqlite"):  # a SQLite backup is a plain database file anyone can open
        assert demo_patients(f"sqlite:///{moved}") == before
    restored = ok(tandem(url, "restore", str(moved), "--yes"))
    told = said(restored.stdout)
    assert "Restored" in told
    assert re.search(r"Rolled back: \d+ records written between .* UTC, now gone:", told), told
    assert "patients 1 (at " in told and "audit_entries" in told, told
    assert "1 session stays ended, 1 API token stays revoked" in told, told

    assert demo_patients(url) == before
    with web(url) as client:
        search = client.get("/fhir/Patient", params={"name": "afterbackup"}, headers=bearer(token))
        assert search.status_code == 401, "a token revoked after the backup stays revoked"
        assert client.get(
            "/fhir/Patient", params={"_count": "200"}, headers=bearer(kept_token)
        ).json()["entry"], "restored patients are visible to a token that was never revoked"
        client.cookies.update(session_cookie)
        assert client.get("/patients").status_code in (302, 303, 401), "the session stays ended"
    assert ok(tandem(url, "audit", "verify")).returncode == 0


def test_the_postgresql_password_never_reaches_a_command_line(
    demo_db: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    """pg_dump and pg_restore get the password from a passfile of mode 0600 (`ps` shows every
    user the command lines). A stand-in earlier on PATH records what they were given, then runs
    the real program."""
    url, _ = demo_db
    if not url.startswith("postgresql"):
        pytest.skip("SQLite needs no password")
    with_password = (
        make_url(url).set(password="s3cret:pass\\word").render_as_string(hide_password=False)
    )
    shims = tmp_path / "bin"
    shims.mkdir()
    seen = tmp_path / "seen.txt"
    for program in ("pg_dump", "pg_restore"):
        real = shutil.which(program)
        shim = shims / program
        shim.write_text(
            "#!/bin/sh\n"
            f'printf "argv: %s\\n" "$*" >> {seen}\n'
            f'printf "PGPASSWORD: %s\\n" "$PGPASSWORD" >> {seen}\n'
            f'stat -c "passfile mode: %a" "$PGPASSFILE" >> {seen}\n'
            f'printf "passfile: %s\\n" "$(cat "$PGPASSFILE")" >> {seen}\n'
            f'exec {real} "$@"\n'
        )
        shim.chmod(0o700)
    env_path = f"{shims}:{os.environ['PATH']}"
    backup = tmp_path / "pw.backup"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_tandem(with_password, *args, env={"PATH": env_path})

    ok(run("backup", str(backup)))
    ok(run("restore", str(backup), "--yes"))

    lines = seen.read_text().splitlines()
    argv = [line for line in lines if line.startswith("argv:")]
    # Reading the backup's table of contents (`pg_restore --list`) connects to no database.
    argv = [line for line in argv if "--list" not in line and "--use-list" not in line]
    assert len(argv) == 2 and "pg_restore" not in argv[0]
    assert all("s3cret" not in line for line in argv), argv
    assert "PGPASSWORD: " in lines, "no password in the environment either"
    assert lines.count("passfile mode: 600") == 2
    assert "passfile: *:*:*:*:s3cret\\:pass\\\\word" in lines, lines
    assert not list(Path(tempfile.gettempdir()).glob("tandem-pgpass-*")), "passfiles removed"


def test_restore_refuses_a_file_that_is_not_a_backup_and_keeps_the_data(
    demo_db: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, _ = demo_db
    before = demo_patients(url)
    junk = tmp_path / "notes.txt"
    junk.write_text("shopping list: milk, eggs\n" * 100)

    result = tandem(url, "restore", str(junk), "--yes")

    assert result.returncode == 2
    assert "notes.txt" in said(result.stderr) or "pg_restore" in said(result.stderr)
    assert demo_patients(url) == before


def test_restore_without_yes_and_no_terminal_refuses(
    demo_db: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, _ = demo_db
    backup = tmp_path / "tandem.backup"
    ok(tandem(url, "backup", str(backup)))
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE patients SET family = 'Changed'"))
    engine.dispose()

    result = tandem(
        url, "restore", str(backup)
    )  # stdin is not a terminal: nobody can answer a prompt

    assert result.returncode == 2
    assert "--yes" in said(result.stderr)
    assert {family for family, _, _, _ in demo_patients(url)} == {"Changed"}


def test_restore_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tandem.db'}"
    result = tandem(url, "restore", str(tmp_path / "missing.backup"), "--yes")
    assert result.returncode == 2
    assert "missing.backup" in said(result.stderr)


def test_the_installed_script_runs(tmp_path: Path) -> None:
    """The other tests run the Typer app in-process; this one runs the `tandem` script that
    pip installed, in a process of its own: its exit codes and messages are the same."""
    url = f"sqlite:///{tmp_path / 'tandem.db'}"
    result = tandem_script(url, "restore", str(tmp_path / "missing.backup"), "--yes")
    assert result.returncode == 2
    assert "missing.backup" in said(result.stderr)
    assert "Traceback" not in result.stderr
