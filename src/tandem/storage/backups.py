"""What `tandem backup` and `tandem restore` need beyond copying: the PostgreSQL password kept off
command lines, backup files only their owner can read, and a restore that keeps revocations and
says what it rolls back.

A restore puts back the database as it was at the backup. Two things must not go back with it:

- revocations: an API token revoked, a web session ended or a user deactivated since the backup
  stays so (otherwise a restore would revive a stolen token). Before restoring, `capture` reads
  them from the current database; `keep_revocations` applies them again to the restored one.
  When the current database cannot be read at all, every session is ended and every token revoked
  (failing closed: people sign in again, integrations get new tokens).
- silence: `rolled_back` counts, table by table, the rows that were in the database before the
  restore and are not after it (written after the backup). `capture` keeps one 64-bit digest of
  each row's primary key (8 bytes a row), so a large audit trail is counted exactly without
  holding its rows.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tandem.storage.models import ApiToken, SmartClient, SmartToken, User, WebSession
from tandem.storage.registry import full_metadata


@contextmanager
def pg_client(database_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A libpq connection string without the password, and an environment for pg_dump or
    pg_restore that supplies it from a temporary passfile (mode 0600, removed afterwards): a
    command line is visible to every user of the machine in `ps`."""
    url = make_url(database_url)
    # URL.set() leaves a field alone when given None: replace the tuple's field instead.
    conninfo = (
        url._replace(password=None)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )
    env = {key: value for key, value in os.environ.items() if key != "PGPASSWORD"}
    if url.password is None:
        yield conninfo, env
        return
    password = str(url.password).replace("\\", "\\\\").replace(":", "\\:")
    fd, passfile = tempfile.mkstemp(prefix="tandem-pgpass-")  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"*:*:*:*:{password}\n")
        yield conninfo, {**env, "PGPASSFILE": passfile}
    finally:
        Path(passfile).unlink(missing_ok=True)


