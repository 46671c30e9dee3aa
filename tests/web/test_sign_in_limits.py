"""Sign-in limits that can be neither bypassed nor turned against a clinician, on SQLite and
PostgreSQL: the client address behind a configured number of proxies (counted from the right),
an atomic limit under parallel attempts, limits per account and address, and a known device
that failures from elsewhere do not lock out."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tandem.settings import Settings
from tandem.storage.models import AuditEntry
from tests.conftest import World, csrf_from

WRONG = "wrong-password-1"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        login_max_failures=3,
        login_window_minutes=15,
        trusted_proxies=1,
        login_slowdown_ms=0,
    )


def attempt(
    client: TestClient, email: str, password: str, address: str | None = None, forwarded: str = ""
) -> int:
    headers = (
        {"X-Forwarded-For": forwarded or f"203.0.113.77, {address}"} if address or forwarded else {}
    )
    page = client.get("/login", headers=headers)
    answer = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_from(page.text)},
        headers=headers,
    )
    return answer.status_code


def browser(client: TestClient) -> TestClient:
    return TestClient(client.app, base_url="https://testserver", follow_redirects=False)


def test_the_address_is_taken_n_from_the_right(client, sessions, world: World) -> None:
    # The leftmost entry is whatever the client wrote; the proxy appended the real address.
    attempt(client, world.email("nurse"), WRONG, "198.51.100.4")
    with sessions() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.operation == "login")).one()
    assert entry.source_ip == "198.51.100.4"


def test_without_trusted_proxies_the_header_is_ignored(database_url: str, world: World) -> None:
    from tandem.web.app import create_app

    for settings, forwarded in (
        (Settings(database_url=database_url, login_slowdown_ms=0), "203.0.113.7, 198.51.100.4"),
        # Fewer entries than proxies, or not an address: the peer's address.
        (Settings(database_url=database_url, trusted_proxies=3), "203.0.113.7, 198.51.100.4"),
        (Settings(database_url=database_url, trusted_proxies=1), "203.0.113.7, <script>"),
    ):
        app = create_app(settings)
        with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
            assert attempt(client, world.email("nurse"), WRONG, forwarded=forwarded) == 401
        app.state.engine.dispose()
    legacy = Settings(database_url=database_url, trust_forwarded_for=True)
    assert legacy.trusted_proxies == 1  # the old setting reads as one proxy
    from sqlalchemy import create_engine

    engine = create_engine(database_url)
    with engine.connect() as conn:
        addresses = set(conn.execute(select(AuditEntry.source_ip)).scalars())
    engine.dispose()
    assert addresses == {"testclient"}


def test_a_spoofed_leftmost_address_does_not_escape_the_limit(client, world: World) -> None:
    for i in range(3):
        headers = {"X-Forwarded-For": f"10.0.0.{i}, 198.51.100.9"}
        page = client.get("/login", headers=headers)
        client.post(
            "/login",
            data={
                "email": world.email("nurse"),
                "password": WRONG,
                "csrf_token": csrf_from(page.text),
            },
            headers=headers,
        )
    assert attempt(client, world.email("nurse"), world.passwords["nurse"], "198.51.100.9") == 429


def test_failures_from_one_address_do_not_lock_out_another(client, world: World) -> None:
    for _ in range(3):
        assert attempt(client, world.email("nurse"), WRONG, "198.51.100.66") == 401
    assert attempt(client, world.email("nurse"), world.passwords["nurse"], "198.51.100.66") == 429
    # The clinician at the ward's address signs in.
    assert (
        attempt(browser(client), world.email("nurse"), world.passwords["nurse"], "192.0.2.10")
        == 303
    )


def test_an_attacker_on_many_addresses_cannot_keep_a_clinician_out_of_a_known_device(
    client, world: World
) -> None:
    ward = browser(client)
    assert attempt(ward, world.email("nurse"), world.passwords["nurse"], "192.0.2.10") == 303
    assert "tandem_device" in ward.cookies
    ward.cookies.delete("tandem_session")
    # Twelve addresses, three failures each: the account is locked for devices it does not know.
    for i in range(12):
        for _ in range(3):
            attempt(browser(client), world.email("nurse"), WRONG, f"198.51.100.{i}")
    assert (
        attempt(browser(client), world.email("nurse"), world.passwords["nurse"], "192.0.2.99")
        == 429
    )
    # Even at the attacker's address (a shared NAT), the known device signs in.
    assert attempt(ward, world.email("nurse"), world.passwords["nurse"], "198.51.100.0") == 303
    # A known device of another account counts for nothing here.
    other = browser(client)
    assert (
        attempt(other, world.email("prescriber"), world.passwords["prescriber"], "192.0.2.11")
        == 303
    )
    assert attempt(other, world.email("nurse"), world.passwords["nurse"], "192.0.2.11") == 429


def test_a_forged_device_cookie_counts_for_nothing(client, world: World) -> None:
    for i in range(12):
        for _ in range(3):
            attempt(browser(client), world.email("nurse"), WRONG, f"198.51.100.{i}")
    forged = browser(client)
    forged.cookies.set("tandem_device", "not-a-device", domain="testserver")
    assert attempt(forged, world.email("nurse"), world.passwords["nurse"], "192.0.2.99") == 429


# --- the atomic limit, with real threads against a served app ---------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(database_url: str, world: World) -> Iterator[str]:
    import uvicorn

    from tandem.web.app import create_app

    settings = Settings(
        database_url=database_url, cookie_secure=False, login_max_failures=5, login_slowdown_ms=0
    )
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_forty_parallel_wrong_passwords_pass_at_most_five_to_the_check(
    served: str, sessions, world: World
) -> None:
    clients = [httpx.Client(base_url=served, timeout=60) for _ in range(40)]
    tokens = []
    for c in clients:
        found = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
        assert found
        tokens.append(found.group(1))
    barrier = threading.Barrier(40)

    def guess(i: int) -> int:
        barrier.wait()
        return (
            clients[i]
            .post(
                "/login",
                data={"email": world.email("nurse"), "password": WRONG, "csrf_token": tokens[i]},
            )
            .status_code
        )

    with ThreadPoolExecutor(max_workers=40) as pool:
        answers = list(pool.map(guess, range(40)))
    for c in clients:
        c.close()
    assert sorted(set(answers)) == [401, 429]
    assert answers.count(401) <= 5, answers
    with sessions() as db:
        checked = db.scalars(
            select(AuditEntry).where(AuditEntry.outcome_detail == "wrong e-mail or password")
        ).all()
    assert len(checked) == answers.count(401)


def test_each_failure_slows_the_next_answer(database_url: str, world: World) -> None:
    from tandem.web.app import create_app

    app = create_app(
        Settings(database_url=database_url, login_slowdown_ms=300, login_max_failures=5)
    )
    took = []
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        for _ in range(3):
            started = time.monotonic()
            assert attempt(client, world.email("nurse"), WRONG) == 401
            took.append(time.monotonic() - started)
        started = time.monotonic()
        assert attempt(client, world.email("prescriber"), world.passwords["prescriber"]) == 303
        signed_in = time.monotonic() - started
    app.state.engine.dispose()
    assert took[0] >= 0.3 and took[1] >= 0.6 and took[2] >= 1.2, took
    assert signed_in < 0.6  # a right password is not slowed
