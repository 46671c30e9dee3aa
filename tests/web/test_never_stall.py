"""One slow request never delays another: a real server (uvicorn on a loopback port) on both
engines, with a row (PostgreSQL) or the one write lock (SQLite) held by another connection."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from select import select as ready_to_read

import httpx
import pytest
from sqlalchemy import select, text

from tandem.settings import Settings
from tandem.storage.db import make_engine
from tandem.storage.models import AuditEntry
from tests.conftest import World, make_token


@dataclass
class Live:
    url: str
    settings: Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live(database_url: str, world: World) -> Iterator[Live]:
    import uvicorn

    from tandem.web.app import create_app

    settings = Settings(database_url=database_url, cookie_secure=False)
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _timed_get(url: str, **kwargs: object) -> tuple[int, float]:
    started = time.monotonic()
    answer = httpx.get(url, timeout=60, **kwargs)  # type: ignore[arg-type]
    return answer.status_code, time.monotonic() - started


def _hold_lock(database_url: str, patient_id: str):  # type: ignore[no-untyped-def]
    """Another connection holding what the requests below need: the patient's row on
    PostgreSQL, the database's one write lock on SQLite."""
    engine = make_engine(database_url)
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()
        conn.execute(text("SELECT id FROM patients WHERE id = :id FOR UPDATE"), {"id": patient_id})
    return engine, conn


def test_healthz_answers_at_once_while_writers_wait_on_a_lock(
    live: Live, sessions, world: World, database_url: str
) -> None:
    token = make_token(sessions, world.email("nurse"), "user/*.cruds")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    current = httpx.get(
        f"{live.url}/fhir/Patient/{world.patient_a}", headers=headers, timeout=30
    ).json()
    current["name"][0]["family"] = "Rivera-Lopez"
    engine, conn = _hold_lock(database_url, world.patient_a)
    pool = ThreadPoolExecutor(max_workers=6)
    try:
        # Six writers that must wait for the lock, each holding a worker thread.
        writers = [
            pool.submit(
                httpx.put,
                f"{live.url}/fhir/Patient/{world.patient_a}",
                json=current,
                headers=headers,
                timeout=60,
            )
            for _ in range(6)
        ]
        time.sleep(0.5)
        assert not any(w.done() for w in writers), "the writers should be waiting on the lock"
        # The lock is held until after these answers: any of them waiting on it would never come
        # back (timeout), so the bound below is only for a machine busy with other work.
        for _ in range(5):
            status, took = _timed_get(f"{live.url}/healthz")
            assert status == 200
            assert took < 3, f"/healthz took {took:.2f} s while a lock was held"
        assert not any(w.done() for w in writers), "the lock was released early"
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()
    answers = [w.result(timeout=60) for w in writers]
    pool.shutdown()
    # Six identical changes at once: each is kept, or refused as a conflict; never a 500.
    assert {a.status_code for a in answers} <= {200, 409}, [a.text[:200] for a in answers]
    assert any(a.status_code == 200 for a in answers)
    family = httpx.get(
        f"{live.url}/fhir/Patient/{world.patient_a}", headers=headers, timeout=30
    ).json()["name"][0]["family"]
    assert family == "Rivera-Lopez"


def _sign_in(client: httpx.Client, email: str, password: str) -> str:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    landing = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token.group(1), "next": "/"},
        follow_redirects=True,
    )
    found = re.search(r'name="csrf_token" value="([^"]+)"', landing.text)
    assert found, landing.text[:500]
    return found.group(1)


def test_a_refused_form_answers_at_once_and_the_refusal_is_recorded(
    live: Live, sessions, world: World
) -> None:
    """A patient posting the edit form of their own record (patients may not edit it): the
    request's own pending audit row must not make the refusal wait on the write lock."""
    with httpx.Client(base_url=live.url, timeout=60) as client:
        csrf = _sign_in(client, world.email("patient"), world.passwords["patient"])
        started = time.monotonic()
        answer = client.post(
            f"/patients/{world.patient_a}/edit",
            data={"csrf_token": csrf, "family": "Changed", "given": "Ana", "gender": "female"},
        )
        took = time.monotonic() - started
    assert answer.status_code == 403, answer.text[:300]
    # It used to wait out SQLite's 30 s busy timeout (its own pending audit row held the lock).
    assert took < 5, f"the refusal took {took:.1f} s"
    with sessions() as db:
        refused = db.scalars(
            select(AuditEntry).where(
                AuditEntry.actor == world.email("patient"), AuditEntry.outcome == "4"
            )
        ).all()
        assert [r.patient_id for r in refused] == [world.patient_a]
        family = db.execute(
            text("SELECT family FROM patients WHERE id = :id"), {"id": world.patient_a}
        ).scalar_one()
    assert family == "Rivera"


def _post_raw(url: str, token: str, headers: str, chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """POST /fhir/Patient over a plain socket, sending `chunks` until the server answers; the
    answer's first bytes and how many body bytes were sent by then."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            (
                f"POST /fhir/Patient HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/fhir+json\r\n{headers}\r\n"
            ).encode()
        )
        for chunk in chunks:
            readable, _, _ = ready_to_read([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: it stopped reading
                break
            sent += len(chunk)
        sock.settimeout(30)
        return sock.recv(200), sent


def test_a_100_mb_body_is_refused_without_being_read(live: Live, sessions, world: World) -> None:
    token = make_token(sessions, world.email("nurse"), "user/*.cruds")
    hundred_mb = 100 * 1024 * 1024
    piece = b"x" * 65536

    answer, sent = _post_raw(live.url, token, f"Content-Length: {hundred_mb}\r\n", iter(()))
    assert answer.startswith(b"HTTP/1.1 413"), answer

    def chunked() -> Iterator[bytes]:  # no length given: counted while it streams
        for _ in range(hundred_mb // len(piece)):
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"

    answer, sent = _post_raw(live.url, token, "Transfer-Encoding: chunked\r\n", chunked())
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert sent < 16 * 1024 * 1024, f"{sent:,} bytes were taken before the refusal"
