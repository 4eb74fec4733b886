"""Documents to read again from the source: invoices refused before they were signed
(blocked, or rejected by the fiscal record), queued when a change could let them
through (a plan, settings, a certificate, a reconnect) or when someone resends them.

The poller reads each queued document by its id at the integration's next poll and
deletes the request once the document is published (or gone from the source).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runtime.store.types import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refetch_requests",
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("source_invoice_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("requested_at", UtcDateTime(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("integration_uid", "source_invoice_id",
                                name=op.f("pk_refetch_requests")),
    )


def downgrade() -> None:
    op.drop_table("refetch_requests")
