"""E-mail changes wait for confirmation.

`email_changes` holds the hashed, single-use tokens of the links mailed to a new
address; the user's e-mail changes only when one is opened.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runtime.store.types import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_changes",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("new_email", sa.String(320), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_email_changes_user_id_users")),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_email_changes")),
    )
    op.create_index(op.f("ix_email_changes_user_id"), "email_changes", ["user_id"])


def downgrade() -> None:
    op.drop_table("email_changes")
