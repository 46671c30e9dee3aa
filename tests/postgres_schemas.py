"""PostgreSQL schemas for tests, cheaply: record once, replay, then reset and reuse.

Once per test run, the Alembic migrations (and, separately, the building of the test world)
run against a template schema while every statement the driver receives is recorded. A schema
is made by replaying those statements, verbatim and in one transaction, into a new, empty schema
(`search_path` points at it). There is no DROP DATABASE (which forces a server-wide checkpoint).

A replay that differs from the template in any table, column, default, constraint, index,
trigger, function, sequence or row is refused when the recording is made (see `verify`).

Replaying some 200 DDL statements and dropping the schema afterwards costs far more than the
average test (catalog writes, files made and unlinked): so a test's schema is handed back after
the test (`checkin`) and, unless the test changed its structure, its rows are put back as the
replay left them (every table emptied and refilled from an untouched "pristine" replay of the
same steps, every sequence set back) in one transaction with triggers off (the audit tables
refuse DELETE to the application, not to the test harness); the next test of the process gets
it (`checkout`). The structure (tables, columns, defaults, constraints, indexes, triggers and
whether they are enabled, functions, owners and privileges, policies, views) is fingerprinted when
the schema is made and again at checkin: a test that changed any of it (a role test reassigning
owners, say) leaves a schema that is dropped, not reused. So is the schema of a test that failed
(a request it started may still be under way) and one another connection still holds a lock in.
Autovacuum is off on a reused schema's tables (see `_no_autovacuum`). Where the harness may not
turn triggers off (`session_replication_role` needs a superuser), every test gets a new replay.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from psycopg import Pipeline
from psycopg.errors import InsufficientPrivilege
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

Statement = tuple[str, str, Any]  # (how: execute|executemany|plain, SQL, parameters)

PREFIX = "tandem_test_"
_NUMBERS = itertools.count(1)


@contextmanager
def recording(engine: Engine) -> Iterator[list[Statement]]:
    """Every statement `engine` sends to the driver inside the block, as the driver gets it."""
    statements: list[Statement] = []

    def execute(cursor, statement, parameters, context):  # type: ignore[no-untyped-def]
        statements.append(("execute", statement, parameters))

    def executemany(cursor, statement, parameters, context):  # type: ignore[no-untyped-def]
        statements.append(("executemany", statement, list(parameters)))

    def plain(cursor, statement, context):  # type: ignore[no-untyped-def]
        statements.append(("plain", statement, None))

    listeners = (("do_execute", execute), ("do_executemany", executemany))
    listeners += (("do_execute_no_params", plain),)
    for name, fn in listeners:
        event.listen(engine, name, fn)
    try:
        yield statements
    finally:
        for name, fn in listeners:
            event.remove(engine, name, fn)


def schema_url(server_url: str, schema: str) -> str:
    sep = "&" if "?" in server_url else "?"
    return f"{server_url}{sep}options=-csearch_path%3D{schema}"


class SchemaCloner:
    """Per test process: the recordings, and a schema of its own for each test."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.server = create_engine(server_url, poolclass=NullPool)
        self.stem = f"{PREFIX}{os.getpid()}"
        self.recordings: dict[str, list[Statement]] = {}
        self._numbers = _NUMBERS  # one count per process: cloners there never pick one name
        self._free: dict[tuple[str, ...], list[str]] = {}  # reset schemas, ready for a test
        self._shapes: dict[str, str] = {}  # schema -> its structure's fingerprint when made
        self._pristine: dict[tuple[str, ...], Pristine] = {}
        self.resettable = True  # False once the server refused to turn triggers off

    def record(
        self, steps: dict[str, Callable[[Engine], object]], make_engine: Callable[[str], Engine]
    ) -> dict[str, object]:
        """Run the steps, in order, on a template schema, recording each; then check a replay of
        all of them against the template. Returns what each step returned."""
        self.drop_leftovers()
        template = f"{self.stem}_template"
        self.drop(template)
        self._execute(f'CREATE SCHEMA "{template}"')
        results: dict[str, object] = {}
        try:
            engine = make_engine(schema_url(self.server_url, template))
            try:
                for name, step in steps.items():
                    with recording(engine) as statements:
                        results[name] = step(engine)
                    self.recordings[name] = statements
            finally:
                engine.dispose()
            copy = self.clone(*steps)
            try:
                self.verify(template, copy)
            finally:
                self.drop(copy)
        finally:
            self.drop(template)
        return results

    def record_on(
        self,
        base: tuple[str, ...],
        name: str,
        step: Callable[[Engine], object],
        make_engine: Callable[[str], Engine],
    ) -> object:
        """Record one more step, run on a replay of the `base` steps (checked like `record`);
        returns what the step returned."""
        template = self.clone(*base)
        try:
            engine = make_engine(self.url(template))
            try:
                with recording(engine) as statements:
                    result = step(engine)
            finally:
                engine.dispose()
            self.recordings[name] = statements
            copy = self.clone(*base, name)
            try:
                self.verify(template, copy)
            finally:
                self.drop(copy)
        finally:
            self.drop(template)
        return result

    def clone(self, *steps: str) -> str:
        """A new schema holding what the given recorded steps made; returns its name."""
        name = f"{self.stem}_{next(self._numbers)}"
        raw = self.server.raw_connection()
        try:
            connection = raw.driver_connection
            with connection.pipeline() if Pipeline.is_supported() else nullcontext():
                cursor = connection.cursor()
                cursor.execute(f'CREATE SCHEMA "{name}"')
                cursor.execute(f'SET LOCAL search_path TO "{name}"')
                for step in steps:
                    for how, statement, parameters in self.recordings[step]:
                        if how == "executemany":
                            cursor.executemany(statement, parameters)
                        elif how == "plain":
                            cursor.execute(statement)
                        else:
                            cursor.execute(statement, parameters)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
        return name

    def url(self, schema: str) -> str:
        return schema_url(self.server_url, schema)

    def drop(self, schema: str) -> None:
        self._execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    # --- reuse: a schema per test, reset rather than rebuilt ----------------------------------

    def checkout(self, *steps: str) -> str:
        """A schema holding exactly what the given recorded steps made, for one test."""
        free = self._free.get(steps)
        if free:
            return free.pop()
        name = self.clone(*steps)
        if self.resettable:
            self._no_autovacuum(name)
            self._shapes[name] = self.shape(name)
        return name

    def checkin(self, name: str, *steps: str, reuse: bool = True) -> None:
        """The test is over: reset the schema for the next test, or drop it when the test changed
        its structure, when something still holds a lock in it (a request of a failed test still
        under way, say), when `reuse` is False (the caller's test failed), or when the server will
        not let the harness reset it."""
        shape = self._shapes.pop(name, None)
        if (
            reuse
            and self.resettable
            and shape is not None
            and not self._in_use(name)
            and shape == self.shape(name)
        ):
            try:
                self._reset(name, self._pristine_of(steps))
            except InsufficientPrivilege:
                self.resettable = False
            else:
                self._shapes[name] = shape
                self._free.setdefault(steps, []).append(name)
                return
        self.drop(name)

    def _no_autovacuum(self, schema: str) -> None:
        """Autovacuum off for the schema's tables. A reused schema's tables gather dead rows
        (every reset deletes), and a vacuum under way holds a lock that the audit sealer's SHARE
        lock waits for (`tandem.access.audit_chain.horizon` gives up after 500 ms); a schema
        made for one test never had enough dead rows for autovacuum to come."""
        with self.server.begin() as conn:
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            ).scalars()
            for table in list(tables):  # names from the catalog, quoted
                conn.execute(
                    text(
                        f'ALTER TABLE "{schema}"."{table}" SET (autovacuum_enabled = off, '
                        "toast.autovacuum_enabled = off)"
                    )
                )

    def _in_use(self, schema: str) -> bool:
        """Does another connection hold a lock on anything in the schema (a transaction open)?"""
        with self.server.connect() as conn:
            return bool(conn.execute(text(_IN_USE), {"s": schema}).scalar())

    def shape(self, schema: str) -> str:
        """A fingerprint of the schema's structure (not its rows)."""
        with self.server.begin() as conn:
            # By index, from the schema's own objects: catalogs swell with dead rows when
            # schemas are made and dropped all day, and a scan of them costs more than a reset.
            for setting in ("enable_seqscan", "enable_hashjoin", "enable_mergejoin"):
                conn.execute(text(f"SET LOCAL {setting} = off"))
            return str(conn.execute(text(_SHAPE), {"s": schema}).scalar_one())

    def _pristine_of(self, steps: tuple[str, ...]) -> Pristine:
        if steps not in self._pristine:
            name = self.clone(*steps)
            with self.server.connect() as conn:
                tables = list(
                    conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY 1"),
                        {"s": name},
                    ).scalars()
                )
                filled = []
                for table in tables:  # names from the catalog, quoted
                    query = f'SELECT EXISTS (SELECT FROM "{name}"."{table}")'  # noqa: S608
                    if conn.execute(text(query)).scalar():
                        filled.append(table)
                sequences = []
                for (sequence,) in conn.execute(
                    text("SELECT sequencename FROM pg_sequences WHERE schemaname = :s ORDER BY 1"),
                    {"s": name},
                ):
                    query = f'SELECT last_value, is_called FROM "{name}"."{sequence}"'  # noqa: S608
                    value, called = conn.execute(text(query)).one()
                    sequences.append((str(sequence), int(value), bool(called)))
            self._pristine[steps] = Pristine(name, tables, filled, sequences)
        return self._pristine[steps]

    def _reset(self, schema: str, pristine: Pristine) -> None:
        raw = self.server.raw_connection()
        try:
            connection = raw.driver_connection
            with connection.pipeline() if Pipeline.is_supported() else nullcontext():
                cursor = connection.cursor()
                # No triggers: the append-only guards, and the foreign keys (every row goes).
                cursor.execute("SET LOCAL session_replication_role = replica")
                for table in pristine.tables:
                    cursor.execute(f'DELETE FROM "{schema}"."{table}"')  # noqa: S608
                for table in pristine.filled:
                    cursor.execute(
                        f'INSERT INTO "{schema}"."{table}" '  # noqa: S608 - names from the catalog
                        f'SELECT * FROM "{pristine.schema}"."{table}"'
                    )
                for sequence, value, called in pristine.sequences:
                    cursor.execute(
                        "SELECT setval(%s::regclass, %s::bigint, %s::boolean)",
                        (f'"{schema}"."{sequence}"', value, called),
                    )
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()

    def close(self) -> None:
        """Drop the schemas kept for reuse, then let go of the server."""
        kept = [name for names in self._free.values() for name in names]
        kept += [pristine.schema for pristine in self._pristine.values()]
        for name in kept:
            self.drop(name)
        self._free.clear()
        self._pristine.clear()
        self.server.dispose()

    def verify(self, template: str, copy: str) -> None:
        want, got = self.signature(template), self.signature(copy)
        if want != got:
            missing = sorted(want - got)[:5]
            extra = sorted(got - want)[:5]
            raise RuntimeError(
                "replaying the recorded migrations did not rebuild the template schema "
                f"(a migration step the recording cannot see?): missing {missing}, extra {extra}"
            )

    def signature(self, schema: str) -> set[tuple[str, str]]:
        """Tables, columns, defaults, constraints, indexes, triggers, functions, sequences and
        every row of a schema, with the schema's own name taken out."""
        with self.server.connect() as conn:
            rows = {(kind, what) for kind, what in conn.execute(text(_SIGNATURE), {"s": schema})}
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            ).scalars()
            for table in list(tables):  # names from the catalog, quoted
                query = f'SELECT t::text FROM "{schema}"."{table}" t ORDER BY 1'  # noqa: S608
                every_row = [row for (row,) in conn.execute(text(query))]
                content = (len(every_row), hashlib.sha256("|".join(every_row).encode()).hexdigest())
                rows.add(("rows", f"{table}:{content[0]}:{content[1]}"))
        return {(kind, re.sub(rf'"?{re.escape(schema)}"?\.', "", what)) for kind, what in rows}

    def drop_leftovers(self) -> None:
        """Schemas of earlier runs on this machine whose process has gone (a killed run)."""
        if (make_url(self.server_url).host or "localhost") not in ("localhost", "127.0.0.1", "::1"):
            return
        with self.server.connect() as conn:
            names = list(
                conn.execute(
                    text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"),
                    {"p": PREFIX + "%"},
                ).scalars()
            )
        for name in names:
            match = re.fullmatch(rf"{PREFIX}(\d+)(_\w+)?", name)
            if match and not _alive(int(match.group(1))):
                self.drop(name)

    def _execute(self, statement: str) -> None:
        with self.server.begin() as conn:
            conn.execute(text(statement))


