"""The audit trail cannot be rewritten by the application, and any rewrite is detected.

On both engines: the application's own connection cannot UPDATE, DELETE, REPLACE (SQLite),
upsert or TRUNCATE (PostgreSQL) audit rows; the hash chain (`tandem audit verify`) passes on a
normal history of reads, writes and refusals, and names the first broken entry after an entry is
changed, deleted or inserted through a connection that goes around the triggers (raw sqlite3
with the triggers dropped; a PostgreSQL superuser with triggers off).
"""

# ruff: noqa: S608 - the tests write SQL by hand on purpose: it is what an attacker would type
from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from tandem.access import audit, audit_chain
from tandem.kit import Job
from tandem.scheduler import run_due
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditChainLink, AuditEntry, AuditEntryPatient
from tests.conftest import World, make_token

FHIR = {"Content-Type": "application/fhir+json"}


def history(client: TestClient, sessions: sessionmaker[Session], world: World) -> None:
    """A normal day: reads, a search, a write and a refusal, each audited."""
    nurse = {
        "Authorization": f"Bearer {make_token(sessions, world.email('nurse'), 'user/*.cruds')}"
    }
    other = {"Authorization": f"Bearer {make_token(sessions, world.email('nurse_b'), 'user/*.rs')}"}
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=nurse).status_code == 200
    assert client.get("/fhir/Patient", params={"name": "r"}, headers=nurse).status_code == 200
    created = client.post(
        "/fhir/Patient",
        headers={**nurse, **FHIR},
        json={"resourceType": "Patient", "name": [{"family": "Chained", "given": ["Cy"]}]},
    )
    assert created.status_code == 201, created.text
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=other).status_code == 403
    assert client.get("/fhir/Patient", headers={"Authorization": "Bearer nope"}).status_code == 401


def entry_ids(sessions: sessionmaker[Session]) -> list[int]:
    with sessions() as db:
        return list(db.scalars(select(AuditEntry.id).order_by(AuditEntry.id)))


