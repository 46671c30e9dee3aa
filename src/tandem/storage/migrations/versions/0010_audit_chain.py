"""audit: the hash chain, and no way to replace or empty the trail from SQL

- audit_chain: one row per sealed audit entry, holding the chain hash (tandem.access.audit_chain).
  Append-only like the trail itself.
- SQLite: `INSERT OR REPLACE` replaces a row by deleting it, and that delete fires no trigger
  (unless recursive_triggers is on, which tandem.storage.db now turns on for every connection).
  A BEFORE INSERT trigger on each audit table refuses a key that is already there, so REPLACE
  never gets as far as the delete.
- PostgreSQL: TRUNCATE fires no row trigger; a BEFORE TRUNCATE trigger on each audit table
  refuses it. audit_horizon(): waits for every transaction writing audit entries to end and
  returns the highest entry id, so the sealer never chains past an entry still to commit. It is
  SECURITY DEFINER (run as the tables' owner, which may lock the table; the application role,
  granted INSERT and SELECT only, may not) with its search_path pinned to this schema.

Revision ID: 0010_audit_chain
Revises: 0011_accounts
Create Date: 2026-12-01 19:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0010_audit_chain"
down_revision = "0011_accounts"
branch_labels = None
depends_on = None

UTC_DATETIME = tandem.storage.db.UTCDateTime(timezone=True)

# table -> the condition "NEW's key is already in the table"
KEYS = {
    "audit_entries": "id = NEW.id",
    "audit_entry_patients": "audit_entry_id = NEW.audit_entry_id AND patient_id = NEW.patient_id",
    "audit_chain": "entry_id = NEW.entry_id",
}
MESSAGE = "audit entries are append-only"


def upgrade() -> None:
    op.create_table(
        "audit_chain",
        sa.Column("entry_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["audit_entries.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("entry_id"),
    )
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_chain_no_{verb.lower()} BEFORE {verb} ON audit_chain "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
        for table, same_key in KEYS.items():
            op.execute(
                f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "  # noqa: S608 - constant names
                f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {same_key}) "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
        return
    op.execute(
        "CREATE FUNCTION audit_chain_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain "
        "FOR EACH ROW EXECUTE FUNCTION audit_chain_append_only()"
    )
    for table in KEYS:
        function = "audit_chain_append_only" if table == "audit_chain" else f"{table}_append_only"
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    op.execute(
        "CREATE FUNCTION audit_horizon() RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER AS $$ "
        "BEGIN "
        "LOCK TABLE audit_entries IN SHARE MODE; "
        "RETURN (SELECT coalesce(max(id), 0) FROM audit_entries); "
        "END $$"
    )
    # Pinned to the schema the migration runs in (read on the server: no name in this file).
    op.execute(
        "DO $$ BEGIN EXECUTE format("
        "'ALTER FUNCTION audit_horizon() SET search_path = %I, pg_temp', current_schema()); "
        "END $$"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in KEYS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_no_delete")
    else:
        op.execute("DROP FUNCTION IF EXISTS audit_horizon()")
        for table in KEYS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER IF EXISTS audit_chain_append_only ON audit_chain")
    op.drop_table("audit_chain")
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS audit_chain_append_only()")
