"""medications: a program's nursing shift start times, for the unit's administration record

Revision ID: 0017_unit_mar
Revises: 0015_fhir
Create Date: 2026-12-01 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0017_unit_mar"
down_revision = "0015_fhir"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "medication_shift_settings",
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("shift_starts", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("set_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["set_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("program_id"),
    )


def downgrade() -> None:
    op.drop_table("medication_shift_settings")