def verify_here(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The same command run in this process (the real Typer app; no interpreter start-up)."""
    from typer.testing import CliRunner

    from tandem.cli import app

    result = CliRunner().invoke(
        app,
        ["audit", "verify", *args],
        env={"TANDEM_DATABASE_URL": database_url, "COLUMNS": "300"},
    )
    return subprocess.CompletedProcess([], result.exit_code, result.stdout, result.stderr)


def said(text_: str) -> str:
    return " ".join(text_.split())


# --- going around the application: what an attacker with the database itself can do ----------


def tamper(database_url: str, *statements: str) -> None:
    """Run statements with the triggers and foreign keys out of the way."""
    if database_url.startswith("sqlite"):
        path = make_url(database_url).database or ""
        raw = sqlite3.connect(path)
        try:
            raw.execute("PRAGMA foreign_keys=OFF")
            names = [
                name
                for (name,) in raw.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                    "AND tbl_name IN ('audit_entries', 'audit_entry_patients', 'audit_chain')"
                )
            ]
            for name in names:
                raw.execute(f'DROP TRIGGER "{name}"')
            for statement in statements:
                raw.execute(statement)
            raw.commit()
        finally:
            raw.close()
        return
    superuser = create_engine(database_url, poolclass=NullPool)
    try:
        with superuser.begin() as conn:
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # no triggers
            for statement in statements:
                conn.execute(text(statement))
    finally:
        superuser.dispose()


def make_gap(sessions: sessionmaker[Session]) -> int:
    """An id with sealed entries on both sides and no entry of its own, as normal running leaves
    (PostgreSQL: a rolled-back request used the id; SQLite: an entry added with a chosen id)."""
    with sessions() as db:
        if db.get_bind().dialect.name == "postgresql":
            item = audit.record(db, None, "read", audit.Origin(), actor_label="rolled back")
            db.flush()
            gap = item.id
            db.rollback()
        else:
            gap = (db.scalar(select(func.max(AuditEntry.id))) or 0) + 1
    with session_scope(sessions) as db:
        if db.get_bind().dialect.name == "sqlite":
            after = audit.entry(None, "read", audit.Origin(), actor_label="after the gap")
            after.id = gap + 1
            db.add(after)
        else:
            audit.record(db, None, "read", audit.Origin(), actor_label="after the gap")
    return gap


@pytest.fixture
def sealed(
    client: TestClient, sessions: sessionmaker[Session], world: World
) -> tuple[list[int], int]:
    """A sealed history with a gap in its ids; returns the ids and the gap."""
    history(client, sessions, world)
    gap = make_gap(sessions)
    history(client, sessions, world)
    audit_chain.seal(sessions, utcnow())
    ids = entry_ids(sessions)
    assert gap not in ids and min(ids) < gap < max(ids)
    return ids, gap


# --- the application cannot change the trail ---------------------------------------------


def attempts(dialect: str, entry_id: int, patient: str) -> list[str]:
    columns = "id, recorded_at, actor, role, action, operation, resource_type, outcome, "
    columns += "outcome_detail, source_ip, user_agent, channel, query"
    values = (
        f"{entry_id}, '2026-01-01 00:00:00', 'x', '', 'R', 'read', '', '0', '', '', '', 'web', ''"
    )
    common = [
        f"UPDATE audit_entries SET outcome_detail = 'rewritten' WHERE id = {entry_id}",
        f"DELETE FROM audit_entries WHERE id = {entry_id}",
        f"UPDATE audit_entry_patients SET patient_id = 'someone-else' WHERE audit_entry_id = {entry_id}",
        f"DELETE FROM audit_entry_patients WHERE audit_entry_id = {entry_id}",
        f"UPDATE audit_chain SET chain_hash = '{'0' * 64}' WHERE entry_id = {entry_id}",
        f"DELETE FROM audit_chain WHERE entry_id = {entry_id}",
        f"INSERT INTO audit_entries ({columns}) VALUES ({values}) "
        "ON CONFLICT (id) DO UPDATE SET outcome_detail = 'rewritten'",
    ]
    if dialect == "sqlite":
        return [
            *common,
            f"INSERT OR REPLACE INTO audit_entries ({columns}) VALUES ({values})",
            f"REPLACE INTO audit_entries ({columns}) VALUES ({values})",
            "INSERT OR REPLACE INTO audit_entry_patients (audit_entry_id, patient_id) "
            f"VALUES ({entry_id}, '{patient}')",
            "INSERT OR REPLACE INTO audit_chain (entry_id, chain_hash, sealed_at) "
            f"VALUES ({entry_id}, '{'0' * 64}', '2026-01-01 00:00:00')",
        ]
    return [
        *common,
        "TRUNCATE audit_entry_patients",
        "TRUNCATE audit_chain",
        "TRUNCATE audit_entries CASCADE",
    ]


def test_the_application_connection_cannot_change_remove_or_replace_audit_rows(
    client: TestClient,
    sessions: sessionmaker[Session],
    engine: Engine,
    database_url: str,
    world: World,
) -> None:
    history(client, sessions, world)
    audit_chain.seal(sessions, utcnow())
    with sessions() as db:
        searched = db.scalar(
            select(AuditEntry).where(AuditEntry.operation == "search").order_by(AuditEntry.id)
        )
        assert searched is not None
        before = [tuple(r) for r in db.execute(select(AuditEntry.__table__))]
    chain_before = verify_here(database_url)
    assert chain_before.returncode == 0, chain_before.stderr

    refused = []
    for statement in attempts(engine.dialect.name, searched.id, world.patient_a):
        with engine.connect() as conn:
            try:
                conn.execute(text(statement))
                conn.commit()
            except DBAPIError as exc:
                conn.rollback()
                refused.append(statement)
                assert "append-only" in str(exc.orig), (statement, str(exc.orig))
    assert refused == attempts(engine.dialect.name, searched.id, world.patient_a)
    with sessions() as db:
        assert [tuple(r) for r in db.execute(select(AuditEntry.__table__))] == before
    assert audit_chain.verify(sessions).intact


def test_sqlite_connections_fire_delete_triggers_on_replace(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("a SQLite pragma")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA recursive_triggers").scalar() == 1


# --- the chain ----------------------------------------------------------------------------


def test_verify_passes_on_a_normal_history_of_reads_writes_and_refusals(
    client: TestClient, sessions: sessionmaker[Session], database_url: str, world: World
) -> None:
    history(client, sessions, world)
    with sessions() as db:
        outcomes = set(db.scalars(select(AuditEntry.outcome)))
    assert {"0", "8"} <= outcomes or {"0", "4"} <= outcomes, "successes and refusals"

    result = verify_here(database_url)

    assert result.returncode == 0, result.stderr
    count = len(entry_ids(sessions))
    assert f"Audit trail intact: {count} entries checked" in said(result.stdout)
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(AuditChainLink)) == count

    # More history: the next verify seals the new entries onto the same chain.
    history(client, sessions, world)
    again = verify_here(database_url)
    assert again.returncode == 0, again.stderr
    assert f"{len(entry_ids(sessions))} entries checked" in said(again.stdout)


def test_the_scheduled_job_seals_new_entries(
    client: TestClient, sessions: sessionmaker[Session], world: World
) -> None:
    from tandem.domains import scheduled_jobs

    jobs = [job for job in scheduled_jobs() if job.name == "audit.seal"]
    assert len(jobs) == 1 and isinstance(jobs[0], Job)
    history(client, sessions, world)
    now = utcnow()

    assert run_due(sessions, jobs, now, "test") == ["audit.seal"]

    verdict = audit_chain.verify(sessions)
    assert verdict.intact and verdict.unsealed == 0
    assert verdict.checked == len(entry_ids(sessions))
    assert run_due(sessions, jobs, now + timedelta(seconds=1), "test") == [], "once a minute"


def _changed(ids: list[int], gap: int, shown: int) -> tuple[list[str], int]:
    target = ids[len(ids) // 2]
    return [f"UPDATE audit_entries SET actor = 'someone else' WHERE id = {target}"], target


def _unseen(ids: list[int], gap: int, shown: int) -> tuple[list[str], int]:
    return [f"DELETE FROM audit_entry_patients WHERE audit_entry_id = {shown}"], shown


def _deleted(ids: list[int], gap: int, shown: int) -> tuple[list[str], int]:
    return [f"DELETE FROM audit_entries WHERE id = {ids[3]}"], ids[3]


def _deleted_with_its_seal(ids: list[int], gap: int, shown: int) -> tuple[list[str], int]:
    return [
        f"DELETE FROM audit_chain WHERE entry_id = {ids[3]}",
        f"DELETE FROM audit_entries WHERE id = {ids[3]}",
    ], ids[4]


def _inserted(ids: list[int], gap: int, shown: int) -> tuple[list[str], int]:
    return [
        "INSERT INTO audit_entries (id, recorded_at, actor, role, action, operation, "
        "resource_type, outcome, outcome_detail, source_ip, user_agent, channel, query) "
        f"SELECT {gap}, recorded_at, 'nobody', '', 'R', 'read', 'Patient', '0', '', '', '', "
        f"'web', '' FROM audit_entries WHERE id = {ids[0]}"
    ], gap


Tamper = Callable[[list[int], int, int], tuple[list[str], int]]


@pytest.mark.parametrize(
    "how",
    [_changed, _unseen, _deleted, _deleted_with_its_seal, _inserted],
    ids=["changed", "shown-patient-removed", "deleted", "deleted-with-its-seal", "inserted"],
)
def test_verify_names_the_first_broken_entry_after_tampering(
    sealed: tuple[list[int], int],
    sessions: sessionmaker[Session],
    database_url: str,
    how: Tamper,
) -> None:
    ids, gap = sealed
    with sessions() as db:
        shown = db.scalar(select(func.min(AuditEntryPatient.audit_entry_id)))
    assert shown is not None, "a search showed patients"
    statements, broken = how(ids, gap, shown)
    tamper(database_url, *statements)

    result = verify_here(database_url)

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Audit trail broken at entry {broken}:" in said(result.stderr)
    verdict = audit_chain.verify(sessions)
    assert verdict.broken is not None and verdict.broken.entry_id == broken


def test_an_insertion_with_a_forged_seal_breaks_the_entry_after_it(
    sealed: tuple[list[int], int], sessions: sessionmaker[Session], database_url: str
) -> None:
    """The attacker also writes a correct-looking link for the inserted entry; the entry after it
    was sealed on the link before, so the chain breaks there."""
    ids, gap = sealed
    before = max(i for i in ids if i < gap)
    after = min(i for i in ids if i > gap)
    statements, _ = _inserted(ids, gap, 0)
    tamper(database_url, *statements)
    with sessions() as db:
        previous = db.scalar(
            select(AuditChainLink.chain_hash).where(AuditChainLink.entry_id == before)
        )
        row = db.execute(select(*audit_chain._COLUMNS).where(AuditEntry.id == gap)).one()
    forged = audit_chain.link(str(previous), audit_chain.content(row, ()))
    tamper(
        database_url,
        "INSERT INTO audit_chain (entry_id, chain_hash, sealed_at) "
        f"SELECT {gap}, '{forged}', sealed_at FROM audit_chain WHERE entry_id = {before}",
    )

    verdict = audit_chain.verify(sessions)

    assert verdict.broken is not None and verdict.broken.entry_id == after


def test_an_anchor_kept_elsewhere_catches_the_removal_of_the_newest_entries(
    sealed: tuple[list[int], int], sessions: sessionmaker[Session], database_url: str
) -> None:
    ids, _ = sealed
    first = verify_here(database_url)
    head = said(first.stdout).split("Chain head ")[1].split(" ")[0]
    assert head.startswith(f"{ids[-1]}:")
    tamper(
        database_url,
        f"DELETE FROM audit_chain WHERE entry_id = {ids[-1]}",
        f"DELETE FROM audit_entries WHERE id = {ids[-1]}",
    )

    assert verify_here(database_url).returncode == 0, "the chain alone cannot see a cut tail"
    anchored = verify_here(database_url, "--anchor", head)
    assert anchored.returncode == 1
    assert f"broken at entry {ids[-1]}" in said(anchored.stderr)


def test_the_sealer_never_chains_past_an_entry_still_to_commit(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    """PostgreSQL hands out ids before commit: entry N+1 can commit while N is still open. The
    sealer waits for N (up to its lock timeout) instead of sealing N+1 and leaving N behind."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: ids commit in order")
    slow = sessions()
    early = audit.record(slow, None, "read", audit.Origin(), actor_label="slow request")
    slow.flush()
    with session_scope(sessions) as db:
        audit.record(db, None, "read", audit.Origin(), actor_label="fast request")

    with pytest.raises(audit_chain.SealerBusy):
        audit_chain.seal(sessions, utcnow())
    slow.commit()
    slow.close()

    assert audit_chain.seal(sessions, utcnow()) == 2
    verdict = audit_chain.verify(sessions)
    assert verdict.intact and verdict.checked == 2 and verdict.head is not None
    assert early.id < verdict.head[0]
