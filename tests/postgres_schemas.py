"""Fresh PostgreSQL schemas for tests, cheaply: record once, replay per test.

Once per test process, the Alembic migrations (and, separately, the building of the test world)
run against a template schema while every statement the driver receives is recorded. A test's
schema is then made by replaying those statements, verbatim and in one transaction, into a new,
empty schema (`search_path` points at it) and dropped afterwards. That is a fresh clone each time:
nothing is truncated or deleted (audit entries are append-only), it needs no right beyond CREATE
on the database, and there is no DROP DATABASE (which forces a server-wide checkpoint).

A replay that differs from the template in any table, column, default, constraint, index,
trigger, function, sequence or row is refused when the recording is made (see `verify`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from psycopg import Pipeline
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

Statement = tuple[str, str, Any]  # (how: execute|executemany|plain, SQL, parameters)

PREFIX = "tandem_test_"


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
        self._numbers = itertools.count(1)

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

    def close(self) -> None:
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
