"""choice: consents for substance-use records (42 CFR Part 2) and the disclosures made under them

Revision ID: 0020_consent
Revises: 0023_smart
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0020_consent"
down_revision = "0023_smart"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("recipient_program_id", sa.Integer(), nullable=True),
        sa.Column("recipient_name", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("purpose_text", sa.Text(), nullable=False),
        sa.Column("information", sa.String(length=200), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("expires_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expiry_event", sa.Text(), nullable=False),
        sa.Column("ended_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("signed_on", sa.Date(), nullable=False),
        sa.Column("signed_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("signed_by", sa.String(length=200), nullable=False),
        sa.Column("signer_role", sa.String(length=20), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=False),
        sa.Column("recorded_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.Integer(), nullable=True),
        sa.Column("revocation_note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["recipient_program_id"],
            ["programs.id"],
            ondelete="RESTRICT",
            name="fk_consents_recipient_program",
        ),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(
            ["revoked_by"], ["users.id"], ondelete="RESTRICT", name="fk_consents_revoked_by"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consents_patient", "consents", ["patient_id", "signed_at"])
    op.create_index("ix_consents_recipient_program", "consents", ["recipient_program_id"])
    op.create_table(
        "consent_disclosures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.Column("recipient_name", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("information", sa.String(length=200), nullable=False),
        sa.Column("contents", sa.Text(), nullable=False),
        sa.Column("form", sa.String(length=10), nullable=False),
        sa.Column("disclosed_at", tandem.storage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("disclosed_by", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["consent_id"], ["consents.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["disclosed_by"], ["users.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_consent_disclosures_patient", "consent_disclosures", ["patient_id", "disclosed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_consent_disclosures_patient", table_name="consent_disclosures")
    op.drop_table("consent_disclosures")
    op.drop_index("ix_consents_recipient_program", table_name="consents")
    op.drop_index("ix_consents_patient", table_name="consents")
    op.drop_table("consents")
