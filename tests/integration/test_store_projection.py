"""The projection of invoice statuses and integration events, on both databases."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from runtime.licensing import license_month
from runtime.store import IntegrationStatus, Outcome, Store, projection
from runtime.store.models import LicenseUsage
from schemas.events import (
    Event,
    IntegrationEventKind,
    InvoiceState,
)
from tests.fixtures.certs import Pfx
from tests.fixtures.store import Database, projection_snapshot
from tests.fixtures.store import integration_event_at as integration_event
from tests.fixtures.store import invoice_status_at as status

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
UID = "int-projection-1"


@pytest.fixture
async def uid(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> str:
    account, _ = await store.accounts.ensure("owner@obrt.hr")
    created = await store.integrations.create(
        uid=UID,
        account_id=account.account_id,
        fiscal_settings=fiscal_settings,
        pfx=demo_pfx.data,
        password=demo_pfx.password,
        certificate=demo_certificate,
    )
    return created.record.uid


async def test_same_event_twice_changes_nothing(store: Store, uid: str) -> None:
    event = status(InvoiceState.FISCALIZED, T0)
    assert await store.apply([event]) == {Outcome.APPLIED: 1}
    before = await projection_snapshot(store)
    assert await store.apply([event]) == {Outcome.DUPLICATE: 1}
    assert await store.apply([event, event]) == {Outcome.DUPLICATE: 2}
    assert await projection_snapshot(store) == before
    assert await store.usage.count(uid, license_month(T0)) == 1
    other = status(InvoiceState.FISCALIZED, T0, source_id="4600000000000002")
    assert await store.apply([other, other]) == {Outcome.APPLIED: 1, Outcome.DUPLICATE: 1}
    assert await store.usage.count(uid, license_month(T0)) == 2


async def test_journal_entry_keeps_the_evidence(store: Store, uid: str) -> None:
    await store.apply([status(InvoiceState.RETRYING, T0, attempt=1)])
    await store.apply([status(InvoiceState.FISCALIZED, T0 + timedelta(minutes=1), attempt=2)])
    entry = await store.journal.get(uid, "4600000000000001")
    assert entry is not None
    assert entry.state is InvoiceState.FISCALIZED
    assert entry.receipt_id == "jir-" + (T0 + timedelta(minutes=1)).isoformat()
    assert (entry.protection_code, entry.signed_request, entry.signed_answer) == (
        "a" * 32,
        "<Racun>signed</Racun>",
        "<Jir/>",
    )
    assert (entry.attempts, entry.first_seen_at, entry.fiscalized_at) == (
        2,
        T0,
        T0 + timedelta(minutes=1),
    )
    assert await store.journal.counts(uid) == {InvoiceState.FISCALIZED: 1}
    assert [e.source_invoice_id for e in await store.journal.entries(uid)] == ["4600000000000001"]


async def test_older_event_never_moves_state_backwards(store: Store, uid: str) -> None:
    newer = status(InvoiceState.REJECTED, T0 + timedelta(minutes=5), attempt=3)
    older = status(InvoiceState.RETRYING, T0, attempt=1)
    await store.apply([newer])
    assert await store.apply([older]) == {Outcome.STALE: 1}
    entry = await store.journal.get(uid, "4600000000000001")
    assert entry is not None
    assert (entry.state, entry.last_event_id) == (InvoiceState.REJECTED, newer.event_id)
    assert (entry.attempts, entry.first_seen_at, entry.last_seen_at) == (
        3,
        T0,
        T0 + timedelta(minutes=5),
    )


@pytest.mark.parametrize("order", ["final-first", "retrying-first"])
async def test_on_equal_time_a_final_state_beats_retrying(
    store: Store, uid: str, order: str
) -> None:
    final, retrying = status(InvoiceState.FAILED, T0), status(InvoiceState.RETRYING, T0)
    events = [final, retrying] if order == "final-first" else [retrying, final]
    for event in events:
        await store.apply([event])
    entry = await store.journal.get(uid, "4600000000000001")
    assert entry is not None and entry.state is InvoiceState.FAILED


async def test_fiscalized_counts_once_and_the_first_receipt_stays(store: Store, uid: str) -> None:
    first = status(InvoiceState.FISCALIZED, T0, receipt="jir-first")
    second = status(InvoiceState.FISCALIZED, T0 + timedelta(seconds=3), receipt="jir-second")
    later_duplicate = status(InvoiceState.DUPLICATE, T0 + timedelta(hours=1))
    await store.apply([second, first, later_duplicate])
    entry = await store.journal.get(uid, "4600000000000001")
    assert entry is not None
    assert (entry.state, entry.receipt_id) == (InvoiceState.FISCALIZED, "jir-first")
    assert await store.usage.count(uid, "2025-03") == 1
    await store.apply([status(InvoiceState.FISCALIZED, T0, source_id="4600000000000002")])
    assert await store.usage.count(uid, T0) == 2
    assert await store.usage.count(uid, "2025-04") == 0


async def test_license_month_is_the_month_in_zagreb(store: Store, uid: str) -> None:
    # 31 March 22:30 UTC is already 1 April 00:30 in Zagreb (CEST).
    at = datetime(2025, 3, 31, 22, 30, tzinfo=UTC)
    await store.apply([status(InvoiceState.FISCALIZED, at)])
    assert license_month(at) == "2025-04"
    assert await store.usage.count(uid, "2025-04") == 1
    assert await store.usage.count(uid, "2025-03") == 0


async def test_a_late_first_receipt_moves_the_count_to_its_month(store: Store, uid: str) -> None:
    # The reporter's crash window: reported twice, the later answer projected first.
    late = status(InvoiceState.FISCALIZED, datetime(2025, 4, 1, 0, 5, tzinfo=UTC))
    early = status(InvoiceState.FISCALIZED, datetime(2025, 3, 31, 21, 59, tzinfo=UTC))
    await store.apply([late])
    await store.apply([early])
    assert (await store.usage.count(uid, "2025-04"), await store.usage.count(uid, "2025-03")) == (
        0,
        1,
    )


async def test_projection_does_not_depend_on_delivery_order(store: Store, uid: str) -> None:
    events: list[Event] = []
    for n in range(6):
        source = f"46000000000000{n:02d}"
        t = T0 + timedelta(minutes=n)
        events += [
            status(InvoiceState.RETRYING, t, source_id=source, attempt=1),
            status(InvoiceState.RETRYING, t + timedelta(seconds=30), source_id=source, attempt=2),
        ]
        if n % 3 == 0:
            events.append(
                status(
                    InvoiceState.FISCALIZED, t + timedelta(seconds=40), source_id=source, attempt=3
                )
            )
            events.append(
                status(
                    InvoiceState.FISCALIZED, t + timedelta(seconds=90), source_id=source, attempt=3
                )
            )
        elif n % 3 == 1:
            events.append(
                status(InvoiceState.REJECTED, t + timedelta(seconds=40), source_id=source)
            )
    events += [
        integration_event(IntegrationEventKind.CREATED, T0, tier="trial"),
        integration_event(IntegrationEventKind.CONNECTED, T0 + timedelta(minutes=1)),
        integration_event(
            IntegrationEventKind.TIER_CHANGED, T0 + timedelta(minutes=2), tier="growth"
        ),
        integration_event(IntegrationEventKind.TOKEN_INVALID, T0 + timedelta(minutes=3)),
    ]
    snapshots = []
    for seed in range(4):
        await store.drop_projection()
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        for i in range(0, len(shuffled), 3):
            await store.apply(shuffled[i : i + 3])
        snapshot = await projection_snapshot(store)
        snapshots.append(snapshot)
    assert all(s == snapshots[0] for s in snapshots[1:])
    assert await store.usage.count(uid, "2025-03") == 2
    record = await store.integrations.get(uid)
    assert record is not None and (record.status, record.tier) == (
        IntegrationStatus.INACTIVE,
        "growth",
    )


async def test_integration_status_follows_events(store: Store, uid: str) -> None:
    kinds = IntegrationEventKind
    steps = [
        (kinds.CREATED, IntegrationStatus.PENDING),
        (kinds.CONNECTED, IntegrationStatus.ACTIVE),
        (kinds.CERTIFICATE_REPLACED, IntegrationStatus.ACTIVE),
        (kinds.TOKEN_INVALID, IntegrationStatus.INACTIVE),
        (kinds.RECONNECTED, IntegrationStatus.ACTIVE),
        (kinds.DEACTIVATED, IntegrationStatus.INACTIVE),
        (kinds.CONNECTED, IntegrationStatus.ACTIVE),
        (kinds.REMOVED, IntegrationStatus.REMOVED),
        (kinds.RECONNECTED, IntegrationStatus.REMOVED),  # removed is sticky
    ]
    for n, (kind, expected) in enumerate(steps):
        await store.apply([integration_event(kind, T0 + timedelta(minutes=n))])
        record = await store.integrations.get(uid)
        assert record is not None and record.status is expected, kind
    assert [r.uid for r in await store.integrations.list_active()] == []


async def test_older_integration_event_does_not_undo_a_newer_one(store: Store, uid: str) -> None:
    await store.apply([integration_event(IntegrationEventKind.TOKEN_INVALID, T0)])
    await store.apply([integration_event(IntegrationEventKind.CONNECTED, T0 - timedelta(1))])
    record = await store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.INACTIVE
    assert record.status_reason == "token_invalid" and record.status_changed_at == T0
    await store.apply(
        [
            integration_event(IntegrationEventKind.TIER_CHANGED, T0, tier="scale"),
            integration_event(IntegrationEventKind.TIER_CHANGED, T0 - timedelta(1), tier="starter"),
        ]
    )
    record = await store.integrations.get(uid)
    assert record is not None and record.tier == "scale"


async def test_event_for_unknown_integration_is_recorded_and_ignored(
    store: Store, uid: str
) -> None:
    event = integration_event(IntegrationEventKind.CONNECTED, T0, uid="someone-else")
    assert await store.apply([event]) == {Outcome.UNKNOWN_INTEGRATION: 1}
    assert await store.apply([event]) == {Outcome.DUPLICATE: 1}
    # Invoice statuses are kept even then: the journal is the legal archive.
    assert await store.apply([status(InvoiceState.FISCALIZED, T0, uid="someone-else")]) == {
        Outcome.APPLIED: 1
    }


async def test_a_failing_batch_changes_nothing(store: Store, uid: str) -> None:
    good = status(InvoiceState.FISCALIZED, T0)
    before = await projection_snapshot(store)
    with pytest.raises(TypeError, match="does not take"):
        await store.apply([good, cast(Event, object())])
    assert await projection_snapshot(store) == before


async def test_concurrent_appliers_apply_an_event_once(
    store: Store, database: Database, uid: str
) -> None:
    others = [Store.open(database.url) for _ in range(4)]
    try:
        for n in range(5):
            event = integration_event(IntegrationEventKind.CONNECTED, T0 + timedelta(minutes=n))
            fiscalized = status(InvoiceState.FISCALIZED, T0, source_id=f"46{n:014d}")
            results = await asyncio.gather(*(o.apply([event, fiscalized]) for o in others))
            assert sum(r[Outcome.APPLIED] for r in results) == 2
            assert sum(r[Outcome.DUPLICATE] for r in results) == 2 * (len(others) - 1)
        assert await store.usage.count(uid, T0) == 5
    finally:
        for other in others:
            await other.close()


async def test_drop_projection_resets_to_neutral(store: Store, uid: str) -> None:
    await store.apply(
        [
            integration_event(IntegrationEventKind.CONNECTED, T0),
            status(InvoiceState.FISCALIZED, T0),
        ]
    )
    await store.drop_projection()
    snapshot = await projection_snapshot(store)
    assert snapshot["journal"] == snapshot["usage"] == snapshot["processed"] == []
    record = await store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.PENDING
    # Credentials are not part of the projection.
    assert await store.integrations.certificate(uid)


def mixed_history() -> list[Event]:
    """Several invoices, each with late and repeated deliveries, and integration events."""
    events: list[Event] = []
    for n in range(4):
        source = f"46000000000001{n:02d}"
        t = T0 + timedelta(minutes=n)
        events += [
            status(InvoiceState.RETRYING, t, source_id=source, attempt=1),
            status(InvoiceState.FISCALIZED, t + timedelta(seconds=30), source_id=source, attempt=2),
            # the reporter's crash window: a second receipt, later, must not replace the first
            status(InvoiceState.FISCALIZED, t + timedelta(seconds=50), source_id=source, attempt=3),
        ]
    events += [
        integration_event(IntegrationEventKind.CONNECTED, T0, tier="starter"),
        integration_event(IntegrationEventKind.TOKEN_INVALID, T0 + timedelta(minutes=5)),
    ]
    return events


async def test_replaying_a_whole_batch_changes_nothing(store: Store, uid: str) -> None:
    events = mixed_history()
    first = await store.apply(events)
    assert first[Outcome.DUPLICATE] == 0
    before = await projection_snapshot(store)
    assert await store.apply(events) == {Outcome.DUPLICATE: len(events)}
    # and again mixed with one new event: only that one is applied
    extra = status(InvoiceState.REJECTED, T0, source_id="4600000000000999")
    assert await store.apply([*events, extra]) == {
        Outcome.DUPLICATE: len(events),
        Outcome.APPLIED: 1,
    }
    after = await projection_snapshot(store)
    assert after["journal"][:-1] == before["journal"]
    assert after["usage"] == before["usage"] == [(uid, "2025-03", 4)]
    assert after["integrations"] == before["integrations"]


@pytest.mark.parametrize("seed", range(3))
async def test_one_batch_reaches_the_state_of_one_event_at_a_time(
    store: Store, uid: str, seed: int
) -> None:
    # Out of order within one batch: older after newer, the later receipt before the
    # earlier one (across the Zagreb month boundary), the same invoice several times.
    events = [
        *mixed_history(),
        status(InvoiceState.FISCALIZED, datetime(2025, 4, 1, 0, 5, tzinfo=UTC), receipt="late"),
        status(InvoiceState.RETRYING, datetime(2025, 3, 31, 20, 0, tzinfo=UTC), attempt=4),
        status(
            InvoiceState.FISCALIZED, datetime(2025, 3, 31, 21, 59, tzinfo=UTC), receipt="early"
        ),
    ]
    random.Random(seed).shuffle(events)
    for event in events:
        await store.apply([event])
    one_by_one = await projection_snapshot(store)
    await store.drop_projection()
    await store.apply(events)
    batched = await projection_snapshot(store)
    # A count that went up and down again within one batch leaves no row; one event at
    # a time leaves a row of 0 for that month. Both read as 0.
    one_by_one["usage"] = [u for u in one_by_one["usage"] if u[2]]
    assert batched == one_by_one
    entry = await store.journal.get(uid, "4600000000000001")
    assert entry is not None
    assert (entry.state, entry.receipt_id, entry.attempts) == (InvoiceState.FISCALIZED, "early", 4)
    assert entry.first_seen_at == datetime(2025, 3, 31, 20, 0, tzinfo=UTC)
    assert await store.usage.count(uid, "2025-03") == 5
    assert await store.usage.count(uid, "2025-04") == 0


async def test_two_events_of_one_invoice_in_one_batch(store: Store, uid: str) -> None:
    source = "4600000000000001"
    retrying = status(InvoiceState.RETRYING, T0, attempt=1)
    # The winning event repeats none of the evidence: what an earlier attempt stored stays.
    bare = {"protection_code": None, "signed_request": None, "signed_answer": None}
    await store.apply([retrying])
    fiscalized = status(InvoiceState.FISCALIZED, T0 + timedelta(minutes=1), attempt=2)
    rejected = status(InvoiceState.REJECTED, T0 + timedelta(minutes=2), attempt=3)
    outcomes = await store.apply(
        [fiscalized.model_copy(update=bare), rejected.model_copy(update=bare)]
    )
    assert outcomes == {Outcome.APPLIED: 1, Outcome.STALE: 1}
    entry = await store.journal.get(uid, source)
    assert entry is not None
    assert (entry.state, entry.receipt_id, entry.last_event_id) == (
        InvoiceState.FISCALIZED,
        fiscalized.receipt_id,
        fiscalized.event_id,
    )
    assert (entry.protection_code, entry.signed_request, entry.signed_answer) == (
        "a" * 32,
        "<Racun>signed</Racun>",
        None,
    )
    assert (entry.attempts, entry.first_seen_at, entry.last_seen_at) == (
        3,
        T0,
        T0 + timedelta(minutes=2),
    )
    assert await store.usage.count(uid, T0) == 1
    # A new invoice created and moved on within one batch.
    other = "4600000000000002"
    assert await store.apply(
        [
            status(InvoiceState.RETRYING, T0, source_id=other, attempt=1),
            status(InvoiceState.FISCALIZED, T0 + timedelta(seconds=5), source_id=other, attempt=2),
        ]
    ) == {Outcome.APPLIED: 2}
    entry = await store.journal.get(uid, other)
    assert entry is not None and (entry.state, entry.attempts) == (InvoiceState.FISCALIZED, 2)
    assert await store.usage.count(uid, T0) == 2


async def test_changes_pending_in_the_callers_session_are_kept(store: Store, uid: str) -> None:
    # rebuild applies batches in a session that already holds its own work: that work
    # reaches the database before the projection's statements, which build on it (left
    # pending, the row below would collide with the one the projection writes).
    async with store.transaction() as session:
        await projection.drop(session)
        session.add(LicenseUsage(integration_uid=uid, month=license_month(T0), fiscalized=5))
        assert await projection.apply_batch(session, [status(InvoiceState.FISCALIZED, T0)]) == [
            Outcome.APPLIED
        ]
    assert await store.usage.count(uid, license_month(T0)) == 6
