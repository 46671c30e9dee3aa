"""`tandem restore` puts the data back as it was at the backup, but never the credentials: a token
revoked, a session ended, a user deactivated or a password changed after the backup stays so, and
the restore says what it rolled back (per record type, with the time range) and what it kept.

Each test has a database of its own on each engine: a SQLite file, or a PostgreSQL database
created for it and dropped afterwards (pg_restore --clean replaces a whole database).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import accounts
from tandem.access.credentials import create_token, start_session
from tandem.settings import Settings
from tandem.storage.db import make_engine, make_sessionmaker, session_scope, utcnow
from tandem.storage.models import KnownDevice, Membership, Program, User
from tests.cli_runner import run_init, run_tandem
from tests.conftest import PG_URL, World, csrf_from, postgres_available

pytestmark = pytest.mark.slow

ADMIN = ("admin@clinic.example", "Ada Admin", "admin-password-0123")
FHIR_JSON = "application/fhir+json"


def said(text_: str) -> str:
    return " ".join(text_.split())


def ok(result: object) -> str:
    code, out, err = (getattr(result, k) for k in ("returncode", "stdout", "stderr"))
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return str(out)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of the test's own with nothing in it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tandem.db'}"
        return
    with throwaway_database() as url:
        yield url


@contextmanager
def throwaway_database() -> Iterator[str]:
    available, why = postgres_available()
    if not available:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {why}")
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore are not installed")
    name = f"tandem_restore_{uuid.uuid4().hex[:12]}"
    server = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@contextmanager
def web(database_url: str) -> Iterator[TestClient]:
    from tandem.web.app import create_app

    app = create_app(Settings(database_url=database_url, cookie_secure=True, login_slowdown_ms=0))
    try:
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
            yield client
    finally:
        app.state.engine.dispose()


def signs_in(client: TestClient, email: str, password: str) -> bool:
    client.cookies.clear()
    page = client.get("/login")
    answer = client.post(
        "/login",
        data={
            "email": email,
            "password": password,
            "csrf_token": csrf_from(page.text),
            "next": "/patients",
        },
    )
    return answer.status_code == 303 and "/login" not in answer.headers["location"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": FHIR_JSON}


STAFF = {
    "nurse": ("nurse@clinic.example", "nurse", "old-nurse-password-1"),
    "counselor": ("counselor@clinic.example", "counselor", "counselor-password-1"),
    "prescriber": ("prescriber@clinic.example", "prescriber", "prescriber-password-1"),
}


def a_clinic(url: str) -> dict[str, object]:
    """`tandem init`, three members of staff, a session each and two API tokens."""
    ok(run_init(url, ADMIN))
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    made: dict[str, object] = {}
    now = utcnow()
    with session_scope(sessions) as db:
        program = db.scalars(select(Program)).one()
        for key, (email, role, password) in STAFF.items():
            user = accounts.create_user(db, email, key.title(), role, password, [program.id])
            db.flush()
            made[f"{key}_id"] = user.id
            cookie, _ = start_session(db, user, "127.0.0.1", now)
            made[f"{key}_cookie"] = cookie
        nurse = db.get(User, made["nurse_id"])
        prescriber = db.get(User, made["prescriber_id"])
        made["revoked_token"], _ = create_token(db, nurse, ["user/*.rs"], "to revoke", now)
        made["nurse_token"], _ = create_token(db, nurse, ["user/*.rs"], "lab", now)
        made["prescriber_token"], _ = create_token(
            db, prescriber, ["user/*.cruds"], "interface", now
        )
    engine.dispose()
    return made


def admin_form(client: TestClient, user_id: object) -> dict[str, object]:
    page = client.get(f"/admin/users/{user_id}")
    assert page.status_code == 200, page.text
    programs = re.findall(r'name="programs" value="(\d+)"[^>]*checked', page.text)
    role = re.search(r'<option value="(\w+)" selected', page.text)
    name = re.search(r'name="display_name"[^>]*value="([^"]*)"', page.text)
    assert role and name and programs, page.text
    return {
        "csrf_token": csrf_from(page.text),
        "display_name": name.group(1),
        "role": role.group(1),
        "programs": programs,
        "active": "on",
    }


def test_a_restore_keeps_every_credential_change_made_after_the_backup(
    empty_db: str, tmp_path: Path
) -> None:
    url = empty_db
    clinic = a_clinic(url)
    backup = tmp_path / "tandem.backup"
    ok(run_tandem(url, "backup", str(backup)))

    # After the backup: a token revoked, a session ended, a user deactivated, a password changed,
    # and a patient registered.
    ok(run_tandem(url, "token", "revoke", str(clinic["revoked_token"])))
    with web(url) as client:
        client.cookies.set("tandem_session", str(clinic["prescriber_cookie"]))
        page = client.get("/patients")
        assert page.status_code == 200
        assert client.post("/logout", data={"csrf_token": csrf_from(page.text)}).status_code == 303

        assert signs_in(client, ADMIN[0], ADMIN[2])
        form = admin_form(client, clinic["counselor_id"])
        del form["active"]
        assert client.post(f"/admin/users/{clinic['counselor_id']}", data=form).status_code == 303
        form = admin_form(client, clinic["nurse_id"])
        form["password"] = "new-nurse-password-2"
        assert client.post(f"/admin/users/{clinic['nurse_id']}", data=form).status_code == 303

        created = client.post(
            "/fhir/Patient",
            headers=bearer(str(clinic["prescriber_token"])),
            json={"resourceType": "Patient", "name": [{"family": "Afterbackup"}]},
        )
        assert created.status_code == 201, created.text
        assert not signs_in(client, STAFF["nurse"][0], STAFF["nurse"][2])

    told = said(ok(run_tandem(url, "restore", str(backup), "--yes")))

    with web(url) as client:
        for token in ("revoked_token", "nurse_token"):
            answer = client.get("/fhir/Patient", headers=bearer(str(clinic[token])))
            assert answer.status_code == 401, f"{token} works again after the restore"
        still = client.get("/fhir/Patient", headers=bearer(str(clinic["prescriber_token"])))
        assert still.status_code == 200, "a token never revoked keeps working"
        assert "Afterbackup" not in still.text, "the data went back to the backup"
        for who in ("prescriber", "counselor", "nurse"):
            client.cookies.clear()
            client.cookies.set("tandem_session", str(clinic[f"{who}_cookie"]))
            assert client.get("/patients").status_code in (302, 303), f"{who}'s session revived"
        assert not signs_in(client, *STAFF["counselor"][::2]), "the counselor stays deactivated"
        assert not signs_in(client, STAFF["nurse"][0], STAFF["nurse"][2]), "old password works"
        assert signs_in(client, STAFF["nurse"][0], "new-nurse-password-2")

    # What it rolled back, per record type and when it was written; what it kept.
    assert re.search(r"Rolled back: \d+ records written between \S+ \S+ and \S+ \S+ UTC", told), (
        told
    )
    assert re.search(r"patients 1 \(", told), told
    assert "Credentials kept as they were before the restore:" in told, told
    assert "1 password changed" in told, told
    assert "1 user stays deactivated" in told, told
    assert re.search(r"(\d+) sessions stay ended", told), told
    ended = int(re.search(r"(\d+) sessions stay ended", told).group(1))  # type: ignore[union-attr]
    assert ended >= 3, told
    revoked = int(re.search(r"(\d+) API tokens stay revoked", told).group(1))  # type: ignore[union-attr]
    assert revoked >= 2, told


# --- PostgreSQL: onto a new server, without `tandem init` ------------------------------------


@contextmanager
def server_roles(*names: str, database: str | None = None) -> Iterator[None]:
    """Roles of the server, dropped afterwards with whatever they own (in `database` too)."""
    server = make_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            for name in names:
                login = "LOGIN" if name.endswith("_app") else "NOLOGIN"
                conn.execute(text(f'CREATE ROLE "{name}" {login}'))
        yield
    finally:
        quoted = ", ".join(f'"{name}"' for name in names)
        if database is not None:
            inside = make_engine(database, isolation_level="AUTOCOMMIT")
            with inside.connect() as conn:
                conn.execute(text(f"REASSIGN OWNED BY {quoted} TO CURRENT_USER"))
                conn.execute(text(f"DROP OWNED BY {quoted}"))
            inside.dispose()
        with server.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {quoted}"))
            for name in names:
                conn.execute(text(f'DROP ROLE "{name}"'))
        server.dispose()


def as_role(database_url: str, role: str) -> str:
    return make_url(database_url).set(username=role).render_as_string(hide_password=False)


@pytest.mark.postgres
def test_a_postgresql_backup_restores_onto_a_new_server_with_its_roles(tmp_path: Path) -> None:
    stem = f"tandem_r{uuid.uuid4().hex[:10]}"
    owner, app = f"{stem}_owner", f"{stem}_app"
    backup = tmp_path / "tandem.backup"
    with server_roles(owner, app), throwaway_database() as old_server:
        ok(run_init(old_server, ADMIN, "--owner-role", owner, "--app-role", app))
        ok(run_tandem(old_server, "backup", str(backup)))
    # The old server is gone, and its roles with it.

    with throwaway_database() as new_server:
        refused = run_tandem(new_server, "restore", str(backup), "--yes")
        assert refused.returncode == 2
        told = said(refused.stderr)
        assert f"no role {owner}, {app}" in told, told
        assert f"CREATE ROLE {owner} NOLOGIN" in told and f"CREATE ROLE {app} LOGIN" in told, told
        assert "Nothing was changed" in told
        engine = make_engine(new_server)
        with engine.connect() as conn:
            tables = conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            ).scalar()
        engine.dispose()
        assert tables == 0, "refused before restoring anything"

        with server_roles(owner, app, database=new_server):
            result = run_tandem(new_server, "restore", str(backup), "--yes")
            restored = said(ok(result))
            # Nothing is known of what was revoked after the backup: every session and token ends.
            assert "held no Tandem data yet (a new server)" in said(result.stderr)
            assert f"owned by {owner}; {app} may read and add to the audit trail" in restored

            app_url = as_role(new_server, app)
            app_engine = make_engine(app_url)
            try:
                for statement in (
                    "DELETE FROM audit_entries",
                    "TRUNCATE audit_entries CASCADE",
                    "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
                    "UPDATE audit_chain SET chain_hash = 'x'",
                ):
                    with app_engine.connect() as conn:
                        with pytest.raises(Exception, match="permission denied|must be owner"):
                            conn.execute(text(statement))
            finally:
                app_engine.dispose()
            with web(app_url) as client:
                assert signs_in(client, ADMIN[0], ADMIN[2]), "the application runs as its role"
                assert client.get("/patients").status_code == 200
            ok(run_tandem(new_server, "audit", "verify"))


@pytest.mark.postgres
def test_a_restore_run_as_the_application_role_is_refused_before_changing_anything(
    tmp_path: Path,
) -> None:
    stem = f"tandem_r{uuid.uuid4().hex[:10]}"
    owner, app = f"{stem}_owner", f"{stem}_app"
    backup = tmp_path / "tandem.backup"
    with server_roles(owner, app), throwaway_database() as url:
        ok(run_init(url, ADMIN, "--owner-role", owner, "--app-role", app))
        ok(run_tandem(url, "backup", str(backup)))

        refused = run_tandem(as_role(url, app), "restore", str(backup), "--yes")

        assert refused.returncode == 2
        told = said(refused.stderr)
        assert f"restoring as '{app}'" in told and "superuser or a member" in told, told
        assert signs_in_somewhere(url), "the database is as it was"


def signs_in_somewhere(url: str) -> bool:
    with web(url) as client:
        return signs_in(client, ADMIN[0], ADMIN[2])


def test_a_restored_older_role_program_or_password_gives_way_to_the_newer_one(
    world: World, sessions: sessionmaker[Session], engine: Engine
) -> None:
    """`capture` holds the credentials just before the restore; whatever the backup brings back
    (here written over the database by hand) gives way to them."""
    from tandem.storage import backups

    newer = backups.capture(engine)
    with session_scope(sessions) as db:  # the older state, as the backup holds it
        nurse = db.scalars(select(User).where(User.email == world.email("nurse"))).one()
        admin = db.scalars(select(User).where(User.email == world.email("admin"))).one()
        nurse.role = "admin"
        nurse.password_hash = "old-hash"
        db.add(Membership(user_id=nurse.id, program_id=world.program_b))
        admin.system_admin = True
        db.add(KnownDevice(device="d" * 64, user_id=nurse.id))
        nurse_id, admin_id = nurse.id, admin.id

    kept = backups.keep_revocations(engine, newer, utcnow())

    assert (kept.roles, kept.passwords, kept.devices) == (2, 1, 1)
    with sessions() as db:
        nurse = db.get(User, nurse_id)
        assert nurse is not None and nurse.role == "nurse"
        assert nurse.password_hash != "old-hash"
        assert nurse.program_ids == {world.program_a}
        assert db.get(User, admin_id).system_admin is False  # type: ignore[union-attr]
        assert db.scalars(select(KnownDevice)).all() == []
    assert backups.rolled_back(engine, newer).changed == {}, "nothing differs any more"


def test_routine_activity_since_the_backup_is_not_reported_as_changed_back(
    world: World, sessions: sessionmaker[Session], engine: Engine
) -> None:
    """A sign-in or a session seen since the backup is routine, not a record the restore
    changed back; a name changed since is."""
    from tandem.storage import backups

    with session_scope(sessions) as db:
        nurse = db.scalars(select(User).where(User.email == world.email("nurse"))).one()
        start_session(db, nurse, "10.0.0.1", utcnow())
    newer = backups.capture(engine)
    with session_scope(sessions) as db:  # the backup's older state: signed in earlier
        nurse = db.scalars(select(User).where(User.email == world.email("nurse"))).one()
        nurse.last_login_at = utcnow().replace(year=2020)
        db.execute(text("UPDATE web_sessions SET last_seen_at = created_at"))
    assert backups.rolled_back(engine, newer).changed == {}
    with session_scope(sessions) as db:
        nurse = db.scalars(select(User).where(User.email == world.email("nurse"))).one()
        nurse.display_name = "Someone Else"
    assert backups.rolled_back(engine, newer).changed == {"users": 1}
