"""The latest write-back outcome per invoice, applied by two writers at once (the
write-back stage once the broker acked an outcome, the projector from the topic), on
both databases: no writer fails, the newest outcome stays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from runtime.store import Store
from schemas.events import WriteBackState, WriteBackStatus

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


async def test_two_writers_inserting_an_invoices_first_outcome_never_fail(store: Store) -> None:
    for invoice in range(10):
        source_id = f"46000000{invoice:05d}"
        outcomes = [("waiting", T0), ("written_back", T0 + timedelta(seconds=1))]
        # Each outcome applied by both writers, all four at once.
        applied = await asyncio.gather(*(
            store.writebacks.apply(
                integration_uid="int_race", source_id=source_id, state=state,
                reason=None, fiscal_number="1/P/1", event_id=f"e-{state}", occurred_at=at)
            for state, at in outcomes for _writer in range(2)
        ))
        assert any(applied)
        latest = await store.writebacks.get("int_race", source_id)
        assert latest is not None and latest.state == "written_back"


async def test_a_batch_keeps_each_invoices_newest_outcome_whatever_its_order(
    store: Store,
) -> None:
    """The projector's batch: several outcomes of one invoice, newest first or last, in
    one transaction; an older one applied afterwards changes nothing."""
    def outcome(source_id: str, state: WriteBackState, at: datetime) -> WriteBackStatus:
        return WriteBackStatus(integration_uid="int_batch", source_id=source_id, state=state,
                               fiscal_number="1/P/1", status_event_id="s", occurred_at=at)

    waiting, written = WriteBackState.WAITING, WriteBackState.WRITTEN_BACK
    await store.writebacks.apply_many([
        outcome("a", waiting, T0), outcome("a", written, T0 + timedelta(seconds=1)),
        outcome("b", written, T0 + timedelta(seconds=1)), outcome("b", waiting, T0),
    ])
    await store.writebacks.apply_many([outcome("a", waiting, T0 - timedelta(seconds=5))])
    for source_id in ("a", "b"):
        latest = await store.writebacks.get("int_batch", source_id)
        assert latest is not None and latest.state == "written_back", source_id
