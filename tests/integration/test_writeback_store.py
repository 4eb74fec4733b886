"""The latest write-back outcome per invoice, applied by two writers at once (the
write-back stage once the broker acked an outcome, the projector from the topic), on
both databases: no writer fails, the newest outcome stays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from runtime.store import Store
from runtime.store.writeback import OutcomeRecorder
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


class CountingWriteBacks:
    """The store's write-backs, counting the transactions the recorder asks for."""

    def __init__(self, store: Store, refuse: str | None = None) -> None:
        self.store, self.refuse, self.calls = store, refuse, 0

    async def apply_many(self, outcomes: list[WriteBackStatus]) -> None:
        self.calls += 1
        if any(o.source_id == self.refuse for o in outcomes):
            raise ValueError(f"refused {self.refuse}")
        await self.store.writebacks.apply_many(outcomes)


async def test_outcomes_recorded_together_share_a_transaction(store: Store) -> None:
    """The write-back stage records each outcome once the broker has it: outcomes that
    arrive together are applied in one transaction, each caller returns once its own
    is stored, and one refused outcome fails only its own caller."""
    writebacks = CountingWriteBacks(store, refuse="bad")
    recorder = OutcomeRecorder(writebacks)  # type: ignore[arg-type]

    def outcome(source_id: str) -> WriteBackStatus:
        return WriteBackStatus(integration_uid="int_rec", source_id=source_id,
                               state=WriteBackState.WRITTEN_BACK, fiscal_number="1/P/1",
                               status_event_id="s", occurred_at=T0)

    ids = [f"rec-{n}" for n in range(40)]
    await asyncio.gather(*(recorder.record(outcome(i)) for i in ids))
    assert writebacks.calls <= 2, writebacks.calls  # not one per outcome
    for source_id in ids:
        latest = await store.writebacks.get("int_rec", source_id)
        assert latest is not None and latest.state == "written_back", source_id

    results = await asyncio.gather(recorder.record(outcome("good")),
                                   recorder.record(outcome("bad")), return_exceptions=True)
    assert results[0] is None and isinstance(results[1], ValueError), results
    assert await store.writebacks.get("int_rec", "good") is not None
    assert await store.writebacks.get("int_rec", "bad") is None
