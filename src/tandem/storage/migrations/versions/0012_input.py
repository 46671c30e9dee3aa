"""platform: anonymous refusals counted per source address and minute

- anonymous_refusals: API requests without valid credentials, one row per source address and
  minute with a count, instead of one audit entry each (the first of each minute is audited).

Revision ID: 0012_input
Revises: 0013_dose_guards
Create Date: 2026-12-01 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0012_input"
down_revision = "0013_dose_guards"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "anonymous_refusals",
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("minute", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_path", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("source_ip", "minute"),
    )


def downgrade() -> None:
    op.drop_table("anonymous_refusals")
