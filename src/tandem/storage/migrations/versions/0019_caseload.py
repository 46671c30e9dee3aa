"""caseload: each program's risk-flag rules (versions), and the indexes the caseload's flags
and the timeline read by

Revision ID: 0019_caseload
Revises: 0020_consent
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0019_caseload"
down_revision = "0020_consent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "recovery_risk_flag_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("rules_id", sa.String(length=80), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("created_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("program_id", "content_hash", name="uq_risk_flag_versions_hash"),
    )
    op.create_index(
        "ix_risk_flag_versions_current",
        "recovery_risk_flag_versions",
        ["program_id", "is_current"],
        unique=False,
    )
    # A patient's use days only: the caseload's "use after a run of abstinence" flag.
    op.create_index(
        "ix_use_days_used",
        "use_days",
        ["patient_id", "day"],
        unique=False,
        postgresql_where=sa.text("used"),
        sqlite_where=sa.text("used = 1"),  # as SQLite queries write it (see caseload_storage)
    )


def downgrade() -> None:
    op.drop_index("ix_use_days_used", table_name="use_days")
    op.drop_index("ix_risk_flag_versions_current", table_name="recovery_risk_flag_versions")
    op.drop_table("recovery_risk_flag_versions")
