"""What `tandem backup` and `tandem restore` need beyond copying: the PostgreSQL password kept off
command lines, backup files only their owner can read, and a restore that keeps revocations and
says what it rolls back.

A restore puts back the data as it was at the backup, but never the credentials: who may sign in,
with what, and which sessions and tokens are live stay as they were just before the restore
(otherwise a restore would revive a stolen token or an old password).

- `capture`, before restoring, reads every account's password hash, role, programs, cross-program
  administration and active state, which web sessions, API tokens and apps' tokens were live (and
  when the others ended), the devices known, the apps disabled; and one pair of 64-bit digests
  per row of every table (its key, its content) with the time it was written, 24 bytes a row, so
  a large audit trail is compared exactly without holding its rows.
- `keep_revocations`, after restoring, ends every session and token that was not live before
  (whether revoked, ended by a password reset or deactivation, or unknown), puts back each
  account's credentials, and forgets again the devices forgotten since. When the current database
  cannot be read at all, or holds nothing yet (a restore onto a new server), every session is
  ended and every token revoked (failing closed: people sign in again, integrations get new
  tokens); passwords are then those of the backup.
- On PostgreSQL, `archive_roles` reads from the backup file which role owned the tables and which
  the application ran as (granted SELECT and INSERT on the audit trail), so that a restore can
  check them on the server before replacing anything, and give the tables back to them after.
- `rolled_back` counts, table by table, the rows written after the backup that are gone (with the
  time range they were written in) and the rows changed back to their state at the backup.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, insert, inspect, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from tandem.storage.models import (
    ApiToken,
    KnownDevice,
    Membership,
    Program,
    SmartClient,
    SmartToken,
    User,
    WebSession,
)
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


class NotAnArchive(Exception):
    """The file is not a PostgreSQL backup of Tandem (pg_restore cannot list it, or it holds no
    audit trail)."""


@dataclass(frozen=True)
class ArchiveRoles:
    owner: str | None  # the role the tables belonged to
    app: str | None  # the role granted SELECT and INSERT on the audit trail (None: no separation)


def archive_roles(path: Path) -> ArchiveRoles:
    """The roles a `pg_dump --format=custom` file names for the audit trail, read from its table
    of contents (no database needed)."""
    listed = subprocess.run(  # noqa: S603 - fixed argv, no shell
        ["pg_restore", "--list", str(path)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        raise NotAnArchive(listed.stderr.strip().removeprefix("pg_restore: error: "))
    owner = None
    grants = []
    for line in listed.stdout.splitlines():
        parts = line.split()
        if line.startswith(";") or len(parts) < 7:
            continue
        if parts[3] == "TABLE" and parts[5] == "audit_entries":
            owner = _unquote(" ".join(parts[6:]))
        elif parts[3] == "ACL" and parts[5:7] == ["TABLE", "audit_entries"]:
            grants.append(line)
    if owner is None:
        raise NotAnArchive("it holds no audit trail (audit_entries)")
    app = None
    if grants:
        fd, listfile = tempfile.mkstemp(prefix="tandem-restore-list-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(grants) + "\n")
            sql = subprocess.run(  # noqa: S603 - fixed argv, no shell
                ["pg_restore", f"--use-list={listfile}", "--file=-", str(path)],  # noqa: S607
                capture_output=True,
                text=True,
                check=False,
            ).stdout
        finally:
            Path(listfile).unlink(missing_ok=True)
        for privileges, grantee in _GRANT.findall(sql):
            name = _unquote(grantee)
            if "INSERT" in privileges.split(",") and name != owner:
                app = name
    return ArchiveRoles(owner, app)


_GRANT = re.compile(r'^GRANT ([A-Z,]+) ON TABLE \S+ TO ("(?:[^"]|"")+"|[^;\s]+);$', re.MULTILINE)


def _unquote(name: str) -> str:
    if len(name) > 1 and name.startswith('"') and name.endswith('"'):
        return name[1:-1].replace('""', '"')
    return name


def create_private(path: Path) -> None:
    """Create `path` empty, readable and writable by its owner only; refuse if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    path.chmod(0o600)  # whatever the umask


