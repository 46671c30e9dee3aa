"""accounts: system administrators, known devices, and access that ends

- users.system_admin: cross-program administration, granted only by the CLI.
- login_attempts.device: the known device an attempt came from; index by (email, source_ip).
- known_devices: browsers a person has signed in from before.
- Sessions and API tokens of users deactivated before this revision are ended, so that
  reactivating them does not revive old sessions.

Revision ID: 0011_accounts
Revises: 0014_rules
Create Date: 2026-12-01 19:30:00.000000
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0011_accounts"
down_revision = "0014_rules"
branch_labels = None
depends_on = None

UTC_DATETIME = tandem.storage.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("system_admin", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("device", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.create_index(
            "ix_login_attempts_email_ip_at", ["email", "source_ip", "attempted_at"], unique=False
        )
    op.create_table(
        "known_devices",
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", UTC_DATETIME, nullable=False),
        sa.Column("last_seen_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device", "user_id"),
    )
    with op.batch_alter_table("known_devices", schema=None) as batch_op:
        batch_op.create_index("ix_known_devices_user_id", ["user_id"], unique=False)
    now = sa.func.current_timestamp()
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("active", sa.Boolean()))
    inactive: Any = sa.select(users.c.id).where(users.c.active == sa.false())
    sessions = sa.table("web_sessions", sa.column("ended_at"), sa.column("user_id"))
    op.execute(
        sessions.update()
        .where(sessions.c.ended_at.is_(None), sessions.c.user_id.in_(inactive))
        .values(ended_at=now)
    )
    tokens = sa.table("api_tokens", sa.column("revoked_at"), sa.column("user_id"))
    op.execute(
        tokens.update()
        .where(tokens.c.revoked_at.is_(None), tokens.c.user_id.in_(inactive))
        .values(revoked_at=now)
    )


def downgrade() -> None:
    with op.batch_alter_table("known_devices", schema=None) as batch_op:
        batch_op.drop_index("ix_known_devices_user_id")
    op.drop_table("known_devices")
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_email_ip_at")
        batch_op.drop_column("device")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("system_admin")
