"""The dashboard's counts per day (journal_daily) on both databases: after every batch,
in any order, with duplicates, late and stale events and rows whose moment of issue comes
late, they equal the journal counted row by row; the migration counts an existing
journal the same way; a rebuild starts them afresh."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select

from runtime.store import Store
from runtime.store import migrate as migrations
from runtime.store.models import JournalDaily, JournalEntry
from schemas.events import InvoiceRef, InvoiceState, InvoiceStatus

ZAGREB = ZoneInfo("Europe/Zagreb")
# 22:00-23:59 UTC is the next day in Zagreb: issue times straddle local midnight.
T0 = datetime(2026, 3, 28, 21, 30, tzinfo=UTC)  # the night before summer time starts
STATES = list(InvoiceState)


def _events(rng: random.Random, n: int) -> list[InvoiceStatus]:
    events = []
    for i in range(n):
        uid = rng.choice(("int-a", "int-b"))
        k = rng.randrange(40)
        source = f"s-{k}"
        issued = T0 + timedelta(minutes=45 * k)  # an invoice's own, whoever carries it
        events.append(InvoiceStatus(
            integration_uid=uid,
            occurred_at=T0 + timedelta(minutes=rng.randrange(0, 60 * 30)),
            invoice=InvoiceRef(
                source_id=source, number=f"N-{source}", version=f"v{i}",
                total=Decimal("1.00"),
                # Some events do not carry the moment of issue: the row shows when it was
                # first seen, and follows an earlier sighting.
                issued_at=issued if rng.random() < 0.6 else None,
            ),
            state=rng.choice(STATES), reason_code="x", message="",
            attempt=rng.randrange(0, 3),
        ))
    return events


async def _summary(store: Store) -> Counter[tuple[str, date, str]]:
    async with store.engine.connect() as connection:
        rows = (await connection.execute(select(
            JournalDaily.integration_uid, JournalDaily.day, JournalDaily.state,
            JournalDaily.invoices))).all()
    return Counter({(u, d, s): n for u, d, s, n in rows if n})


async def _counted(store: Store) -> Counter[tuple[str, date, str]]:
    async with store.transaction() as session:
        rows = (await session.execute(select(
            JournalEntry.integration_uid, JournalEntry.issued_at, JournalEntry.state))).all()
    return Counter((u, at.astimezone(ZAGREB).date(), s) for u, at, s in rows)


async def test_daily_counts_follow_the_journal_batch_by_batch(store: Store) -> None:
    rng = random.Random(13)
    events = _events(rng, 300)
    replayed = events + rng.sample(events, 40)  # duplicates delivered again, anywhere
    rng.shuffle(replayed)
    applied = 0
    while applied < len(replayed):
        size = rng.randrange(1, 30)
        await store.apply(replayed[applied:applied + size])
        applied += size
        assert await _summary(store) == await _counted(store), applied
    summary = await _summary(store)
    invoices = len({(e.integration_uid, e.invoice.source_id) for e in events})
    assert sum(summary.values()) == invoices and len({d for _, d, _ in summary}) >= 2

    # What the dashboard reads equals counting the journal in another zone with the same
    # rules (Belgrade keeps Zagreb's time), which takes the row-by-row path.
    first = date(2026, 3, 28)
    kept = await store.journal.daily(["int-a", "int-b"], first, 4, ZAGREB)
    counted = await store.journal.daily(["int-a", "int-b"], first, 4,
                                        ZoneInfo("Europe/Belgrade"))
    assert kept.counts == counted.counts
    assert sum(sum(c.values()) for c in kept.counts.values()) == invoices

    # A rebuild drops the counts with the journal and counts the replayed journal.
    await store.drop_projection()
    assert await _summary(store) == Counter()
    await store.apply(events)
    assert await _summary(store) == await _counted(store)
    assert sum((await _summary(store)).values()) == invoices


async def test_the_migration_counts_an_existing_journal(store: Store) -> None:
    await store.apply(_events(random.Random(7), 120))
    expected = await _counted(store)
    async with store.transaction() as session:
        await session.execute(delete(JournalDaily))
    await migrations.downgrade(store.engine, "0009")
    await store.migrate()
    assert await _summary(store) == expected
