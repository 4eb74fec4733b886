"""The journal's late flag: an invoice past the legal deadline for delivering it (two
working days after issue), as the reporter's latest status said (issue 15, item 7).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fiscal_journal") as batch:
        batch.add_column(sa.Column("late", sa.Boolean(), server_default=sa.false(),
                                   nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("fiscal_journal") as batch:
        batch.drop_column("late")
