"""How an integration's Zoho documents are read, and when its webhooks last arrived.

`integrations.zoho_read_options` holds the connector's mapping options
(connectors/zoho/mapping MappingOptions: buyer_tax_field, payment_modes,
default_payment_method, base_currency); NULL or empty: the defaults. Poller and ingest
both read it, so an invoice maps the same through either channel.
`integrations.webhook_seen_at` is when ingest last accepted a webhook for the
integration (written at most once a minute): while webhooks keep arriving, polling,
the safety net, runs less often.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runtime.store.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("zoho_read_options", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("webhook_seen_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("webhook_seen_at")
        batch.drop_column("zoho_read_options")
