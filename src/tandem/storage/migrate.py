"""Run Alembic migrations from code (at `tandem init`, `tandem serve` and in tests).

The revisions form one linear history. Databases made while the history still had three
branches (0003_detox, 0004_medications and 0005_identifier_patient_index each revising
0002_shared) record one row per branch in alembic_version; `upgrade` collapses those rows
to the one revision of the linear history they amount to, then upgrades to the head.

On SQLite, adding a foreign key rebuilds the table (create a copy, drop the original, rename),
and with foreign keys enforced the drop of a table that others reference fails. So `upgrade`
runs with foreign keys off, as SQLite's documentation prescribes for such changes, and checks
every foreign key (PRAGMA foreign_key_check) before the migration commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"

# Each revision's parent in the old, branched history (before it was made linear).
BRANCHED_PARENTS: dict[str, str | None] = {
    "0001_platform": None,
    "0002_shared": "0001_platform",
    "0003_detox": "0002_shared",
    "0004_medications": "0002_shared",
    "0005_identifier_patient_index": "0002_shared",
    "0006_medication_dues": "0004_medications",
    "0007_patient_name_words": "0005_identifier_patient_index",
    "0008_detox_census": "0003_detox",
}

_VERSION_TABLE = sa.table("alembic_version", sa.column("version_num", sa.String(32)))


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolation
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection, sqlite_foreign_keys_off(connection):
        with connection.begin():
            collapse_branched_revisions(connection)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Back to `revision` ("base": an empty database). For tests and for undoing a release."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection, sqlite_foreign_keys_off(connection):
        with connection.begin():
            collapse_branched_revisions(connection)
            config.attributes["connection"] = connection
            command.downgrade(config, revision)


def head_revision() -> str:
    """The one head of the linear history."""
    head = script_directory().get_current_head()
    assert head is not None, "no migration revisions"
    return head


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def linear_history(script: ScriptDirectory | None = None) -> list[str]:
    """Every revision id, oldest first."""
    script = script or script_directory()
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def collapse_branched_revisions(connection: Connection) -> str | None:
    """Replace the rows of the old branched history by the latest of them, in the caller's
    transaction. Returns the revision kept, or None when there was nothing to collapse.

    Refuses (RuntimeError) when the recorded revisions do not amount to a beginning of the
    linear history: collapsing would then skip a revision that never ran.
    """
    recorded = set(MigrationContext.configure(connection).get_current_heads())
    if len(recorded) < 2:
        return None
    script = script_directory()
    chain = linear_history(script)
    unknown = recorded - set(chain)
    if unknown:
        raise RuntimeError(
            f"alembic_version holds revisions this release does not know: {sorted(unknown)}"
        )
    applied: set[str] = set()
    for revision in recorded:
        current: str | None = revision
        while current is not None and current not in applied:
            applied.add(current)
            if current in BRANCHED_PARENTS:
                current = BRANCHED_PARENTS[current]
            else:
                parent = script.get_revision(current).down_revision
                assert parent is None or isinstance(parent, str)
                current = parent
    latest = max(recorded, key=chain.index)
    missing = [rev for rev in chain[: chain.index(latest) + 1] if rev not in applied]
    if missing:
        raise RuntimeError(
            f"alembic_version holds {sorted(recorded)} from the old branched history, but "
            f"{missing} never ran on this database; upgrade it to every head with the previous "
            "release first"
        )
    connection.execute(_VERSION_TABLE.delete())
    connection.execute(_VERSION_TABLE.insert().values(version_num=latest))
    return latest


@contextmanager
def sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Foreign keys off on this SQLite connection while the block runs (no-op elsewhere)."""
    if connection.dialect.name != "sqlite":
        yield
        return
    # The pragma is ignored inside a transaction: set it before anything begins one.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    if connection.exec_driver_sql("PRAGMA foreign_keys").scalar() != 0:
        raise RuntimeError("could not turn SQLite foreign keys off: a transaction is open")
    connection.commit()
    try:
        yield
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def check_foreign_keys(connection: Connection) -> None:
    """Raise when any row of this SQLite database breaks a foreign key (run before commit)."""
    if connection.dialect.name != "sqlite":
        return
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        raise RuntimeError(
            f"{len(broken)} rows break a foreign key after migrating, in tables {tables}"
        )
