"""kill -9 during concurrent writes: `tandem serve --workers 2` takes FHIR Patient creates from
several clients at once, the whole server (supervisor and workers) is killed with SIGKILL in the
middle of it, and started again. Every create the server acknowledged (201) is there afterwards,
with its audit row: an answer leaves the server only after its unit of work is committed. On
SQLite (the WAL recovered on restart) and PostgreSQL.

Kept quick (most of its time is starting Python processes): the kill lands once 15 creates are
acknowledged (the clients are still sending, which the test checks), the restart is one worker
(it reads what survived; the kill is what needs the supervisor and both workers), and the hash
chain is verified by the real `tandem audit verify` command in this process (the command as a
process of its own is tests/access/test_audit_trail.py's)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from tandem.access import accounts, audit
from tandem.access.credentials import create_token
from tandem.cli import app
from tandem.storage.db import session_scope
from tandem.storage.models import AuditEntry, Patient
from tests.test_serve_workers import TANDEM, free_port

pytestmark = pytest.mark.slow

CLIENTS = 6
# Acknowledged creates to wait for before the kill (the load goes on while it lands).
ACKNOWLEDGED_BEFORE_KILL = 15


@dataclass
class Load:
    """What the clients were told: the id of every acknowledged create."""

    acknowledged: list[str] = field(default_factory=list)
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


def start_server(
    database_url: str, port: int, log: Path, workers: int = 2
) -> subprocess.Popen[bytes]:
    """`tandem serve --workers N` in a process group of its own (so that one killpg reaches the
    supervisor, both workers and the resource tracker), once it answers /healthz."""
    env = {**os.environ, "TANDEM_DATABASE_URL": database_url, "TANDEM_COOKIE_SECURE": "false"}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [TANDEM, "serve", "--workers", str(workers), "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise AssertionError(f"tandem serve exited: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "tandem serve did not answer in 90 s"
        time.sleep(0.1)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(30)


@pytest.fixture
def token(sessions: sessionmaker[Session]) -> str:
    with session_scope(sessions) as db:
        program = accounts.create_program(db, "crash", "Crash test (synthetic)", synthetic=True)
        nurse = accounts.create_user(
            db,
            "nurse@crash.tandem.test",
            "Crash Nurse",
            "nurse",
            "crash-password-0123",
            [program.id],
        )
        secret, _ = create_token(db, nurse, ["user/Patient.cruds"], "crash test", datetime.now(UTC))
    return secret


def write_patients(base: str, token: str, client_no: int, load: Load) -> None:
    """POST Patients until stopped or the server is gone; keep the id of every 201."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    number = 0
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        while not load.stop.is_set():
            number += 1
            body = {
                "resourceType": "Patient",
                "name": [{"family": f"Crash{client_no}x{number}", "given": ["Kim"]}],
                "gender": "unknown",
                "birthDate": "1980-01-01",
            }
            with load.lock:
                load.sent += 1
            try:
                response = client.post("/fhir/Patient", json=body)
            except httpx.HTTPError:
                return  # the server is gone: this create was never acknowledged
            if response.status_code == 201:
                with load.lock:
                    load.acknowledged.append(response.json()["id"])
            else:
                # Busy answers (503) are refusals the client may retry; nothing else is expected.
                assert response.status_code == 503, response.text


def test_every_acknowledged_create_and_its_audit_row_survive_kill_9(
    database_url: str, sessions: sessionmaker[Session], token: str, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    server = start_server(database_url, port, log)
    load = Load()
    errors: list[BaseException] = []

    def run(client_no: int) -> None:
        try:
            write_patients(base, token, client_no, load)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(load.acknowledged) < ACKNOWLEDGED_BEFORE_KILL:
            assert not errors, errors
            assert time.monotonic() < deadline, f"only {len(load.acknowledged)} creates in 30 s"
            time.sleep(0.02)
        kill_group(server)  # mid-load: the clients are still sending
    finally:
        load.stop.set()
        kill_group(server)
        for thread in threads:
            thread.join(30)
    assert not errors, errors
    acknowledged = list(load.acknowledged)
    assert len(set(acknowledged)) == len(acknowledged)
    # Requests were in flight when the server died (they got no answer): the kill was mid-load.
    assert load.sent > len(acknowledged)

    server = start_server(database_url, port, log, workers=1)  # after kill -9: recovers, migrates
    try:
        with sessions() as db:
            stored = set(db.scalars(select(Patient.id).where(Patient.id.in_(acknowledged))))
            audited = set(
                db.scalars(
                    select(AuditEntry.resource_id).where(
                        AuditEntry.resource_type == "Patient",
                        AuditEntry.operation == "create",
                        AuditEntry.outcome == audit.SUCCESS,
                        AuditEntry.resource_id.in_(acknowledged),
                    )
                )
            )
        assert sorted(set(acknowledged) - stored) == [], "acknowledged creates lost"
        assert sorted(set(acknowledged) - audited) == [], "acknowledged creates without audit"
        # And the restarted server serves them.
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client:
            for patient_id in (acknowledged[0], acknowledged[-1]):
                assert client.get(f"/fhir/Patient/{patient_id}").status_code == 200
        # The trail's hash chain holds across the kill.
        verify = CliRunner().invoke(
            app, ["audit", "verify"], env={"TANDEM_DATABASE_URL": database_url, "COLUMNS": "300"}
        )
        assert verify.exit_code == 0, verify.stdout + verify.stderr
        assert "Audit trail intact" in " ".join(verify.stdout.split())
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            kill_group(server)
