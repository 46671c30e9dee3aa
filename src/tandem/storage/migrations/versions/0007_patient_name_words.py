"""platform: patient name words, so a name search uses an index instead of scanning patients

Revision ID: 0007_patient_name_words
Revises: 0006_medication_dues
Create Date: 2026-11-24 06:10:00.000000
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0007_patient_name_words"
down_revision = "0006_medication_dues"
branch_labels = None
depends_on = None


def name_words(family: str, given: str) -> set[str]:
    # As tandem.storage.models.name_words was when this revision was written (migrations stay frozen).
    return {w for w in re.split(r"[\s\-']+", f"{family or ''} {given or ''}".lower()) if w}


def upgrade() -> None:
    op.create_table(
        "patient_name_words",
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("word", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("patient_id", "word"),
    )
    with op.batch_alter_table("patient_name_words", schema=None) as batch_op:
        batch_op.create_index("ix_name_words_word", ["word", "patient_id"], unique=False)
    # Index the names of patients already stored.
    conn = op.get_bind()
    words = sa.table(
        "patient_name_words", sa.column("patient_id", sa.String), sa.column("word", sa.String)
    )
    rows = conn.execute(sa.text("SELECT id, family, given FROM patients")).all()
    batch = [
        {"patient_id": pid, "word": w}
        for pid, family, given in rows
        for w in name_words(family, given)
    ]
    for start in range(0, len(batch), 5000):
        conn.execute(words.insert(), batch[start : start + 5000])


def downgrade() -> None:
    with op.batch_alter_table("patient_name_words", schema=None) as batch_op:
        batch_op.drop_index("ix_name_words_word")
    op.drop_table("patient_name_words")
