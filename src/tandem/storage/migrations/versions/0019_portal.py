"""portal: reminder preferences, program reminder times, reminders sent; check-in severity

Revision ID: 0019_portal
Revises: 0021_counseling
Create Date: 2026-12-01 22:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0019_portal"
down_revision = "0021_counseling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recovery_check_ins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("side_effect_severity", sa.String(length=10), nullable=True))
    op.create_table(
        "reminder_preferences",
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("check_in", sa.Boolean(), nullable=False),
        sa.Column("doses", sa.Boolean(), nullable=False),
        sa.Column("sessions", sa.Boolean(), nullable=False),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.Column("updated_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["updated_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("patient_id"),
    )
    op.create_table(
        "portal_settings",
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("check_in_reminder_at", sa.String(length=5), nullable=False),
        sa.Column("session_reminder_hours", sa.Integer(), nullable=False),
        sa.Column("set_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("set_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["set_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("program_id"),
    )
    op.create_table(
        "reminders_sent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("due_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=120), nullable=False),
        sa.Column("sent_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("reminders_sent", schema=None) as batch_op:
        batch_op.create_index(
            "ix_reminders_sent_patient", ["patient_id", "claimed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("reminders_sent", schema=None) as batch_op:
        batch_op.drop_index("ix_reminders_sent_patient")
    op.drop_table("reminders_sent")
    op.drop_table("portal_settings")
    op.drop_table("reminder_preferences")
    with op.batch_alter_table("recovery_check_ins", schema=None) as batch_op:
        batch_op.drop_column("side_effect_severity")