@dataclass(frozen=True)
class Pristine:
    """An untouched replay of some steps: where a used schema's rows are refilled from."""

    schema: str
    tables: list[str]
    filled: list[str]  # the tables holding rows
    sequences: list[tuple[str, int, bool]]  # name, last_value, is_called


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SIGNATURE = """
SELECT 'relation', c.relname || ':' || c.relkind::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s
UNION ALL
SELECT 'column', c.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod)
    || ':' || a.attnotnull::text || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = :s AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', c.relname || '.' || co.conname || ':' || pg_get_constraintdef(co.oid)
FROM pg_constraint co
JOIN pg_namespace n ON n.oid = co.connamespace
LEFT JOIN pg_class c ON c.oid = co.conrelid
WHERE n.nspname = :s
UNION ALL
SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = :s
UNION ALL
SELECT 'trigger', pg_get_triggerdef(t.oid)
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :s AND NOT t.tgisinternal
UNION ALL
SELECT 'function', p.proname || ':' || pg_get_function_identity_arguments(p.oid) || ':'
    || md5(p.prosrc)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :s
UNION ALL
SELECT 'view', viewname || ':' || definition FROM pg_views WHERE schemaname = :s
UNION ALL
SELECT 'sequence', sequencename || ':' || coalesce(last_value::text, '-')
FROM pg_sequences WHERE schemaname = :s
"""

