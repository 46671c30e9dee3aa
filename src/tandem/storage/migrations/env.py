"""Alembic environment: the same revisions run on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import context

from tandem.storage.db import make_engine
from tandem.storage.migrate import check_foreign_keys, sqlite_foreign_keys_off
from tandem.storage.registry import metadata

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn, sqlite_foreign_keys_off(conn):
        _run(conn)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        before = set(context.get_context().get_current_heads())
        context.run_migrations()
        if set(context.get_context().get_current_heads()) != before:
            # SQLite migrates with foreign keys off (tandem.storage.migrate): check them now.
            check_foreign_keys(connection)
    if connection.in_transaction():
        connection.commit()


run_migrations()
