"""`tandem serve --workers 2`, run as an operator runs it, on SQLite and PostgreSQL.

The parent migrates, then two worker processes serve one port. What one worker learns (a
sign-in, failed attempts, an audit row) is in the database, so every worker honours it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import accounts
from tandem.storage.db import session_scope
from tandem.storage.models import AuditEntry
from tests.cli_runner import run_tandem

pytestmark = pytest.mark.slow

TANDEM = str(Path(sys.executable).with_name("tandem"))
EMAIL, PASSWORD = "nurse@serve.tandem.test", "serve-password-0123"
_CSRF = re.compile(r'name="(?:csrf_token|login_csrf)" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@dataclass
class Server:
    base: str
    process: subprocess.Popen[str]

    @property
    def workers(self) -> list[int]:
        # Under uvicorn's supervisor: the workers, and multiprocessing's resource tracker.
        return [
            pid
            for pid in children(self.process.pid)
            if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()
        ]


@pytest.fixture
def server(database_url: str, sessions: sessionmaker[Session]) -> Iterator[Server]:
    with session_scope(sessions) as db:
        program = accounts.create_program(db, "serve", "Serve test")
        accounts.create_user(db, EMAIL, "Serve Nurse", "nurse", PASSWORD, [program.id])
    port = free_port()
    env = {
        **os.environ,
        "TANDEM_DATABASE_URL": database_url,
        "TANDEM_COOKIE_SECURE": "false",  # plain http on loopback
        "TANDEM_LOGIN_MAX_FAILURES": "3",
    }
    process = subprocess.Popen(
        [TANDEM, "serve", "--workers", "2", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    running = Server(base, process)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise AssertionError(f"tandem serve exited: {process.stdout.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "tandem serve did not answer in 90 s"
            time.sleep(0.2)
        while len(running.workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the second worker may still be importing
        yield running
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def sign_in(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/login")
    token = _CSRF.search(page.text)
    assert token, page.text
    return client.post(
        "/login",
        data={"email": EMAIL, "password": password, "csrf_token": token.group(1), "next": "/"},
    )


def fresh(base: str, cookie: str | None = None) -> httpx.Client:
    """A client on a new connection: the kernel hands it to either worker."""
    return httpx.Client(
        base_url=base,
        cookies={"tandem_session": cookie} if cookie else None,
        timeout=30,
        headers={"Connection": "close"},
    )


def test_two_workers_share_sessions_and_sign_in_limits(
    server: Server, sessions: sessionmaker[Session]
) -> None:
    workers = server.workers
    assert len(workers) == 2, workers
    assert "Tandem on http://" in server.process.stdout.readline()  # type: ignore[union-attr]

    with fresh(server.base) as client:
        signed_in = sign_in(client)
        assert signed_in.status_code == 303, signed_in.text
        cookie = client.cookies["tandem_session"]

    # Many requests on new connections, several at a time: both workers take some, and every
    # one of them knows the session the other one started.
    before = {pid: cpu_ticks(pid) for pid in workers}

    def page(_: int) -> int:
        with fresh(server.base, cookie) as client:
            return client.get("/patients").status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(page, range(160)))
    assert statuses == [200] * 160
    spent = {pid: cpu_ticks(pid) - before[pid] for pid in workers}
    assert all(ticks > 0 for ticks in spent.values()), spent

    # Failed sign-ins counted across workers: after three, even the right password waits.
    for _ in range(3):
        with fresh(server.base) as client:
            assert sign_in(client, "wrong-password-0000").status_code == 401
    with fresh(server.base) as client:
        assert sign_in(client).status_code == 429

    with sessions() as db:
        logins = db.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.operation == "login")
        )
    assert logins == 5  # every attempt audited, whichever worker took it


def test_help_shows_the_default_worker_count(tmp_path: Path) -> None:
    # In this process: the installed script itself is tested in tests/test_cli.py.
    result = run_tandem(f"sqlite:///{tmp_path / 'unused.db'}", "serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "--workers" in result.stdout
    assert f"default: {os.cpu_count()}" in result.stdout