# The structure of a schema, hashed, from the catalog's own columns (no deparsing: this runs after
# every test). Anything dropped and made again comes back with a new oid, so oids stand for
# definitions; what can change in place is listed: names, owners, privileges, options, columns
# (position, type, nullability, default), whether a trigger fires, whether a constraint is
# validated, a function's source and settings, a sequence's parameters, enum labels.
_SHAPE = """
WITH ns AS (SELECT oid, nspowner, nspacl FROM pg_namespace WHERE nspname = :s),
member AS (  -- what lives in the schema (its indexes and triggers hang on its tables)
    SELECT d.classid, d.objid FROM pg_depend d JOIN ns ON d.refobjid = ns.oid
    WHERE d.refclassid = 'pg_namespace'::regclass
),
tab AS (
    SELECT c.* FROM pg_class c JOIN member m ON m.objid = c.oid
    WHERE m.classid = 'pg_class'::regclass
),
rel AS (
    SELECT * FROM tab
    UNION ALL
    SELECT c.* FROM pg_index i JOIN tab ON tab.oid = i.indrelid JOIN pg_class c ON c.oid = i.indexrelid
)
SELECT md5(coalesce(string_agg(x, E'\\n' ORDER BY x), '')) FROM (
    SELECT concat_ws(':', 'n', nspowner, nspacl) AS x FROM ns
    UNION ALL
    SELECT concat_ws(':', 'c', oid, relname, relkind, relowner, relacl, relrowsecurity,
        relforcerowsecurity, reloptions, relnatts, relpersistence, relreplident)
    FROM rel
    UNION ALL
    SELECT concat_ws(':', 'a', a.attrelid, a.attnum, a.attname, a.atttypid, a.atttypmod,
        a.attnotnull, a.attisdropped, a.atthasdef, a.attidentity, a.attgenerated, a.attacl)
    FROM pg_attribute a JOIN rel ON rel.oid = a.attrelid
    WHERE a.attnum > 0
    UNION ALL
    SELECT concat_ws(':', 'd', d.oid, d.adrelid, d.adnum)
    FROM pg_attrdef d JOIN rel ON rel.oid = d.adrelid
    UNION ALL
    SELECT concat_ws(':', 'k', co.oid, co.conname, co.convalidated, co.condeferrable,
        co.condeferred)
    FROM pg_constraint co JOIN tab ON tab.oid = co.conrelid
    UNION ALL
    SELECT concat_ws(':', 't', t.oid, t.tgname, t.tgenabled)
    FROM pg_trigger t JOIN rel ON rel.oid = t.tgrelid
    WHERE NOT t.tgisinternal
    UNION ALL
    SELECT concat_ws(':', 'f', p.oid, p.proname, md5(p.prosrc), p.proowner, p.proacl,
        p.prosecdef, p.proconfig, p.provolatile)
    FROM pg_proc p JOIN member m ON m.objid = p.oid AND m.classid = 'pg_proc'::regclass
    UNION ALL
    SELECT concat_ws(':', 'p', pol.oid, pol.polname, pol.polroles, pol.polpermissive)
    FROM pg_policy pol JOIN rel ON rel.oid = pol.polrelid
    UNION ALL
    SELECT concat_ws(':', 'r', r.oid, r.rulename, r.ev_enabled)
    FROM pg_rewrite r JOIN rel ON rel.oid = r.ev_class
    UNION ALL
    SELECT concat_ws(':', 'g', d.oid, d.defaclrole, d.defaclobjtype, d.defaclacl)
    FROM pg_default_acl d JOIN ns ON d.defaclnamespace = ns.oid
    UNION ALL
    SELECT concat_ws(':', 'q', q.seqrelid, q.seqtypid, q.seqstart, q.seqincrement, q.seqmax,
        q.seqmin, q.seqcycle)
    FROM pg_sequence q JOIN rel ON rel.oid = q.seqrelid
    UNION ALL
    SELECT concat_ws(':', 'y', t.oid, t.typname, t.typowner, t.typacl, e.oid, e.enumlabel)
    FROM pg_type t JOIN member m ON m.objid = t.oid AND m.classid = 'pg_type'::regclass
    LEFT JOIN pg_enum e ON e.enumtypid = t.oid
) shape
"""

_IN_USE = """
SELECT EXISTS (
    SELECT FROM pg_locks l
    WHERE l.locktype = 'relation' AND l.pid <> pg_backend_pid()
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND EXISTS (
            SELECT FROM pg_class c
            WHERE c.oid = l.relation
                AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = :s)
        )
)
"""
