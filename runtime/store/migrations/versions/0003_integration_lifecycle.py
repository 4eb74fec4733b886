"""Integration lifecycle: one integration per Zoho organization, a start instant, the
`skipped` journal state, and the fiscal number FiscoBridge assigned in the journal.

Existing rows: the organization goes to the earliest-created integration that is not
removed; any other integration holding the same organization is made inactive with a
reason naming the holder (two of them would fiscalize every invoice twice). The start of
an integration that was ever connected is its creation time, the earliest instant it
can have become active.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from runtime.store.types import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATES = ("fiscalized", "rejected", "blocked", "duplicate", "retrying", "failed")


def _state_check(states: tuple[str, ...]) -> str:
    return f"state IN ({', '.join(repr(s) for s in states)})"


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("zoho_organization_claim", sa.String(64), nullable=True))
        batch.add_column(sa.Column("starts_at", UtcDateTime(), nullable=True))
        batch.add_column(
            sa.Column("starts_at_chosen", sa.Boolean(), nullable=False,
                      server_default=sa.false())
        )
    _claim_existing_organizations()
    op.create_index(
        "uq_integrations_zoho_organization_claim", "integrations",
        ["zoho_organization_claim"], unique=True,
    )
    with op.batch_alter_table("fiscal_journal") as batch:
        batch.add_column(sa.Column("fiscal_number", sa.String(64), nullable=True))
        batch.drop_constraint(op.f("ck_fiscal_journal_state"), type_="check")
        batch.create_check_constraint(
            op.f("ck_fiscal_journal_state"), _state_check((*_STATES, "skipped"))
        )


def _claim_existing_organizations() -> None:
    integrations = sa.table(
        "integrations",
        sa.column("uid", sa.String),
        sa.column("status", sa.String),
        sa.column("created_at", UtcDateTime()),
        sa.column("zoho_organization_id", sa.String),
        sa.column("zoho_organization_claim", sa.String),
        sa.column("starts_at", UtcDateTime()),
        sa.column("status_reason", sa.Text),
        sa.column("status_event_id", sa.String),
        sa.column("status_event_at", UtcDateTime()),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(integrations.c.uid, integrations.c.status, integrations.c.created_at,
                  integrations.c.zoho_organization_id)
        .order_by(integrations.c.created_at, integrations.c.uid)
    ).all()
    now = datetime.now(UTC)
    holders: dict[str, str] = {}
    for uid, status, created_at, organization in rows:
        if status != "pending":
            bind.execute(
                integrations.update().where(integrations.c.uid == uid)
                .values(starts_at=created_at)
            )
        if status == "removed" or not organization:
            continue
        holder = holders.setdefault(organization, uid)
        if holder == uid:
            bind.execute(
                integrations.update().where(integrations.c.uid == uid)
                .values(zoho_organization_claim=organization)
            )
        else:
            bind.execute(
                integrations.update().where(integrations.c.uid == uid).values(
                    status="inactive",
                    status_reason=(
                        f"Zoho organization {organization} is fiscalized by integration "
                        f"{holder}; one organization can have only one integration."
                    ),
                    status_event_id="migration-0003",
                    status_event_at=now,
                )
            )


def downgrade() -> None:
    op.execute("DELETE FROM fiscal_journal WHERE state = 'skipped'")
    with op.batch_alter_table("fiscal_journal") as batch:
        batch.drop_constraint(op.f("ck_fiscal_journal_state"), type_="check")
        batch.create_check_constraint(op.f("ck_fiscal_journal_state"), _state_check(_STATES))
        batch.drop_column("fiscal_number")
    op.drop_index("uq_integrations_zoho_organization_claim", table_name="integrations")
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("starts_at_chosen")
        batch.drop_column("starts_at")
        batch.drop_column("zoho_organization_claim")
