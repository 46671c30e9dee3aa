"""SMART on FHIR: registered apps, authorization codes, app tokens, used client assertions,
id_token signing keys

Revision ID: 0023_smart
Revises: 0019_portal
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tandem.storage.db

revision = "0023_smart"
down_revision = "0019_portal"
branch_labels = None
depends_on = None

UTC_DATETIME = tandem.storage.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "smart_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("program_id", sa.Integer(), nullable=False),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=True),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("disabled_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["program_id"], ["programs.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id"),
    )
    op.create_table(
        "smart_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("grant_id", sa.String(length=36), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("nonce", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("used_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(["client_pk"], ["smart_clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    with op.batch_alter_table("smart_codes", schema=None) as batch_op:
        batch_op.create_index("ix_smart_codes_grant_id", ["grant_id"], unique=False)
    op.create_table(
        "smart_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("grant_id", sa.String(length=36), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("patient_id", sa.String(length=36), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("revoked_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(["client_pk"], ["smart_clients.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("smart_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_smart_tokens_grant_id", ["grant_id"], unique=False)
        batch_op.create_index("ix_smart_tokens_user", ["user_id"], unique=False)
    op.create_table(
        "smart_assertions",
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("jti", sa.String(length=200), nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["client_pk"], ["smart_clients.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client_pk", "jti"),
    )
    op.create_table(
        "smart_signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("private_jwk", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("kid"),
    )


def downgrade() -> None:
    op.drop_table("smart_signing_keys")
    op.drop_table("smart_assertions")
    with op.batch_alter_table("smart_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_smart_tokens_user")
        batch_op.drop_index("ix_smart_tokens_grant_id")
    op.drop_table("smart_tokens")
    with op.batch_alter_table("smart_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_smart_codes_grant_id")
    op.drop_table("smart_codes")
    op.drop_table("smart_clients")
