"""medications: two screening facts the safety rules ask about

- medication_facts.severe_heart_disease: severe myocardial disease or coronary occlusion (a
  disulfiram contraindication); NULL = not assessed.
- medication_facts.hepatic_impairment: none | mild | moderate | severe (Child-Pugh 5-6, 7-9,
  above 9; the lofexidine and buprenorphine/naloxone hepatic dose tables); NULL = not recorded.

Revision ID: 0014_rules
Revises: 0009_foreign_keys_and_kit
Create Date: 2026-12-01 19:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_rules"
down_revision = "0009_foreign_keys_and_kit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("medication_facts") as batch:
        batch.add_column(sa.Column("severe_heart_disease", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("hepatic_impairment", sa.String(length=10), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("medication_facts") as batch:
        batch.drop_column("hepatic_impairment")
        batch.drop_column("severe_heart_disease")