def create_private(path: Path) -> None:
    """Create `path` empty, readable and writable by its owner only; refuse if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    path.chmod(0o600)  # whatever the umask


# --- before and after a restore ------------------------------------------------------------


@dataclass
class Snapshot:
    """What the database held just before a restore."""

    readable: bool = True
    revoked_tokens: list[tuple[int, str, datetime | None]] = field(default_factory=list)
    ended_sessions: list[tuple[str, datetime | None]] = field(default_factory=list)
    inactive_users: list[tuple[int, str]] = field(default_factory=list)
    # Apps' tokens revoked and apps disabled (SMART on FHIR), by their hash and client id.
    revoked_app_tokens: list[tuple[str, datetime | None]] = field(default_factory=list)
    disabled_apps: list[tuple[str, datetime | None]] = field(default_factory=list)
    rows: dict[str, array[int]] = field(default_factory=dict)  # table -> sorted key digests


@dataclass(frozen=True)
class Kept:
    tokens: int
    sessions: int
    users: int
    failed_closed: bool


def capture(engine: Engine) -> Snapshot:
    """Revocations and row keys of the current database (empty when it has no tables yet)."""
    try:
        existing = set(inspect(engine).get_table_names())
        if "alembic_version" not in existing:
            return Snapshot()
        snapshot = Snapshot()
        with engine.connect() as conn:
            snapshot.revoked_tokens = [
                (i, h, at)
                for i, h, at in conn.execute(
                    select(ApiToken.id, ApiToken.token_hash, ApiToken.revoked_at).where(
                        ApiToken.revoked_at.is_not(None)
                    )
                )
            ]
            snapshot.ended_sessions = [
                (i, at)
                for i, at in conn.execute(
                    select(WebSession.id, WebSession.ended_at).where(
                        WebSession.ended_at.is_not(None)
                    )
                )
            ]
            snapshot.inactive_users = [
                (i, e) for i, e in conn.execute(select(User.id, User.email).where(~User.active))
            ]
            if "smart_tokens" in existing:
                snapshot.revoked_app_tokens = [
                    (h, at)
                    for h, at in conn.execute(
                        select(SmartToken.token_hash, SmartToken.revoked_at).where(
                            SmartToken.revoked_at.is_not(None)
                        )
                    )
                ]
                snapshot.disabled_apps = [
                    (c, at)
                    for c, at in conn.execute(
                        select(SmartClient.client_id, SmartClient.disabled_at).where(
                            SmartClient.disabled_at.is_not(None)
                        )
                    )
                ]
            for table in full_metadata().sorted_tables:
                if table.name in existing:
                    keys = array("q", sorted(_digests(conn, table)))
                    snapshot.rows[table.name] = keys
        return snapshot
    except SQLAlchemyError:
        return Snapshot(readable=False)


def keep_revocations(engine: Engine, snapshot: Snapshot, now: datetime) -> Kept:
    """Apply the captured revocations to the restored database, in one transaction."""
    with engine.begin() as conn:
        if not snapshot.readable:
            tokens = conn.execute(
                update(ApiToken).where(ApiToken.revoked_at.is_(None)).values(revoked_at=now)
            ).rowcount
            tokens += conn.execute(
                update(SmartToken).where(SmartToken.revoked_at.is_(None)).values(revoked_at=now)
            ).rowcount
            sessions = conn.execute(
                update(WebSession).where(WebSession.ended_at.is_(None)).values(ended_at=now)
            ).rowcount
            return Kept(tokens, sessions, 0, failed_closed=True)
        tokens = sessions = users = 0
        for token_id, token_hash, at in snapshot.revoked_tokens:
            tokens += conn.execute(
                update(ApiToken)
                .where(
                    ApiToken.id == token_id,
                    ApiToken.token_hash == token_hash,
                    ApiToken.revoked_at.is_(None),
                )
                .values(revoked_at=at)
            ).rowcount
        for token_hash, at in snapshot.revoked_app_tokens:
            tokens += conn.execute(
                update(SmartToken)
                .where(SmartToken.token_hash == token_hash, SmartToken.revoked_at.is_(None))
                .values(revoked_at=at)
            ).rowcount
        for client_id, at in snapshot.disabled_apps:
            conn.execute(
                update(SmartClient)
                .where(SmartClient.client_id == client_id, SmartClient.disabled_at.is_(None))
                .values(disabled_at=at)
            )
        for session_id, at in snapshot.ended_sessions:
            sessions += conn.execute(
                update(WebSession)
                .where(WebSession.id == session_id, WebSession.ended_at.is_(None))
                .values(ended_at=at)
            ).rowcount
        for user_id, email in snapshot.inactive_users:
            users += conn.execute(
                update(User)
                .where(User.id == user_id, User.email == email, User.active)
                .values(active=False)
            ).rowcount
    return Kept(tokens, sessions, users, failed_closed=False)


def rolled_back(engine: Engine, snapshot: Snapshot) -> dict[str, int]:
    """Per table, how many rows the database held before the restore and holds no longer."""
    gone: dict[str, int] = {}
    with engine.connect() as conn:
        existing = set(inspect(conn).get_table_names())
        for table in full_metadata().sorted_tables:
            before = snapshot.rows.get(table.name)
            if not before:
                continue
            kept = 0
            if table.name in existing:
                for digest in _digests(conn, table):
                    at = bisect_left(before, digest)
                    kept += at < len(before) and before[at] == digest
            if len(before) - kept:
                gone[table.name] = len(before) - kept
    return gone


def _digests(conn: Any, table: Any) -> Iterator[int]:
    key = list(table.primary_key.columns)
    result = conn.execution_options(stream_results=True, yield_per=10_000).execute(select(*key))
    for row in result:
        digest = hashlib.blake2b(repr(tuple(row)).encode(), digest_size=8).digest()
        yield int.from_bytes(digest, "big", signed=True)
