"""The portal's invoice pages and webhook secret rotation.

Journal: what an invoice is found by (kind, customer, total in cents, moment of issue,
the sequence number of its fiscal number), the indexes the lists scan, and
`journal_events`, every status an invoice went through. Existing rows get their moment
of issue from `first_seen_at` (the events that wrote them did not carry one) and their
fiscal sequence number from the printed fiscal number.

Integrations: the previous webhook secret and until when it is still accepted, and when
the current secret was shown in full.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runtime.store.types import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("previous_webhook_secret", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("previous_webhook_secret_until", UtcDateTime(),
                                   nullable=True))
        batch.add_column(sa.Column("webhook_secret_shown_at", UtcDateTime(), nullable=True))

    with op.batch_alter_table("fiscal_journal") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="invoice"))
        batch.add_column(sa.Column("customer", sa.String(200), nullable=True))
        batch.add_column(sa.Column(
            "customer_key",
            sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql"),
            nullable=True,
        ))
        batch.add_column(sa.Column("total_cents", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("issued_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("fiscal_seq", sa.Integer(), nullable=True))
    _backfill_journal()
    with op.batch_alter_table("fiscal_journal") as batch:
        batch.alter_column("issued_at", existing_type=UtcDateTime(), nullable=False)
        batch.create_check_constraint(op.f("ck_fiscal_journal_kind"),
                                      "kind IN ('invoice', 'credit_note')")
    op.create_index("ix_fiscal_journal_issued", "fiscal_journal",
                    ["integration_uid", "issued_at", "source_invoice_id"])
    op.create_index("ix_fiscal_journal_state_issued", "fiscal_journal",
                    ["integration_uid", "state", "issued_at", "source_invoice_id"])
    op.create_index("ix_fiscal_journal_fiscal", "fiscal_journal",
                    ["integration_uid", "fiscal_seq", "source_invoice_id"])
    op.create_index("ix_fiscal_journal_number", "fiscal_journal",
                    ["integration_uid", "invoice_number"])
    op.create_index("ix_fiscal_journal_customer", "fiscal_journal",
                    ["integration_uid", "customer_key"])

    op.create_table(
        "journal_events",
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("source_invoice_id", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_journal_events")),
    )
    op.create_index("ix_journal_events_invoice", "journal_events",
                    ["integration_uid", "source_invoice_id", "occurred_at"])


def _backfill_journal() -> None:
    journal = sa.table(
        "fiscal_journal",
        sa.column("integration_uid", sa.String),
        sa.column("source_invoice_id", sa.String),
        sa.column("fiscal_number", sa.String),
        sa.column("first_seen_at", UtcDateTime()),
        sa.column("issued_at", UtcDateTime()),
        sa.column("fiscal_seq", sa.Integer),
    )
    bind = op.get_bind()
    bind.execute(journal.update().values(issued_at=journal.c.first_seen_at))
    numbered = bind.execute(
        sa.select(journal.c.integration_uid, journal.c.source_invoice_id,
                  journal.c.fiscal_number).where(journal.c.fiscal_number.is_not(None))
    ).all()
    for uid, source_id, number in numbered:
        head = number.split("/", 1)[0]
        if head.isdigit():
            bind.execute(
                journal.update()
                .where(journal.c.integration_uid == uid, journal.c.source_invoice_id == source_id)
                .values(fiscal_seq=int(head))
            )


def downgrade() -> None:
    op.drop_index("ix_journal_events_invoice", table_name="journal_events")
    op.drop_table("journal_events")
    for name in ("ix_fiscal_journal_customer", "ix_fiscal_journal_number",
                 "ix_fiscal_journal_fiscal", "ix_fiscal_journal_state_issued",
                 "ix_fiscal_journal_issued"):
        op.drop_index(name, table_name="fiscal_journal")
    with op.batch_alter_table("fiscal_journal") as batch:
        batch.drop_constraint(op.f("ck_fiscal_journal_kind"), type_="check")
        for column in ("fiscal_seq", "issued_at", "total_cents", "customer_key", "customer",
                       "kind"):
            batch.drop_column(column)
    with op.batch_alter_table("integrations") as batch:
        for column in ("webhook_secret_shown_at", "previous_webhook_secret_until",
                       "previous_webhook_secret"):
            batch.drop_column(column)
