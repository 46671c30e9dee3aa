"""platform: index patient_identifiers.patient_id

Every patient read and every search page loads the patients' identifiers by patient_id; without
this index each of those lookups scanned the whole table (about 100 ms at 100,000 patients).

Revision ID: 0005_identifier_patient_index
Revises: 0004_medications
Create Date: 2026-11-24 05:40:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0005_identifier_patient_index"
down_revision = "0004_medications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patient_identifiers", schema=None) as batch_op:
        batch_op.create_index("ix_identifier_patient", ["patient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("patient_identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_identifier_patient")
