"""choice: the patient's treatment decisions (decision aid), history kept

Revision ID: 0022_choice
Revises: 0018_recovery
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0022_choice"
down_revision = "0018_recovery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "choice_treatment_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("substance", sa.String(length=40), nullable=False),
        sa.Column("phase", sa.String(length=40), nullable=False),
        sa.Column("choice", sa.String(length=60), nullable=False),
        sa.Column("preferences", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("discussed_on", sa.Date(), nullable=False),
        sa.Column("discussed_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_choice_decisions_patient",
        "choice_treatment_decisions",
        ["patient_id", "recorded_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_choice_decisions_patient", table_name="choice_treatment_decisions")
    op.drop_table("choice_treatment_decisions")
