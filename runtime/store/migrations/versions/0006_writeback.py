"""Write-back: each integration's mapping of fiscal fields onto its Zoho custom fields,
and the latest write-back outcome per invoice.

`integrations.writeback_fields` maps a role (fiscal_number, zki, jir, qr_url) to the
customer's invoice customfield_id; NULL or empty: nothing is mapped, and the write-back
stage waits. `writeback_states` holds the outcome the portal shows, kept apart from
`fiscal_journal` so an outcome projected before its invoice's status is not lost.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runtime.store.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("writeback_fields", sa.JSON(), nullable=True))
    op.create_table(
        "writeback_states",
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("source_invoice_id", sa.String(128), nullable=False),
        sa.Column("writeback_state", sa.String(16), nullable=False),
        sa.Column("writeback_reason", sa.Text(), nullable=True),
        sa.Column("fiscal_number", sa.String(64), nullable=True),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("integration_uid", "source_invoice_id",
                                name=op.f("pk_writeback_states")),
    )


def downgrade() -> None:
    op.drop_table("writeback_states")
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("writeback_fields")
