"""SMART on FHIR: EHR launches from the chart, apps' launch URLs, backend services' key set
addresses, and signing keys sealed with a secret kept outside the database (public halves
stored apart)

Revision ID: 0024_smart_launch
Revises: 0019_caseload
Create Date: 2026-12-02 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0024_smart_launch"
down_revision = "0019_caseload"
branch_labels = None
depends_on = None

UTC_DATETIME = tandem.storage.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "smart_launches",
        sa.Column("launch_hash", sa.String(length=64), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("used_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(["client_pk"], ["smart_clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("launch_hash"),
    )
    with op.batch_alter_table("smart_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("jwks_uri", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("launch_url", sa.Text(), nullable=True))
    with op.batch_alter_table("smart_signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_jwk", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("smart_signing_keys", schema=None) as batch_op:
        batch_op.drop_column("public_jwk")
    with op.batch_alter_table("smart_clients", schema=None) as batch_op:
        batch_op.drop_column("launch_url")
        batch_op.drop_column("jwks_uri")
    op.drop_table("smart_launches")
