"""counseling: questions to a counselor, their messages and notes, the public form's counts per
address; alerts may be about no patient (a visitor's crisis message)

Revision ID: 0021_counseling
Revises: 0022_choice
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0021_counseling"
down_revision = "0022_choice"
branch_labels = None
depends_on = None

UTC = tandem.storage.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "counseling_questions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("asked_by", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("crisis", sa.Text(), nullable=False),
        sa.Column("preview", sa.String(length=160), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("phone", sa.String(length=30), nullable=False),
        sa.Column("window_start", UTC, nullable=True),
        sa.Column("window_end", UTC, nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=True),
        sa.Column("asked_at", UTC, nullable=False),
        sa.Column("assigned_to", sa.Integer(), nullable=True),
        sa.Column("assigned_at", UTC, nullable=True),
        sa.Column("answered_at", UTC, nullable=True),
        sa.Column("call_at", UTC, nullable=True),
        sa.Column("call_by", sa.Integer(), nullable=True),
        sa.Column("closed_at", UTC, nullable=True),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["asked_by"], ["users.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["assigned_to"], ["users.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["call_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_index(
        "ix_counseling_questions_queue",
        "counseling_questions",
        ["program_id", "status", "urgent", "asked_at"],
    )
    op.create_index(
        "ix_counseling_questions_patient", "counseling_questions", ["patient_id", "asked_at"]
    )
    op.create_table(
        "counseling_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("question_id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("author", sa.String(length=10), nullable=False),
        sa.Column("author_user", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sent_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["question_id"], ["counseling_questions.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["author_user"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_counseling_messages_question", "counseling_messages", ["question_id", "id"])
    op.create_index(
        "ix_counseling_messages_patient", "counseling_messages", ["patient_id", "sent_at"]
    )
    op.create_table(
        "counseling_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("question_id", sa.Integer(), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("author_user", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("written_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(["question_id"], ["counseling_questions.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["author_user"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_counseling_notes_question", "counseling_notes", ["question_id", "id"])
    op.create_table(
        "counseling_ask_counts",
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("hour", UTC, nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source_ip", "hour"),
    )
    # An alert about a visitor's crisis message names no patient.
    with op.batch_alter_table("alerts") as batch:
        batch.alter_column("patient_id", existing_type=sa.String(length=36), nullable=True)


def downgrade() -> None:
    # Alerts about no patient come only from this revision's questions; they go with them.
    op.execute("DELETE FROM alerts WHERE patient_id IS NULL")
    with op.batch_alter_table("alerts") as batch:
        batch.alter_column("patient_id", existing_type=sa.String(length=36), nullable=False)
    op.drop_table("counseling_ask_counts")
    op.drop_index("ix_counseling_notes_question", table_name="counseling_notes")
    op.drop_table("counseling_notes")
    op.drop_index("ix_counseling_messages_patient", table_name="counseling_messages")
    op.drop_index("ix_counseling_messages_question", table_name="counseling_messages")
    op.drop_table("counseling_messages")
    op.drop_index("ix_counseling_questions_patient", table_name="counseling_questions")
    op.drop_index("ix_counseling_questions_queue", table_name="counseling_questions")
    op.drop_table("counseling_questions")
