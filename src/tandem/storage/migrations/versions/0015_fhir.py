"""patients: given names kept as the list a client sent ("Mary Ann" stays one given name)

Revision ID: 0015_fhir
Revises: 0012_input
Create Date: 2026-12-01 19:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015_fhir"
down_revision = "0012_input"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for rows written before: their given names are the words of `given`.
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "given_names",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("given_names")
