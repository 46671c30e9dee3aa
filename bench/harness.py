"""What bench/api.py and bench/profile_api.py share: `tandem serve` as a subprocess, the load
generator (bench/loadgen.py) as another, and the CPU each of them spent (from /proc)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

HERE = Path(__file__).parent
TANDEM = str(Path(sys.executable).with_name("tandem"))
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[int]:
    """The process and every process under it (uvicorn's workers, multiprocessing's tracker)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


@dataclass
class Served:
    base: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        return descendants(self.process.pid)

    def workers(self) -> list[int]:
        """uvicorn's worker processes (not the parent, not multiprocessing's resource tracker)."""
        found = []
        for pid in self.pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                found.append(pid)
        return found

    def cpu(self) -> float:
        return cpu_seconds(self.pids())


@contextmanager
def serve(
    database_url: str,
    workers: int,
    env: dict[str, str] | None = None,
    app: str | None = None,
) -> Iterator[Served]:
    """`tandem serve --workers N` on a free loopback port, until the block ends; or, given
    `app` ("module:attribute" in bench/), that ASGI app under uvicorn with the same options."""
    port = free_port()
    if app is None:
        command = [TANDEM, "serve", "--workers", str(workers), "--port", str(port)]
    else:
        command = [
            sys.executable, "-m", "uvicorn", app, "--app-dir", str(HERE),
            "--workers", str(workers), "--port", str(port),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    log = Path(tempfile.mkstemp(prefix="tandem-serve-", suffix=".log")[1])
    environment = {
        **os.environ,
        "TANDEM_DATABASE_URL": database_url,
        "TANDEM_COOKIE_SECURE": "false",  # plain http on loopback
        **(env or {}),
    }
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", "127.0.0.1", port, process, log)
    try:
        # A loaded, shared machine can take minutes to import 2 workers: TANDEM_BENCH_START_SECONDS.
        start_seconds = float(os.environ.get("TANDEM_BENCH_START_SECONDS", "120"))
        deadline = time.monotonic() + start_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tandem serve exited:\n{log.read_text()}")
            try:
                if httpx.get(f"{served.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"tandem serve did not answer in {start_seconds:g} s:\n{log.read_text()}"
                )
            time.sleep(0.2)
        while len(served.workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.2)  # every worker up before anything is timed
        # ... and done importing: its CPU time stops growing.
        last = cpu_seconds(served.workers())
        while time.monotonic() < deadline:
            time.sleep(1.0)
            now = cpu_seconds(served.workers())
            if now - last < 0.05:
                break
            last = now
        # A request to each worker's pool before timing (several connections, new each time).
        for _ in range(4 * workers):
            httpx.get(f"{served.base}/healthz", headers={"Connection": "close"}, timeout=10)
        yield served
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.unlink(missing_ok=True)


def request_text(method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> str:
    """One HTTP/1.1 request as the load generator sends it (latin-1 safe text)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines) + "\r\n\r\n" + (body.decode("latin-1") if body else "")


@dataclass
class LoadResult:
    wall: float
    client_cpu: float
    server_cpu: float
    transport_errors: int
    kinds: dict[str, dict[str, Any]]

    @property
    def total(self) -> int:
        return sum(len(k["latencies_ms"]) for k in self.kinds.values())

    @property
    def errors(self) -> int:
        return sum(int(k["errors"]) for k in self.kinds.values())

    def latencies(self, kind: str | None = None) -> list[float]:
        if kind is not None:
            return list(self.kinds[kind]["latencies_ms"])
        return [t for k in self.kinds.values() for t in k["latencies_ms"]]


def load(
    served: Served,
    kinds: list[dict[str, Any]],
    connections: int,
    seconds: float,
    *,
    limit: int = 0,
    warmup: int = 3,
    seed: int = 1,
) -> LoadResult:
    """Run bench/loadgen.py against the server; the server's CPU is measured around it."""
    plan = {
        "host": served.host,
        "port": served.port,
        "connections": connections,
        "seconds": seconds,
        "limit": limit,
        "warmup": warmup,
        "seed": seed,
        "kinds": kinds,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(plan, f)
    try:
        cpu_before = served.cpu()
        result = subprocess.run(
            [sys.executable, str(HERE / "loadgen.py"), f.name],
            capture_output=True,
            text=True,
            timeout=seconds + 600,
            check=False,
        )
        cpu_after = served.cpu()
    finally:
        os.unlink(f.name)
    if result.returncode != 0:
        raise RuntimeError(f"loadgen failed: {result.stderr[-3000:]}")
    data = json.loads(result.stdout)
    return LoadResult(
        data["wall"],
        data["client_cpu"],
        cpu_after - cpu_before,  # includes warm-up requests: a slight overestimate
        data["transport_errors"],
        data["kinds"],
    )


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


# --------------------------------------------------------------------------- bulk loads and bare SQL
# (bench/recovery.py and bench/sweep.py: data loaded through the bare driver, and the statements
# the app sent replayed through it)


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as libpq takes it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


_libpq = libpq


def _sqlite_value(value: Any) -> Any:
    """A value as the app stores it on SQLite: a datetime as SQLAlchemy's DateTime writes a UTC
    one (UTCDateTime drops the zone there), a day as ISO, a flag as 0 or 1."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


class Writer:
    """Bulk rows into one table at a time through the bare driver. For the load only: SQLite
    without a journal or syncs (a crashed load is thrown away: the cache's JSON is written
    last), PostgreSQL without waiting for the WAL flush at commit; the loaded tables' secondary
    indexes are dropped first and built again by `finish()`."""

    def __init__(self, url: str, tables: Sequence[str] = ()) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(make_url(url).database)
            for pragma in (
                "journal_mode=OFF",
                "synchronous=OFF",
                "locking_mode=EXCLUSIVE",
                "temp_store=MEMORY",
                "cache_size=-524288",  # 512 MB of pages: the index builds sort in memory
            ):
                self.conn.execute(f"PRAGMA {pragma}")
        else:
            self.conn = psycopg.connect(libpq(url))
            self.conn.execute("SET synchronous_commit = off")
            self.conn.execute("SET maintenance_work_mem = '512MB'")
        self.count = 0
        self.tables = tuple(tables)
        self.indexes = self._drop_indexes() if self.tables else []

    def _drop_indexes(self) -> list[str]:
        """Drop the loaded tables' secondary indexes (not those of a primary key or unique
        constraint); returns the statements that build them again."""
        names = ", ".join(f"'{t}'" for t in self.tables)
        if self.sqlite:
            found = self.conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "  # noqa: S608 - our names
                f"AND tbl_name IN ({names})"
            ).fetchall()
        else:
            found = self.conn.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i "  # noqa: S608 - our names
                "WHERE i.schemaname = current_schema() "
                f"AND i.tablename IN ({names}) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
                "WHERE c.conname = i.indexname AND c.contype IN ('p', 'u', 'x'))"
            ).fetchall()
        for name, _ in found:
            self.conn.execute(f'DROP INDEX "{name}"')
        self.conn.commit()
        return [sql for _, sql in found]

    def finish(self, serial_tables: Sequence[str] = ()) -> None:
        """Set PostgreSQL's id sequences of `serial_tables` past the loaded ids, build the
        dropped indexes, and put SQLite back in its own journal mode."""
        if not self.sqlite:
            with self.conn.cursor() as cur:
                for table in serial_tables:
                    cur.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608 - our names
                    )
            self.conn.commit()
        for sql in self.indexes:
            self.conn.execute(sql)
        self.conn.commit()
        if self.sqlite:
            self.conn.execute("PRAGMA locking_mode=NORMAL")
            self.conn.execute("PRAGMA journal_mode=WAL")

    def _sqlite_rows(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """Rows as SQLite stores them, a column at a time: each distinct date, datetime or flag
        converted once (a year of days and a few times a day: few distinct values among
        millions), the rest by look-up."""
        columns: list[Any] = list(zip(*rows, strict=True))
        converted = False
        for i, column in enumerate(columns):
            sample = next((v for v in column if v is not None), None)
            if not isinstance(sample, (date, bool)):  # a datetime is a date
                continue
            mapping = {v: _sqlite_value(v) for v in set(column)}
            columns[i] = list(map(mapping.__getitem__, column))
            converted = True
        return list(zip(*columns, strict=True)) if converted else rows

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        self.count += len(rows)
        if self.sqlite:
            marks = ", ".join("?" for _ in columns)
            self.conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",  # noqa: S608 - our names
                self._sqlite_rows(rows),
            )
        else:
            with (
                self.conn.cursor() as cur,
                cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


Captured = list[tuple[str, Any, bool]]


class Capture:
    """Every statement one call sends to the database, as sent (SQL text and parameters)."""

    def __init__(self, engine: Engine, selects_only: bool) -> None:
        self.engine, self.selects_only = engine, selects_only
        self.found: Captured = []

    def _hook(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if self.selects_only and not statement.lstrip().upper().startswith(("SELECT", "WITH")):
            return
        # A batch of "insertmanyvalues" (several rows' VALUES in one INSERT) comes flagged as
        # many but is one execute with one flat set of parameters.
        if many and isinstance(parameters, tuple | dict):
            many = False
        self.found.append((statement, parameters, many))

    def __enter__(self) -> Capture:
        event.listen(self.engine, "before_cursor_execute", self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._hook)


def _relinked(sql: str, params: Any, many: bool, entry_ids: list[Any]) -> Any:
    """The links of a captured audit entry to the patients it showed, pointed at the entries the
    replay inserted: the captured ids, in order, become the replay's last ones (appended again
    under their original ids, the links would repeat a key of the append-only table)."""
    if not entry_ids or not sql.startswith("INSERT INTO audit_entry_patients"):
        return params

    def original(values: Any) -> Any:
        return values["audit_entry_id"] if isinstance(values, dict) else tuple(values)[0]

    def one(values: Any, new: dict[Any, Any]) -> Any:
        if isinstance(values, dict):
            return {**values, "audit_entry_id": new[values["audit_entry_id"]]}
        return (new[tuple(values)[0]], *tuple(values)[1:])

    rows = params if many else [params]
    if not many and not isinstance(params, dict) and len(tuple(params)) > 2:  # multi-VALUES
        flat = tuple(params)
        pairs = [flat[i : i + 2] for i in range(0, len(flat), 2)]
        new = dict(
            zip(sorted({p[0] for p in pairs}), sorted(entry_ids)[-len(pairs) :], strict=False)
        )
        return tuple(v for p in pairs for v in (new.get(p[0], p[0]), p[1]))
    originals = sorted({original(v) for v in rows})
    new = dict(zip(originals, sorted(entry_ids)[-len(originals) :], strict=False))
    out = [one(v, new) for v in rows]
    return out if many else out[0]


class Bare:
    """The same statements through the bare driver (sqlite3 / psycopg), one connection."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        self.conn: Any = (
            sqlite3.connect(make_url(url).database, isolation_level=None)
            if self.sqlite
            else psycopg.connect(_libpq(url))
        )
        if self.sqlite:
            self.conn.execute("PRAGMA foreign_keys=ON")

    def run(self, statements: Captured, commit: bool) -> int:
        """Replay `statements`; the patients an audit entry showed are linked to the entry the
        replay just inserted (their captured entry id is the original's: appended again, the
        link would repeat its key)."""
        rows = 0
        entry_ids: list[Any] = []
        if self.sqlite:
            if commit:
                self.conn.execute("BEGIN IMMEDIATE")
            for sql, params, many in statements:
                params = _relinked(sql, params, many, entry_ids)
                if many:
                    self.conn.executemany(sql, params)
                else:
                    cursor = self.conn.execute(sql, params)
                    found = cursor.fetchall()
                    rows += len(found)
                    if sql.startswith("INSERT INTO audit_entries"):
                        entry_ids = [row[0] for row in found] or [cursor.lastrowid]
            if commit:
                self.conn.execute("COMMIT")
            return rows
        with self.conn.cursor() as cur:
            for sql, params, many in statements:
                params = _relinked(sql, params, many, entry_ids)
                if many:
                    cur.executemany(sql, params)
                else:
                    cur.execute(sql, params)
                    if cur.description is not None:
                        found = cur.fetchall()
                        rows += len(found)
                        if sql.startswith("INSERT INTO audit_entries"):
                            entry_ids = [row[0] for row in found]
        self.conn.commit()
        return rows

    def close(self) -> None:
        self.conn.close()
