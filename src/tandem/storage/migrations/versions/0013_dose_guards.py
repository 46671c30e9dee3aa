"""medications: who overrode a dose guard, and why

medication_administrations.override_by (-> users.id, ON DELETE RESTRICT) and override_reason:
an as-needed dose given a second time for one assessment, or over the protocol's 24-hour
maximum, is stored only with a prescriber's override and its reason. SQLite rebuilds the
table for the foreign key (batch "recreate"); its triggers are re-created.

Revision ID: 0013_dose_guards
Revises: 0010_audit_chain
Create Date: 2026-12-01 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_dose_guards"
down_revision = "0010_audit_chain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    triggers = _sqlite_triggers("medication_administrations")
    with op.batch_alter_table("medication_administrations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("override_by", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("override_reason", sa.Text(), server_default="", nullable=False)
        )
        batch_op.create_foreign_key(
            "fk_medadmin_override_by", "users", ["override_by"], ["id"], ondelete="RESTRICT"
        )
    for sql in triggers:
        op.execute(sql)


def downgrade() -> None:
    triggers = _sqlite_triggers("medication_administrations")
    with op.batch_alter_table("medication_administrations", schema=None) as batch_op:
        batch_op.drop_constraint("fk_medadmin_override_by", type_="foreignkey")
        batch_op.drop_column("override_reason")
        batch_op.drop_column("override_by")
    for sql in triggers:
        op.execute(sql)


def _sqlite_triggers(table: str) -> list[str]:
    """The CREATE TRIGGER statements on `table` (SQLite drops them when batch rebuilds it)."""
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return []
    rows = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
        {"t": table},
    )
    return [str(sql) for (sql,) in rows if sql]
