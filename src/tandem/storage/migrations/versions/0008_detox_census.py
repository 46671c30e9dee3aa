"""detox: the census reads one table

The monitoring row now carries the unit, the admission time, whether the episode is still in
detox and the patient's open-alert summary, and exists from admission (a baseline row), so the
census sorts a unit from one covering index. Assessments get an index by episode for saving.

Revision ID: 0008_detox_census
Revises: 0007_patient_name_words
Create Date: 2026-11-24 06:17:25.877179
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0008_detox_census"
down_revision = "0007_patient_name_words"
branch_labels = None
depends_on = None

UTC_DATETIME = tandem.storage.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("withdrawal_assessments", schema=None) as batch_op:
        batch_op.create_index(
            "ix_withdrawal_assessments_episode",
            ["episode_id", "instrument_id", "assessed_at"],
            unique=False,
        )

    with op.batch_alter_table("withdrawal_monitoring", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unit_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("active", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("admitted_at", UTC_DATETIME, nullable=True))
        batch_op.add_column(sa.Column("alert_rank", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("alert_count", sa.Integer(), nullable=True))
        for column, kind in (
            ("last_assessment_id", sa.INTEGER()),
            ("last_total", sa.INTEGER()),
            ("last_assessed_at", UTC_DATETIME),
            ("protocol_version_id", sa.INTEGER()),
        ):
            batch_op.alter_column(column, existing_type=kind, nullable=True)
        batch_op.drop_index("ix_withdrawal_monitoring_census")

    # Rows saved before this revision: fill the new columns from their episodes.
    op.execute("""
        UPDATE withdrawal_monitoring SET
          unit_id = (SELECT unit_id FROM episodes WHERE episodes.id = withdrawal_monitoring.episode_id),
          admitted_at = (SELECT phase_started_at FROM episodes WHERE episodes.id = withdrawal_monitoring.episode_id),
          active = (SELECT discharged_at IS NULL AND phase = 'detox' FROM episodes
                    WHERE episodes.id = withdrawal_monitoring.episode_id),
          alert_rank = -1, alert_count = 0
    """)
    with op.batch_alter_table("withdrawal_monitoring", schema=None) as batch_op:
        batch_op.alter_column("active", existing_type=sa.Boolean(), nullable=False)
        batch_op.alter_column("admitted_at", existing_type=UTC_DATETIME, nullable=False)
        batch_op.alter_column("alert_rank", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("alert_count", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(
            "ix_withdrawal_monitoring_unit",
            ["unit_id", "active", "alert_rank", "due_at", "band_rank", "id"],
            unique=False,
        )
        batch_op.create_foreign_key(
            "fk_withdrawal_monitoring_unit_id_units",
            "units",
            ["unit_id"],
            ["id"],
            ondelete="RESTRICT",
        )
    # Open detox episodes with no assessment yet: their baseline is due since the phase started.
    op.execute("""
        INSERT INTO withdrawal_monitoring (episode_id, patient_id, program_id, unit_id, active, admitted_at,
          instrument_id, band_rank, due_at, overdue_alerted, may_end, trend, alert_rank, alert_count, updated_at)
        SELECT e.id, e.patient_id, e.program_id, e.unit_id, TRUE, e.phase_started_at, '', -1, e.phase_started_at,
          FALSE, FALSE, '[]', -1, 0, e.phase_started_at
        FROM episodes e
        WHERE e.discharged_at IS NULL AND e.phase = 'detox'
          AND NOT EXISTS (SELECT 1 FROM withdrawal_monitoring m WHERE m.episode_id = e.id)
    """)


def downgrade() -> None:
    op.execute("DELETE FROM withdrawal_monitoring WHERE instrument_id = ''")
    with op.batch_alter_table("withdrawal_monitoring", schema=None) as batch_op:
        batch_op.drop_constraint("fk_withdrawal_monitoring_unit_id_units", type_="foreignkey")
        batch_op.drop_index("ix_withdrawal_monitoring_unit")
        batch_op.create_index(
            "ix_withdrawal_monitoring_census",
            ["episode_id", "id", "due_at", "band_rank"],
            unique=False,
        )
        for column in ("alert_count", "alert_rank", "admitted_at", "active", "unit_id"):
            batch_op.drop_column(column)
    with op.batch_alter_table("withdrawal_assessments", schema=None) as batch_op:
        batch_op.drop_index("ix_withdrawal_assessments_episode")
