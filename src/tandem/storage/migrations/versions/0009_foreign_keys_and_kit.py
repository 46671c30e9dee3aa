"""shared: the administrations' missing foreign keys, who-saw-which-patient, scheduled jobs

- medication_administrations.assessment_id -> withdrawal_assessments.id and
  medication_administrations.dose_plan_id -> medication_dose_plans.id (ON DELETE RESTRICT).
  SQLite rebuilds the table for this (batch "recreate"); its indexes are rebuilt from the
  reflected table and any triggers on it are re-created. tandem.storage.migrate runs SQLite
  migrations with foreign keys off (dropping a table that others reference fails otherwise) and
  checks every foreign key before committing.
- audit_entry_patients: the patients an audited list view or search showed, so "who saw
  patient X" is one index lookup. Append-only, like audit_entries (triggers on both engines).
- scheduled_jobs: one row per job; a process claims a run with
  UPDATE ... WHERE name = :name AND next_run_at <= :now, so a job runs once across processes.

Revision ID: 0009_foreign_keys_and_kit
Revises: 0008_detox_census
Create Date: 2026-11-24 07:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0009_foreign_keys_and_kit"
down_revision = "0008_detox_census"
branch_labels = None
depends_on = None

UTC_DATETIME = tandem.storage.db.UTCDateTime(timezone=True)

# (constraint name, column, referenced table): names fit PostgreSQL's 63 characters.
ADMINISTRATION_KEYS = (
    ("fk_medadmin_assessment_id", "assessment_id", "withdrawal_assessments"),
    ("fk_medadmin_dose_plan_id", "dose_plan_id", "medication_dose_plans"),
)


def upgrade() -> None:
    _refuse_dangling_administration_links()
    triggers = _sqlite_triggers("medication_administrations")
    with op.batch_alter_table("medication_administrations", schema=None) as batch_op:
        for name, column, table in ADMINISTRATION_KEYS:
            batch_op.create_foreign_key(name, table, [column], ["id"], ondelete="RESTRICT")
    for sql in triggers:
        op.execute(sql)

    op.create_table(
        "audit_entry_patients",
        sa.Column("audit_entry_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["audit_entry_id"], ["audit_entries.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("audit_entry_id", "patient_id"),
    )
    with op.batch_alter_table("audit_entry_patients", schema=None) as batch_op:
        batch_op.create_index(
            "ix_audit_entry_patients_patient", ["patient_id", "audit_entry_id"], unique=False
        )
    _protect_audit_entry_patients()

    op.create_table(
        "scheduled_jobs",
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("next_run_at", UTC_DATETIME, nullable=False),
        sa.Column("last_started_at", UTC_DATETIME, nullable=True),
        sa.Column("last_finished_at", UTC_DATETIME, nullable=True),
        sa.Column("last_status", sa.String(length=200), server_default="", nullable=False),
        sa.Column("claimed_by", sa.String(length=120), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("scheduled_jobs")

    _unprotect_audit_entry_patients()
    with op.batch_alter_table("audit_entry_patients", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_entry_patients_patient")
    op.drop_table("audit_entry_patients")

    triggers = _sqlite_triggers("medication_administrations")
    with op.batch_alter_table("medication_administrations", schema=None) as batch_op:
        for name, _column, _table in reversed(ADMINISTRATION_KEYS):
            batch_op.drop_constraint(name, type_="foreignkey")
    for sql in triggers:
        op.execute(sql)


def _refuse_dangling_administration_links() -> None:
    """A clear message instead of a constraint error: a clinical record is not silently edited."""
    conn = op.get_bind()
    for _name, column, table in ADMINISTRATION_KEYS:
        admin = sa.table("medication_administrations", sa.column(column, sa.Integer))
        target = sa.table(table, sa.column("id", sa.Integer))
        dangling = conn.execute(
            sa.select(sa.func.count())
            .select_from(admin)
            .where(
                admin.c[column].is_not(None),
                ~sa.exists().where(target.c.id == admin.c[column]),
            )
        ).scalar_one()
        if dangling:
            raise RuntimeError(
                f"{dangling} medication_administrations rows have a {column} that is not in "
                f"{table}; correct them before upgrading"
            )


def _sqlite_triggers(table: str) -> list[str]:
    """The CREATE TRIGGER statements on `table` (SQLite drops them when batch rebuilds it)."""
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return []
    rows = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"),
        {"t": table},
    )
    return [str(sql) for (sql,) in rows if sql]


def _protect_audit_entry_patients() -> None:
    """As audit_entries (0001_platform): no route, and no stray SQL, may change or delete one."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_entry_patients_no_{verb.lower()} BEFORE {verb} "
                "ON audit_entry_patients "
                "BEGIN SELECT RAISE(ABORT, 'audit entries are append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION audit_entry_patients_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit entries are append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_entry_patients_append_only BEFORE UPDATE OR DELETE "
            "ON audit_entry_patients "
            "FOR EACH ROW EXECUTE FUNCTION audit_entry_patients_append_only()"
        )


def _unprotect_audit_entry_patients() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_entry_patients_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_entry_patients_no_delete")
    else:
        op.execute(
            "DROP TRIGGER IF EXISTS audit_entry_patients_append_only ON audit_entry_patients"
        )
        op.execute("DROP FUNCTION IF EXISTS audit_entry_patients_append_only()")