# --- before and after a restore ------------------------------------------------------------

# The column that says when a row was written, by preference (the first a table has); a table
# with none of them is counted without a time.
WRITTEN_AT = (
    "recorded_at",
    "created_at",
    "attempted_at",
    "sent_at",
    "written_at",
    "rated_at",
    "disclosed_at",
    "raised_at",
    "asked_at",
    "signed_at",
    "set_at",
    "updated_at",
    "sealed_at",
    "first_seen_at",
    "checked_in_at",
    "reported_at",
    "collected_at",
    "effective_at",
    "admitted_at",
    "last_updated",
    "minute",
    "hour",
)
_NO_TIME = -(2**63)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(value: object) -> int:
    if not isinstance(value, datetime):
        return _NO_TIME
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return (aware - _EPOCH) // timedelta(microseconds=1)


def _time_of(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _digest(value: object) -> int:
    raw = hashlib.blake2b(repr(value).encode(), digest_size=8).digest()
    return int.from_bytes(raw, "big", signed=True)


class _Index:
    """A sorted digest -> 64-bit value map in two arrays (16 bytes an entry, however many)."""

    def __init__(self, pairs: Iterable[tuple[int, int]]) -> None:
        ordered = sorted(pairs)
        self.keys = array("q", (k for k, _ in ordered))
        self.values = array("q", (v for _, v in ordered))

    def __len__(self) -> int:
        return len(self.keys)

    def get(self, key: int) -> int | None:
        at = bisect_left(self.keys, key)
        if at < len(self.keys) and self.keys[at] == key:
            return self.values[at]
        return None


@dataclass(frozen=True)
class Account:
    """One user's credentials as they were just before the restore."""

    email: str
    password_hash: str
    role: str
    active: bool
    system_admin: bool
    programs: frozenset[int]


@dataclass
class TableRows:
    columns: tuple[str, ...]  # the columns a row's content digest covers
    keys: _Index  # key digest -> content digest
    times: _Index  # key digest -> when the row was written (microseconds), if the table says


@dataclass
class Snapshot:
    """What the database held just before a restore: every account's credentials, which
    sessions and tokens were live, when the others ended, and one digest per row."""

    readable: bool = True
    empty: bool = False  # no Tandem database there yet (a new server): nothing is known
    accounts: dict[int, Account] = field(default_factory=dict)
    live_sessions: set[str] = field(default_factory=set)
    ended_sessions: _Index = field(default_factory=lambda: _Index(()))
    live_tokens: set[str] = field(default_factory=set)  # API tokens, by hash
    revoked_tokens: _Index = field(default_factory=lambda: _Index(()))
    live_app_tokens: set[str] = field(default_factory=set)  # apps' tokens (SMART), by hash
    revoked_app_tokens: _Index = field(default_factory=lambda: _Index(()))
    disabled_apps: dict[str, datetime | None] = field(default_factory=dict)
    known_devices: set[tuple[str, int]] = field(default_factory=set)
    rows: dict[str, TableRows] = field(default_factory=dict)


@dataclass(frozen=True)
class Kept:
    """What the restore kept as it was before it, rather than as it was at the backup."""

    tokens: int  # API tokens and apps' tokens that stay revoked
    sessions: int  # sessions that stay ended
    users: int  # users that stay deactivated
    failed_closed: bool
    empty: bool = False  # failed closed because the database replaced held nothing yet
    passwords: int = 0  # passwords changed since the backup, kept
    roles: int = 0  # roles, programs or cross-program administration changed since, kept
    reactivated: int = 0  # users reactivated since the backup, kept active
    devices: int = 0  # devices forgotten since the backup (a password reset), kept forgotten
    apps: int = 0  # apps disabled since the backup, kept disabled


def capture(engine: Engine) -> Snapshot:
    """Credentials and row digests of the current database (empty when it has no tables yet);
    `readable=False` when it cannot be read."""
    try:
        existing = set(inspect(engine).get_table_names())
        if "alembic_version" not in existing:
            return Snapshot(empty=True)
        snapshot = Snapshot()
        with engine.connect() as conn:
            _capture_credentials(conn, snapshot, existing)
            for table in full_metadata().sorted_tables:
                if table.name in existing:
                    snapshot.rows[table.name] = _table_rows(conn, table)
        return snapshot
    except SQLAlchemyError:
        return Snapshot(readable=False)


def _capture_credentials(conn: Connection, snapshot: Snapshot, existing: set[str]) -> None:
    programs: dict[int, set[int]] = {}
    for user_id, program_id in conn.execute(select(Membership.user_id, Membership.program_id)):
        programs.setdefault(user_id, set()).add(program_id)
    for user_id, email, password_hash, role, active, system_admin in conn.execute(
        select(User.id, User.email, User.password_hash, User.role, User.active, User.system_admin)
    ):
        snapshot.accounts[user_id] = Account(
            email,
            password_hash,
            role,
            bool(active),
            bool(system_admin),
            frozenset(programs.get(user_id, ())),
        )
    ended = []
    for session_id, ended_at in conn.execute(select(WebSession.id, WebSession.ended_at)):
        if ended_at is None:
            snapshot.live_sessions.add(session_id)
        else:
            ended.append((_digest(session_id), _micros(ended_at)))
    snapshot.ended_sessions = _Index(ended)
    revoked = []
    for token_hash, revoked_at in conn.execute(select(ApiToken.token_hash, ApiToken.revoked_at)):
        if revoked_at is None:
            snapshot.live_tokens.add(token_hash)
        else:
            revoked.append((_digest(token_hash), _micros(revoked_at)))
    snapshot.revoked_tokens = _Index(revoked)
    snapshot.known_devices = {
        (device, user_id)
        for device, user_id in conn.execute(select(KnownDevice.device, KnownDevice.user_id))
    }
    if "smart_tokens" in existing:
        revoked = []
        for token_hash, revoked_at in conn.execute(
            select(SmartToken.token_hash, SmartToken.revoked_at)
        ):
            if revoked_at is None:
                snapshot.live_app_tokens.add(token_hash)
            else:
                revoked.append((_digest(token_hash), _micros(revoked_at)))
        snapshot.revoked_app_tokens = _Index(revoked)
        snapshot.disabled_apps = {
            client_id: at
            for client_id, at in conn.execute(
                select(SmartClient.client_id, SmartClient.disabled_at).where(
                    SmartClient.disabled_at.is_not(None)
                )
            )
        }


# Columns that record routine activity, not the record's content: a row whose only difference
# from the backup is one of these (a sign-in since, a session seen, a job run) is not listed as
# "changed back" by a restore.
BOOKKEEPING = {
    "users": {"last_login_at"},
    "web_sessions": {"last_seen_at"},
    "known_devices": {"last_seen_at"},
    "scheduled_jobs": {
        "next_run_at",
        "last_started_at",
        "last_finished_at",
        "last_status",
        "claimed_by",
    },
}


def _table_rows(conn: Connection, table: Table) -> TableRows:
    present = {c["name"] for c in inspect(conn).get_columns(table.name)}
    routine = BOOKKEEPING.get(table.name, set())
    columns = tuple(c.name for c in table.columns if c.name in present and c.name not in routine)
    written = next((name for name in WRITTEN_AT if name in columns), None)
    contents, times = [], []
    for key, content, at in _rows(conn, table, columns, written):
        contents.append((key, content))
        if at != _NO_TIME:
            times.append((key, at))
    return TableRows(columns, _Index(contents), _Index(times))


def _rows(
    conn: Connection, table: Table, columns: tuple[str, ...], written: str | None
) -> Iterator[tuple[int, int, int]]:
    """(key digest, content digest, written at) of every row, streamed."""
    key = [c.name for c in table.primary_key.columns]
    at_key = [columns.index(name) for name in key]
    at_written = columns.index(written) if written is not None else None
    result = conn.execution_options(stream_results=True, yield_per=10_000).execute(
        select(*(table.c[name] for name in columns))
    )
    for row in result:
        values = tuple(row)
        yield (
            _digest(tuple(values[i] for i in at_key)),
            _digest(values),
            _micros(values[at_written]) if at_written is not None else _NO_TIME,
        )


def keep_revocations(engine: Engine, snapshot: Snapshot, now: datetime) -> Kept:
    """Bring the credentials of the restored database to what they were before the restore, in
    one transaction: every session and token that was not live before ends (at the time it
    ended before, when known); each account gets back its password, role, programs and active
    state; forgotten devices stay forgotten. A database that could not be read fails closed:
    every session ends and every token is revoked; so does an empty one (restoring onto a new
    server), since what was revoked after the backup is unknown there."""
    with engine.begin() as conn:
        if not snapshot.readable or snapshot.empty:
            tokens = _count(
                conn.execute(
                    update(ApiToken).where(ApiToken.revoked_at.is_(None)).values(revoked_at=now)
                )
            )
            tokens += _count(
                conn.execute(
                    update(SmartToken).where(SmartToken.revoked_at.is_(None)).values(revoked_at=now)
                )
            )
            sessions = _count(
                conn.execute(
                    update(WebSession).where(WebSession.ended_at.is_(None)).values(ended_at=now)
                )
            )
            return Kept(tokens, sessions, 0, failed_closed=True, empty=snapshot.empty)
        sessions = _end_unless_live(
            conn,
            WebSession.__table__,
            "id",
            "ended_at",
            snapshot.live_sessions,
            snapshot.ended_sessions,
            now,
        )
        tokens = _end_unless_live(
            conn,
            ApiToken.__table__,
            "token_hash",
            "revoked_at",
            snapshot.live_tokens,
            snapshot.revoked_tokens,
            now,
        )
        tokens += _end_unless_live(
            conn,
            SmartToken.__table__,
            "token_hash",
            "revoked_at",
            snapshot.live_app_tokens,
            snapshot.revoked_app_tokens,
            now,
        )
        apps = 0
        for client_id, at in snapshot.disabled_apps.items():
            apps += _count(
                conn.execute(
                    update(SmartClient)
                    .where(SmartClient.client_id == client_id, SmartClient.disabled_at.is_(None))
                    .values(disabled_at=at)
                )
            )
        counts = _keep_accounts(conn, snapshot, now)
        devices = 0
        for device, user_id in list(conn.execute(select(KnownDevice.device, KnownDevice.user_id))):
            if (device, user_id) not in snapshot.known_devices:
                devices += _count(
                    conn.execute(
                        delete(KnownDevice).where(
                            KnownDevice.device == device, KnownDevice.user_id == user_id
                        )
                    )
                )
    return Kept(
        tokens,
        sessions,
        counts["deactivated"],
        failed_closed=False,
        passwords=counts["passwords"],
        roles=counts["roles"],
        reactivated=counts["reactivated"],
        devices=devices,
        apps=apps,
    )


def _count(result: Any) -> int:
    return int(result.rowcount or 0)


def _end_unless_live(
    conn: Connection,
    table: Any,
    key: str,
    ended: str,
    live: set[str],
    ended_before: _Index,
    now: datetime,
) -> int:
    """End every row live in the restored database that was not live before the restore."""
    count = 0
    for (value,) in list(conn.execute(select(table.c[key]).where(table.c[ended].is_(None)))):
        if value in live:
            continue
        at = ended_before.get(_digest(value))
        count += _count(
            conn.execute(
                update(table)
                .where(table.c[key] == value, table.c[ended].is_(None))
                .values({ended: now if at is None else _time_of(at)})
            )
        )
    return count


def _keep_accounts(conn: Connection, snapshot: Snapshot, now: datetime) -> dict[str, int]:
    counts = dict.fromkeys(("passwords", "roles", "deactivated", "reactivated"), 0)
    programs_now = set(conn.execute(select(Program.id)).scalars())
    memberships: dict[int, set[int]] = {}
    for user_id, program_id in conn.execute(select(Membership.user_id, Membership.program_id)):
        memberships.setdefault(user_id, set()).add(program_id)
    restored = list(
        conn.execute(
            select(
                User.id, User.email, User.password_hash, User.role, User.active, User.system_admin
            )
        )
    )
    for user_id, email, password_hash, role, active, system_admin in restored:
        before = snapshot.accounts.get(user_id)
        if before is None or before.email != email:
            # Not an account of the database being replaced: it signs in no more.
            if active:
                conn.execute(update(User).where(User.id == user_id).values(active=False))
                counts["deactivated"] += 1
            continue
        changes: dict[str, Any] = {}
        if password_hash != before.password_hash:
            changes["password_hash"] = before.password_hash
            counts["passwords"] += 1
        if bool(active) != before.active:
            changes["active"] = before.active
            counts["reactivated" if before.active else "deactivated"] += 1
        programs = before.programs & programs_now
        if (
            role != before.role
            or bool(system_admin) != before.system_admin
            or memberships.get(user_id, set()) != programs
        ):
            changes["role"] = before.role
            changes["system_admin"] = before.system_admin
            conn.execute(delete(Membership).where(Membership.user_id == user_id))
            if programs:
                conn.execute(
                    insert(Membership),
                    [{"user_id": user_id, "program_id": p} for p in sorted(programs)],
                )
            counts["roles"] += 1
        if changes:
            conn.execute(update(User).where(User.id == user_id).values(**changes))
    return counts


@dataclass(frozen=True)
class RolledBack:
    """Per table, the rows written after the backup that the restore removed, and the rows it
    changed back to their state at the backup."""

    removed: dict[str, int]
    changed: dict[str, int]
    first: dict[str, datetime]  # per table, the earliest and latest removed row with a time
    last: dict[str, datetime]

    @property
    def total(self) -> int:
        return sum(self.removed.values())

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        if not self.first:
            return None
        return min(self.first.values()), max(self.last.values())


def rolled_back(engine: Engine, snapshot: Snapshot) -> RolledBack:
    """Compare the restored database with the snapshot, table by table."""
    removed: dict[str, int] = {}
    changed: dict[str, int] = {}
    first: dict[str, datetime] = {}
    last: dict[str, datetime] = {}
    with engine.connect() as conn:
        existing = set(inspect(conn).get_table_names())
        for table in full_metadata().sorted_tables:
            before = snapshot.rows.get(table.name)
            if not before or not len(before.keys):
                continue
            found = array("q")
            if table.name in existing:
                present = {c["name"] for c in inspect(conn).get_columns(table.name)}
                comparable = set(before.columns) <= present
                columns = before.columns if comparable else ()
                if not comparable:  # the schema moved on: count rows, not changes
                    key = tuple(c.name for c in table.primary_key.columns)
                    columns = key
                for key_digest, content, _ in _rows(conn, table, columns, None):
                    was = before.keys.get(key_digest)
                    if was is None:
                        continue
                    found.append(key_digest)
                    if comparable and was != content:
                        changed[table.name] = changed.get(table.name, 0) + 1
            found = array("q", sorted(found))
            gone_times = []
            gone = 0
            for key_digest in before.keys.keys:
                at = bisect_left(found, key_digest)
                if at < len(found) and found[at] == key_digest:
                    continue
                gone += 1
                when = before.times.get(key_digest)
                if when is not None:
                    gone_times.append(when)
            if gone:
                removed[table.name] = gone
            if gone_times:
                first[table.name] = _time_of(min(gone_times))
                last[table.name] = _time_of(max(gone_times))
    return RolledBack(removed, changed, first, last)
