"""recovery: the craving ratings' patient index holds the rating and the program too, so the
caseload's "craving rising" flag and the timeline's craving lane read the index alone (no table
look-up a rating)

Revision ID: 0026_craving_ratings_covering
Revises: 0025_question_read_by_asker
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0026_craving_ratings_covering"
down_revision = "0025_question_read_by_asker"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Built before the old one is dropped: the (patient_id, day) reads always have an index.
    op.create_index(
        "ix_craving_ratings_patient_rating",
        "craving_ratings",
        ["patient_id", "day", "program_id", "rating"],
        unique=False,
    )
    op.drop_index("ix_craving_ratings_patient", table_name="craving_ratings")


def downgrade() -> None:
    op.create_index(
        "ix_craving_ratings_patient", "craving_ratings", ["patient_id", "day"], unique=False
    )
    op.drop_index("ix_craving_ratings_patient_rating", table_name="craving_ratings")
