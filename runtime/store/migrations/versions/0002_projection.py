"""Projection of the event topics: fiscal journal, license usage, processed event ids,
and the bookkeeping that keeps integration status from moving backwards.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runtime.store.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("status_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("status_event_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("status_event_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("tier_event_at", UtcDateTime(), nullable=True))
    op.create_table(
        "fiscal_journal",
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("source_invoice_id", sa.String(128), nullable=False),
        sa.Column("source_version", sa.String(128), nullable=False),
        sa.Column("invoice_number", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("protection_code", sa.String(64), nullable=True),
        sa.Column("receipt_id", sa.String(64), nullable=True),
        sa.Column("message_id", sa.String(64), nullable=True),
        sa.Column("signed_request", sa.Text(), nullable=True),
        sa.Column("signed_answer", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", UtcDateTime(), nullable=False),
        sa.Column("last_seen_at", UtcDateTime(), nullable=False),
        sa.Column("fiscalized_at", UtcDateTime(), nullable=True),
        sa.Column("last_event_id", sa.String(128), nullable=False),
        sa.Column("last_occurred_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint(
            "state IN ('fiscalized', 'rejected', 'blocked', 'duplicate', 'retrying', 'failed')",
            name=op.f("ck_fiscal_journal_state"),
        ),
        sa.PrimaryKeyConstraint(
            "integration_uid", "source_invoice_id", name=op.f("pk_fiscal_journal")
        ),
    )
    op.create_index(op.f("ix_fiscal_journal_state"), "fiscal_journal", ["state"])
    op.create_table(
        "license_usage",
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("fiscalized", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("integration_uid", "month", name=op.f("pk_license_usage")),
    )
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("processed_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_processed_events")),
    )


def downgrade() -> None:
    op.drop_table("processed_events")
    op.drop_table("license_usage")
    op.drop_index(op.f("ix_fiscal_journal_state"), table_name="fiscal_journal")
    op.drop_table("fiscal_journal")
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("tier_event_at")
        batch.drop_column("status_event_at")
        batch.drop_column("status_event_id")
        batch.drop_column("status_reason")
