"""recovery: check-ins, craving, use, drug screens, care plans, sessions

Revision ID: 0018_recovery
Revises: 0017_unit_mar
Create Date: 2026-12-01 22:15:55.622612
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0018_recovery"
down_revision = "0017_unit_mar"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "care_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("episode_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("substances", sa.JSON(), nullable=False),
        sa.Column("counselor_id", sa.Integer(), nullable=True),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("retention", sa.String(length=12), nullable=False),
        sa.Column("retention_on", sa.Date(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["counselor_id"], ["users.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["episode_id"], ["episodes.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("care_plans", schema=None) as batch_op:
        batch_op.create_index(
            "ix_care_plans_counselor", ["counselor_id", "retention"], unique=False
        )
        batch_op.create_index("ix_care_plans_patient", ["patient_id"], unique=False)
        batch_op.create_index("ix_care_plans_program", ["program_id", "retention"], unique=False)

    op.create_table(
        "drug_screens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("collected_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("specimen", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("drug_screens", schema=None) as batch_op:
        batch_op.create_index("ix_drug_screens_patient", ["patient_id", "day"], unique=False)

    op.create_table(
        "recovery_check_ins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("checked_in_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("mood", sa.String(length=40), nullable=True),
        sa.Column("side_effects", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("recorded_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("recovery_check_ins", schema=None) as batch_op:
        batch_op.create_index("ix_recovery_check_ins_patient", ["patient_id", "day"], unique=False)

    op.create_table(
        "care_plan_services",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("care_plan_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("service", sa.String(length=30), nullable=False),
        sa.Column("frequency", sa.String(length=80), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("started_on", sa.Date(), nullable=False),
        sa.Column("ended_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["care_plan_id"], ["care_plans.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["staff_id"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("care_plan_services", schema=None) as batch_op:
        batch_op.create_index("ix_care_plan_services_plan", ["care_plan_id"], unique=False)

    op.create_table(
        "craving_ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("substance", sa.String(length=20), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("rated_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("check_in_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["check_in_id"], ["recovery_check_ins.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("craving_ratings", schema=None) as batch_op:
        batch_op.create_index("ix_craving_ratings_patient", ["patient_id", "day"], unique=False)

    op.create_table(
        "drug_screen_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("screen_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("substance", sa.String(length=30), nullable=False),
        sa.Column("result", sa.String(length=10), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["screen_id"], ["drug_screens.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("screen_id", "substance", name="uq_drug_screen_results_substance"),
    )
    with op.batch_alter_table("drug_screen_results", schema=None) as batch_op:
        batch_op.create_index(
            "ix_drug_screen_results_patient", ["patient_id", "result"], unique=False
        )

    op.create_table(
        "questionnaire_responses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("instrument_id", sa.String(length=40), nullable=False),
        sa.Column("instrument_version", sa.String(length=20), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("scheme_id", sa.String(length=40), nullable=True),
        sa.Column("band_id", sa.String(length=40), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("urgent", sa.Boolean(), nullable=False),
        sa.Column("authored_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("check_in_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["check_in_id"], ["recovery_check_ins.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("questionnaire_responses", schema=None) as batch_op:
        batch_op.create_index(
            "ix_questionnaire_responses_patient",
            ["patient_id", "instrument_id", "authored_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_questionnaire_responses_urgent",
            ["program_id", "urgent", "authored_at"],
            unique=False,
        )

    op.create_table(
        "retention_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("care_plan_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("retention", sa.String(length=12), nullable=False),
        sa.Column("on_day", sa.Date(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["care_plan_id"], ["care_plans.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("retention_events", schema=None) as batch_op:
        batch_op.create_index("ix_retention_events_plan", ["care_plan_id", "on_day"], unique=False)

    op.create_table(
        "therapy_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("care_plan_id", sa.Integer(), nullable=True),
        sa.Column("service", sa.String(length=30), nullable=False),
        sa.Column("starts_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("minutes", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("status_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status_by", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["care_plan_id"], ["care_plans.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["staff_id"], ["users.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["status_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("therapy_sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_therapy_sessions_patient", ["patient_id", "starts_at"], unique=False
        )
        batch_op.create_index(
            "ix_therapy_sessions_program", ["program_id", "starts_at"], unique=False
        )

    op.create_table(
        "use_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("substance", sa.String(length=20), nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column(
            "standard_drinks", sa.Numeric(precision=5, scale=1, asdecimal=False), nullable=True
        ),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("check_in_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["check_in_id"], ["recovery_check_ins.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("patient_id", "substance", "day", name="uq_use_days_patient_day"),
    )
    with op.batch_alter_table("use_days", schema=None) as batch_op:
        batch_op.create_index("ix_use_days_patient_day", ["patient_id", "day"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("use_days", schema=None) as batch_op:
        batch_op.drop_index("ix_use_days_patient_day")

    op.drop_table("use_days")
    with op.batch_alter_table("therapy_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_therapy_sessions_program")
        batch_op.drop_index("ix_therapy_sessions_patient")

    op.drop_table("therapy_sessions")
    with op.batch_alter_table("retention_events", schema=None) as batch_op:
        batch_op.drop_index("ix_retention_events_plan")

    op.drop_table("retention_events")
    with op.batch_alter_table("questionnaire_responses", schema=None) as batch_op:
        batch_op.drop_index("ix_questionnaire_responses_urgent")
        batch_op.drop_index("ix_questionnaire_responses_patient")

    op.drop_table("questionnaire_responses")
    with op.batch_alter_table("drug_screen_results", schema=None) as batch_op:
        batch_op.drop_index("ix_drug_screen_results_patient")

    op.drop_table("drug_screen_results")
    with op.batch_alter_table("craving_ratings", schema=None) as batch_op:
        batch_op.drop_index("ix_craving_ratings_patient")

    op.drop_table("craving_ratings")
    with op.batch_alter_table("care_plan_services", schema=None) as batch_op:
        batch_op.drop_index("ix_care_plan_services_plan")

    op.drop_table("care_plan_services")
    with op.batch_alter_table("recovery_check_ins", schema=None) as batch_op:
        batch_op.drop_index("ix_recovery_check_ins_patient")

    op.drop_table("recovery_check_ins")
    with op.batch_alter_table("drug_screens", schema=None) as batch_op:
        batch_op.drop_index("ix_drug_screens_patient")

    op.drop_table("drug_screens")
    with op.batch_alter_table("care_plans", schema=None) as batch_op:
        batch_op.drop_index("ix_care_plans_program")
        batch_op.drop_index("ix_care_plans_patient")
        batch_op.drop_index("ix_care_plans_counselor")

    op.drop_table("care_plans")
