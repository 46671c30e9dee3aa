"""The same migrations build the same schema on SQLite and PostgreSQL, with no drift from the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from tandem.storage.db import make_engine, utcnow
from tandem.storage.migrate import current_revisions, head_revisions
from tandem.storage.models import AuditEntry
from tandem.storage.registry import metadata


def test_migrations_reach_every_head(engine) -> None:
    assert current_revisions(engine) == head_revisions()


def test_models_and_migrations_do_not_drift(engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == [], f"models differ from migrations; add a revision: {diff}"


def test_audit_entries_cannot_be_changed_or_deleted(engine, sessions) -> None:
    with sessions() as db:
        db.add(
            AuditEntry(
                recorded_at=utcnow(),
                actor="t",
                action="R",
                operation="read",
                outcome="0",
                channel="api",
            )
        )
        db.commit()
    for statement in ("UPDATE audit_entries SET actor = 'x'", "DELETE FROM audit_entries"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_entries")).scalar_one() == "t"


def test_sqlite_runs_wal_with_foreign_keys_and_durable_commits(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
