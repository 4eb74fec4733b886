"""Journal rows per integration, local day of issue and state, for the dashboard's chart.

`journal_daily` is kept by the projection with the journal; existing journals are
counted into it here (days in Croatian time, Europe/Zagreb).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ZONE = "Europe/Zagreb"


def upgrade() -> None:
    op.create_table(
        "journal_daily",
        sa.Column("integration_uid", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("invoices", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("integration_uid", "day", "state",
                                name=op.f("pk_journal_daily")),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "INSERT INTO journal_daily (integration_uid, day, state, invoices) "
            f"SELECT integration_uid, date(timezone('{ZONE}', issued_at)), state, count(*) "
            "FROM fiscal_journal GROUP BY 1, 2, 3"
        )
        return
    # SQLite keeps UTC without an offset and knows no time zones: count here.
    zone = ZoneInfo(ZONE)
    tally: Counter[tuple[str, object, str]] = Counter()
    for uid, issued_at, state in bind.execute(
        sa.text("SELECT integration_uid, issued_at, state FROM fiscal_journal")
    ):
        at = datetime.fromisoformat(issued_at) if isinstance(issued_at, str) else issued_at
        tally[(uid, at.replace(tzinfo=UTC).astimezone(zone).date(), state)] += 1
    if tally:
        table = sa.table("journal_daily", sa.column("integration_uid"), sa.column("day", sa.Date),
                         sa.column("state"), sa.column("invoices"))
        op.bulk_insert(table, [
            {"integration_uid": uid, "day": day, "state": state, "invoices": n}
            for (uid, day, state), n in sorted(tally.items(), key=lambda i: str(i[0]))
        ])


def downgrade() -> None:
    op.drop_table("journal_daily")
