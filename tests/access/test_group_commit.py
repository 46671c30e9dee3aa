"""Reads are audited in group commits: many concurrent reads, each answered only once its own
audit entry is durable, and a read whose entry cannot be written is not answered. A real
server (uvicorn on a loopback port) so that requests really overlap, on both engines."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tandem.settings import Settings
from tandem.storage.models import AuditEntry, AuditEntryPatient
from tests.conftest import World, make_token

CLIENTS = 8
READS_EACH = 12


@dataclass
class Live:
    url: str
    app: Any


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live(database_url: str, world: World) -> Iterator[Live]:
    import uvicorn

    from tandem.web.app import create_app

    app = create_app(Settings(database_url=database_url, cookie_secure=False))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _last_entry_id(sessions: sessionmaker[Session]) -> int:
    with sessions() as db:
        return db.scalar(select(func.coalesce(func.max(AuditEntry.id), 0))) or 0


def test_many_concurrent_reads_each_get_their_audit_entry(
    live: Live, world: World, sessions: sessionmaker[Session]
) -> None:
    token = make_token(sessions, world.email("nurse"), "user/Patient.rs")
    headers = {"Authorization": f"Bearer {token}"}
    before = _last_entry_id(sessions)
    patients = (world.patient_a, world.patient_a2)

    def client(number: int) -> list[tuple[str, int, set[str]]]:
        answers = []
        with httpx.Client(base_url=live.url, headers=headers, timeout=60) as http:
            for i in range(READS_EACH):
                if (number + i) % 3 == 2:  # a search: every patient it shows is recorded
                    r = http.get("/fhir/Patient", params={"name": "rivera"})
                    shown = {e["resource"]["id"] for e in r.json().get("entry", [])}
                    answers.append(("search", r.status_code, shown))
                else:
                    patient = patients[(number + i) % 2]
                    r = http.get(f"/fhir/Patient/{patient}")
                    answers.append(("read", r.status_code, {patient}))
        return answers

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for done in pool.map(client, range(CLIENTS)) for a in done]

    assert {status for _, status, _ in answers} == {200}
    # Every answer had its entry durable before it was sent: all are there now, none twice.
    with sessions() as db:
        entries = db.scalars(
            select(AuditEntry).where(AuditEntry.id > before).order_by(AuditEntry.id)
        ).all()
        shown_rows = db.execute(
            select(AuditEntryPatient.audit_entry_id, AuditEntryPatient.patient_id).where(
                AuditEntryPatient.audit_entry_id > before
            )
        ).all()
    nurse_entries = [e for e in entries if e.actor == world.email("nurse")]
    reads = [e for e in nurse_entries if e.operation == "read"]
    searches = [e for e in nurse_entries if e.operation == "search"]
    expected_reads = sorted(p for kind, _, shown in answers if kind == "read" for p in shown)
    assert sorted(e.patient_id or "" for e in reads) == expected_reads
    assert len(searches) == sum(1 for kind, _, _ in answers if kind == "search")
    # "Who saw patient X": each search's entry names the patients it showed.
    shown_by_entry: dict[int, set[str]] = {}
    for entry_id, patient_id in shown_rows:
        shown_by_entry.setdefault(entry_id, set()).add(patient_id)
    expected_shown = [shown for kind, _, shown in answers if kind == "search"]
    assert expected_shown and all(expected_shown)
    assert sorted(sorted(shown_by_entry.get(e.id, set())) for e in searches) == sorted(
        sorted(s) for s in expected_shown
    )
    # Reads were committed together: fewer transactions than answers.
    assert live.app.state.audit_committer.batches < len(answers)


def _refuse_audit_entries(sessions: sessionmaker[Session]) -> None:
    """What a full disk or a broken audit table does to a read: its entry cannot be inserted."""
    with sessions() as db:
        if db.get_bind().dialect.name == "sqlite":
            db.execute(
                text(
                    "CREATE TRIGGER test_audit_unwritable BEFORE INSERT ON audit_entries "
                    "BEGIN SELECT RAISE(ABORT, 'audit trail unwritable'); END"
                )
            )
        else:
            db.execute(
                text(
                    "CREATE FUNCTION test_audit_unwritable() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'audit trail unwritable' USING ERRCODE = '53100'; "
                    "END $$"
                )
            )
            db.execute(
                text(
                    "CREATE TRIGGER test_audit_unwritable BEFORE INSERT ON audit_entries "
                    "FOR EACH ROW EXECUTE FUNCTION test_audit_unwritable()"
                )
            )
        db.commit()


def _allow_audit_entries(sessions: sessionmaker[Session]) -> None:
    with sessions() as db:
        if db.get_bind().dialect.name == "sqlite":
            db.execute(text("DROP TRIGGER test_audit_unwritable"))
        else:
            db.execute(text("DROP TRIGGER test_audit_unwritable ON audit_entries"))
            db.execute(text("DROP FUNCTION test_audit_unwritable()"))
        db.commit()


def test_a_read_whose_audit_entry_cannot_be_written_is_not_answered(
    live: Live, world: World, sessions: sessionmaker[Session]
) -> None:
    token = make_token(sessions, world.email("nurse"), "user/Patient.rs")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=60) as http:
        assert http.get(f"/fhir/Patient/{world.patient_a}").status_code == 200
        _refuse_audit_entries(sessions)
        try:
            refused = http.get(f"/fhir/Patient/{world.patient_a}")
            search = http.get("/fhir/Patient", params={"name": "rivera"})
        finally:
            _allow_audit_entries(sessions)
        again = http.get(f"/fhir/Patient/{world.patient_a}")

    for answer in (refused, search):
        assert answer.status_code == 503, answer.text
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert "Rivera" not in answer.text  # nothing of the chart was shown
        assert answer.headers["retry-after"]
    assert again.status_code == 200
    assert again.json()["name"][0]["family"] == "Rivera"
