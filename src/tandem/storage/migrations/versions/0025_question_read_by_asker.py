"""counseling: when the asker last read their question's conversation (a reply sent later is new
to them: flagged in the portal, e-mailed once)

Revision ID: 0025_question_read_by_asker
Revises: 0024_alert_addressee
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0025_question_read_by_asker"
down_revision = "0024_alert_addressee"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("counseling_questions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("asker_read_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("counseling_questions", schema=None) as batch_op:
        batch_op.drop_column("asker_read_at")
