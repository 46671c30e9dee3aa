"""alerts: the member of staff an alert is addressed to besides its role (the counselor of the
patient's care plan, for a PHQ-9 item 9 answer)

Revision ID: 0024_alert_addressee
Revises: 0024_smart_launch
Create Date: 2026-12-02 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_alert_addressee"
down_revision = "0024_smart_launch"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("for_user_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_alerts_for_user_id", "users", ["for_user_id"], ["id"], ondelete="RESTRICT"
        )
        batch_op.create_index("ix_alerts_for_user", ["for_user_id", "acknowledged_at"])


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_for_user")
        batch_op.drop_constraint("fk_alerts_for_user_id", type_="foreignkey")
        batch_op.drop_column("for_user_id")
