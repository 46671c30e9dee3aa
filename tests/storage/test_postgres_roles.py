"""PostgreSQL: `tandem init --owner-role O --app-role A` leaves the application role unable to
change or remove the audit trail, while the application still works as that role.

Throwaway roles with unique names, on a schema of the test's own; dropped afterwards.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from tandem.access import audit_chain
from tandem.settings import Settings
from tandem.storage.db import make_engine, make_sessionmaker, utcnow
from tandem.storage.models import AuditEntry
from tests.cli_runner import run_init
from tests.conftest import PG_URL, sign_in

pytestmark = pytest.mark.postgres

ADMIN = ("roles.admin@clinic.example", "Rolf Admin", "correct-horse-battery")


@pytest.fixture
def roles(database_url: str) -> Iterator[tuple[str, str]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("roles are a PostgreSQL feature")
    stem = f"tandem_t{uuid.uuid4().hex[:10]}"
    owner, app = f"{stem}_owner", f"{stem}_app"
    server = create_engine(PG_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{owner}" NOLOGIN'))
        conn.execute(text(f'CREATE ROLE "{app}" LOGIN'))
    try:
        yield owner, app
    finally:
        with server.connect() as conn:
            conn.execute(text(f'REASSIGN OWNED BY "{owner}", "{app}" TO CURRENT_USER'))
            conn.execute(text(f'DROP OWNED BY "{owner}", "{app}"'))
            conn.execute(text(f'DROP ROLE "{app}"'))
            conn.execute(text(f'DROP ROLE "{owner}"'))
        server.dispose()


def init(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_init(database_url, ADMIN, *args)


def as_role(database_url: str, role: str) -> str:
    return make_url(database_url).set(username=role).render_as_string(hide_password=False)


TAMPERING = [
    "UPDATE audit_entries SET actor = 'someone else'",
    "DELETE FROM audit_entries",
    "TRUNCATE audit_entries CASCADE",
    "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only",
    "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
    "DROP TRIGGER audit_entries_append_only ON audit_entries",
    "DROP TABLE audit_entries CASCADE",
    "UPDATE audit_entry_patients SET patient_id = 'x'",
    "DELETE FROM audit_entry_patients",
    "TRUNCATE audit_entry_patients",
    "DROP TABLE audit_entry_patients",
    "UPDATE audit_chain SET chain_hash = 'x'",
    "DELETE FROM audit_chain",
    "TRUNCATE audit_chain",
    "ALTER TABLE audit_chain DISABLE TRIGGER ALL",
    "DROP TABLE audit_chain",
    "SELECT setval('audit_entries_id_seq', 1)",
    "ALTER FUNCTION audit_horizon() SECURITY INVOKER",
]


def test_the_application_role_reads_and_adds_to_the_trail_and_nothing_more(
    database_url: str, roles: tuple[str, str]
) -> None:
    owner, app = roles
    first = init(database_url, "--owner-role", owner, "--app-role", app)
    assert first.returncode == 0, first.stderr
    again = init(database_url, "--owner-role", owner, "--app-role", app)
    assert again.returncode == 0, again.stderr  # idempotent
    assert "set up again" in " ".join(again.stdout.split())

    app_url = as_role(database_url, app)
    engine = make_engine(app_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_user")).scalar() == app
        for statement in TAMPERING:
            with engine.connect() as conn, pytest.raises(ProgrammingError) as refused:
                conn.execute(text(statement))
            assert "permission denied" in str(refused.value.orig) or "must be owner" in str(
                refused.value.orig
            ), statement

        # The application works as that role: sign-in, reads, writes, each audited; sealing and
        # verifying the chain too.
        app_ = _app(app_url)
        with TestClient(app_, base_url="https://testserver", follow_redirects=False) as client:
            sign_in(client, ADMIN[0], ADMIN[2])
            assert client.get("/patients").status_code == 200
        app_.state.engine.dispose()
        sessions = make_sessionmaker(engine)
        with sessions() as db:
            operations = set(db.scalars(select(AuditEntry.operation)))
        assert {"create", "login"} <= operations, operations
        assert audit_chain.seal(sessions, utcnow()) > 0
        verdict = audit_chain.verify(sessions)
        assert verdict.intact and verdict.checked > 0
    finally:
        engine.dispose()


def _app(database_url: str):  # type: ignore[no-untyped-def]
    from tandem.web.app import create_app

    return create_app(Settings(database_url=database_url, cookie_secure=True))


def test_init_refuses_an_application_role_that_could_act_as_the_owner(
    database_url: str, roles: tuple[str, str]
) -> None:
    owner, app = roles
    server = create_engine(PG_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'GRANT "{owner}" TO "{app}"'))
    server.dispose()

    result = init(database_url, "--owner-role", owner, "--app-role", app)

    assert result.returncode == 2
    assert "--app-role" in result.stderr and "member" in result.stderr
    missing = init(database_url, "--owner-role", owner, "--app-role", "nobody_" + app)
    assert missing.returncode == 2 and "no role" in missing.stderr


def test_a_role_cannot_be_named_on_sqlite(tmp_path: Path) -> None:
    result = init(f"sqlite:///{tmp_path / 't.db'}", "--owner-role", "a", "--app-role", "b")
    assert result.returncode == 2 and "PostgreSQL" in result.stderr
    assert not (tmp_path / "t.db").exists(), "refused before creating anything"
