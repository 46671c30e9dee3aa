"""medications: a stored calendar's digest (a list of plans reads the calendars it has not
parsed yet, not all of them), a plan's doses given by time (ix_medadmin_plan_at replaces the
dose_plan_id index), and when the missed-dose sweep next needs to look at a plan: a row per
plan, valid while the plan's records_version (medication_plan_records, counted up by triggers
whenever a record of the plan's doses is written) is the one it was computed from

Revision ID: 0026_dose_speed
Revises: 0026_craving_ratings_covering
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0026_dose_speed"
down_revision = "0026_craving_ratings_covering"
branch_labels = None
depends_on = None

BATCH = 2000
# The tables whose rows decide a plan's dose states: any write to them counts up the plan's
# records_version (medication_plan_records).
RECORDS = ("medication_administrations", "medication_administration_dues", "medication_statements")


def _digest(plan: object) -> str:
    # As `tandem.medications.storage.plan_digest` computes it (written out: a migration does
    # not follow later changes to the app's code).
    if isinstance(plan, str):
        plan = json.loads(plan)
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("medication_dose_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan_digest", sa.String(length=40), nullable=True))
    plans = sa.table(
        "medication_dose_plans",
        sa.column("id", sa.Integer()),
        sa.column("plan", sa.Text()),
        sa.column("plan_digest", sa.String()),
    )
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(plans.c.id, sa.cast(plans.c.plan, sa.Text()))
            .where(plans.c.id > last)
            .order_by(plans.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(
            plans.update()
            .where(plans.c.id == sa.bindparam("b_id"))
            .values(plan_digest=sa.bindparam("b_digest")),
            [{"b_id": i, "b_digest": _digest(text)} for i, text in rows],
        )
        last = rows[-1][0]
    op.drop_index("ix_medication_administrations_dose_plan_id", "medication_administrations")
    op.create_index(
        "ix_medadmin_plan_at",
        "medication_administrations",
        ["dose_plan_id", "administered_at"],
    )
    op.create_table(
        "medication_plan_records",
        sa.Column("dose_plan_id", sa.Integer(), nullable=False),
        sa.Column("records_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["dose_plan_id"], ["medication_dose_plans.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dose_plan_id"),
    )
    op.create_table(
        "medication_missed_checks",
        sa.Column("dose_plan_id", sa.Integer(), nullable=False),
        sa.Column("checked_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_check_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("records_version", sa.Integer(), nullable=False),
        sa.Column("time_zone", sa.String(length=64), nullable=False),
        sa.Column("basis", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(["dose_plan_id"], ["medication_dose_plans.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("dose_plan_id"),
    )
    _create_triggers()


# A narrow table of its own: a record written does not rewrite the plan's (wide) row.
SEED = (
    "INSERT INTO medication_plan_records (dose_plan_id, records_version) "
    "SELECT {row}.dose_plan_id, 0 WHERE {row}.dose_plan_id IS NOT NULL "
    "AND NOT EXISTS (SELECT 1 FROM medication_plan_records "
    "WHERE dose_plan_id = {row}.dose_plan_id)"
)
BUMP = (
    "UPDATE medication_plan_records SET records_version = records_version + 1 "
    "WHERE dose_plan_id = {row}.dose_plan_id"
)


UPSERT = (
    "INSERT INTO medication_plan_records (dose_plan_id, records_version) "
    "VALUES ({row}.dose_plan_id, 1) ON CONFLICT (dose_plan_id) DO UPDATE SET "
    "records_version = medication_plan_records.records_version + 1"
)


def _create_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in RECORDS:
            for verb, rows in (
                ("insert", ("NEW",)),
                ("update", ("OLD", "NEW")),
                ("delete", ("OLD",)),
            ):
                body = "; ".join(f"{SEED.format(row=r)}; {BUMP.format(row=r)}" for r in rows)
                op.execute(
                    f"CREATE TRIGGER {table}_records_version_{verb} AFTER {verb.upper()} "
                    f"ON {table} BEGIN {body}; END"
                )
        return
    op.execute(
        "CREATE FUNCTION medication_records_version() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN "
        "IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.dose_plan_id IS NOT NULL THEN "
        f"{UPSERT.format(row='OLD')}; END IF; "
        "IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.dose_plan_id IS NOT NULL THEN "
        f"{UPSERT.format(row='NEW')}; END IF; "
        "RETURN NULL; END $$"
    )
    for table in RECORDS:
        op.execute(
            f"CREATE TRIGGER {table}_records_version AFTER INSERT OR UPDATE OR DELETE "
            f"ON {table} FOR EACH ROW EXECUTE FUNCTION medication_records_version()"
        )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in RECORDS:
            for verb in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_records_version_{verb}")
        return
    for table in RECORDS:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_records_version ON {table}")
    op.execute("DROP FUNCTION IF EXISTS medication_records_version()")


def downgrade() -> None:
    _drop_triggers()
    op.drop_table("medication_missed_checks")
    op.drop_table("medication_plan_records")
    op.drop_index("ix_medadmin_plan_at", "medication_administrations")
    op.create_index(
        "ix_medication_administrations_dose_plan_id",
        "medication_administrations",
        ["dose_plan_id"],
    )
    with op.batch_alter_table("medication_dose_plans", schema=None) as batch_op:
        batch_op.drop_column("plan_digest")
