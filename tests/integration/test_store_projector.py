"""The projector and the rebuild, on the real broker and both databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import RecordsToDelete
from aiokafka.structs import RecordMetadata

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from runtime.kafka import clients
from runtime.kafka.admin import admin_client, delete_topics, ensure_topics
from runtime.settings import KafkaSettings
from runtime.store import IntegrationStatus, Outcome, Store
from runtime.store.rebuild import RebuildRefused, Topics, rebuild
from schemas.events import Channel, Event, IntegrationEventKind, InvoiceReceived, InvoiceState
from schemas.invoice import Invoice, SourceStatus
from schemas.topics import Topic
from services.portal.projector import SKIPPED, Projector
from tests.factories import make_invoice
from tests.fixtures.certs import Pfx
from tests.fixtures.kafka import MakeTopic
from tests.fixtures.store import integration_event_at, invoice_status_at, projection_snapshot

pytestmark = pytest.mark.kafka

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
async def topics(make_topic: MakeTopic) -> Topics:
    return Topics(status=await make_topic(partitions=3), events=await make_topic(partitions=2))


@pytest.fixture
async def uids(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> list[str]:
    account, _ = await store.accounts.ensure("owner@obrt.hr")
    uids = []
    for _ in range(3):
        created = await store.integrations.create(
            account_id=account.account_id,
            fiscal_settings=fiscal_settings,
            pfx=demo_pfx.data,
            password=demo_pfx.password,
            certificate=demo_certificate,
        )
        uids.append(created.record.uid)
    return uids


def history(uids: Sequence[str]) -> tuple[list[Event], list[Event]]:
    """(status events, integration events) with duplicates and late deliveries."""
    statuses: list[Event] = []
    events: list[Event] = []
    for i, uid in enumerate(uids):
        events.append(
            integration_event_at(IntegrationEventKind.CREATED, T0, uid=uid, tier="starter")
        )
        events.append(
            integration_event_at(IntegrationEventKind.CONNECTED, T0 + timedelta(minutes=1), uid=uid)
        )
        for n in range(8):
            source = f"46{i:04d}{n:010d}"
            t = T0 + timedelta(minutes=10 + n)
            retry = invoice_status_at(InvoiceState.RETRYING, t, uid=uid, source_id=source)
            final = invoice_status_at(
                InvoiceState.FISCALIZED if n % 4 else InvoiceState.REJECTED,
                t + timedelta(seconds=20),
                uid=uid,
                source_id=source,
                attempt=2,
            )
            # the retry is delivered after the final outcome once in a while
            statuses += [final, retry] if n % 3 == 0 else [retry, final]
        statuses.append(statuses[-1])  # a duplicate delivery
    events.append(
        integration_event_at(
            IntegrationEventKind.TOKEN_INVALID, T0 + timedelta(hours=1), uid=uids[0]
        )
    )
    events.append(
        integration_event_at(IntegrationEventKind.REMOVED, T0 + timedelta(hours=2), uid=uids[1])
    )
    return statuses, events


async def publish(kafka: KafkaSettings, topic: str, events: Sequence[Event]) -> None:
    producer = clients.producer(kafka)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, event.to_json(), key=event.key)
    finally:
        await producer.stop()


async def publish_raw(kafka: KafkaSettings, topic: str, value: bytes) -> RecordMetadata:
    producer = clients.producer(kafka)
    await producer.start()
    try:
        return await producer.send_and_wait(topic, value, key=b"someone")
    finally:
        await producer.stop()


async def processed_count(store: Store) -> int:
    return len((await projection_snapshot(store))["processed"])


async def run_until(projector: Projector, *, processed: int) -> None:
    """Run the projector until the store holds `processed` event ids, then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(projector.run(stop))
    try:
        async with asyncio.timeout(60):
            while await processed_count(projector.store) < processed:
                if task.done():
                    task.result()
                await asyncio.sleep(0.2)
    finally:
        stop.set()
        await task


@pytest.fixture
async def projector_group() -> AsyncIterator[str]:
    yield f"test-projector-{uuid.uuid4().hex[:8]}"


async def test_projector_applies_both_topics_and_commits(
    store: Store,
    uids: list[str],
    topics: Topics,
    kafka_settings: KafkaSettings,
    projector_group: str,
) -> None:
    statuses, events = history(uids)
    await publish(kafka_settings, topics.status, statuses)
    await publish(kafka_settings, topics.events, events)
    unique = len({e.event_id for e in [*statuses, *events]})
    projector = Projector(
        store, kafka_settings, topics=topics, group_id=projector_group, batch_size=10
    )
    await run_until(projector, processed=unique)

    records = {uid: await store.integrations.get(uid) for uid in uids}
    assert [r.status if r else None for r in records.values()] == [
        IntegrationStatus.INACTIVE,
        IntegrationStatus.REMOVED,
        IntegrationStatus.ACTIVE,
    ]
    assert all(r is not None and r.tier == "starter" for r in records.values())
    for uid in uids:
        assert await store.usage.count(uid, T0) == 6
        assert await store.journal.counts(uid) == {
            InvoiceState.FISCALIZED: 6,
            InvoiceState.REJECTED: 2,
        }
    # Offsets were committed: a restart reads nothing again.
    before = await projection_snapshot(store)
    consumer = clients.consumer(kafka_settings, group_id=projector_group)
    await consumer.start()
    try:
        parts = [TopicPartition(topics.status, p) for p in range(3)]
        parts += [TopicPartition(topics.events, p) for p in range(2)]
        end = await consumer.end_offsets(parts)
        committed = {tp: await consumer.committed(tp) for tp in parts}
        assert committed == {tp: end[tp] or None for tp in parts}
    finally:
        await consumer.stop()
    await run_until(
        Projector(store, kafka_settings, topics=topics, group_id=projector_group), processed=unique
    )
    assert await projection_snapshot(store) == before


async def test_projector_killed_mid_batch_converges_after_restart(
    store: Store,
    uids: list[str],
    topics: Topics,
    kafka_settings: KafkaSettings,
    projector_group: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    statuses, events = history(uids)
    await publish(kafka_settings, topics.status, statuses)
    await publish(kafka_settings, topics.events, events)
    unique = len({e.event_id for e in [*statuses, *events]})

    # Die after the database committed a batch but before its offsets were committed:
    # the worst moment, since the restart re-delivers what is already applied.
    real_apply = Store.apply
    calls = 0

    async def apply_then_die(self: Store, batch: Sequence[Event]) -> object:
        nonlocal calls
        result = await real_apply(self, batch)
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt("killed")
        return result

    monkeypatch.setattr(Store, "apply", apply_then_die)
    projector = Projector(
        store, kafka_settings, topics=topics, group_id=projector_group, batch_size=7
    )
    with pytest.raises(KeyboardInterrupt):
        await projector.run(asyncio.Event())
    monkeypatch.setattr(Store, "apply", real_apply)
    partial = await processed_count(store)
    assert 0 < partial < unique

    # A plain cancellation (SIGKILL of a task) mid-run, then the final restart.
    task = asyncio.create_task(
        Projector(store, kafka_settings, topics=topics, group_id=projector_group, batch_size=3).run(
            asyncio.Event()
        )
    )
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await run_until(
        Projector(store, kafka_settings, topics=topics, group_id=projector_group), processed=unique
    )
    converged = await projection_snapshot(store)
    for uid in uids:
        assert await store.usage.count(uid, T0) == 6  # counted once despite re-delivery

    report = await rebuild(store, kafka_settings, topics=topics)
    assert await projection_snapshot(store) == converged
    assert report.records == {topics.status: len(statuses), topics.events: len(events)}
    assert report.outcomes[Outcome.DUPLICATE] == len(statuses) + len(events) - unique


async def test_rebuild_equals_the_live_projection_row_for_row(
    store: Store,
    uids: list[str],
    topics: Topics,
    kafka_settings: KafkaSettings,
    projector_group: str,
) -> None:
    statuses, events = history(uids)
    await publish(kafka_settings, topics.status, statuses)
    await publish(kafka_settings, topics.events, events)
    unique = len({e.event_id for e in [*statuses, *events]})
    await run_until(
        Projector(store, kafka_settings, topics=topics, group_id=projector_group), processed=unique
    )
    before = await projection_snapshot(store)
    assert len(before["journal"]) == 24

    report = await rebuild(store, kafka_settings, topics=topics)
    assert await projection_snapshot(store) == before
    assert report.journal_entries == 24
    assert report.integrations == {"active": 1, "inactive": 1, "removed": 1}

    # Records published after the rebuild started are left to the live projector.
    late = invoice_status_at(InvoiceState.FISCALIZED, T0, uid=uids[2], source_id="late-1")
    await publish(kafka_settings, topics.status, [late])
    await run_until(
        Projector(store, kafka_settings, topics=topics, group_id=projector_group),
        processed=unique + 1,
    )
    assert await store.journal.get(uids[2], "late-1") is not None


async def test_failed_rebuild_keeps_the_old_projection(
    store: Store,
    uids: list[str],
    topics: Topics,
    kafka_settings: KafkaSettings,
) -> None:
    await store.apply([invoice_status_at(InvoiceState.FISCALIZED, T0, uid=uids[0])])
    before = await projection_snapshot(store)
    await publish(
        kafka_settings, topics.status, [invoice_status_at(InvoiceState.FISCALIZED, T0, uid=uids[1])]
    )
    with pytest.raises(RebuildRefused, match="do not exist"):
        await rebuild(
            store, kafka_settings, topics=Topics(status=topics.status, events="no.such.topic")
        )
    assert await projection_snapshot(store) == before


async def test_rebuild_refuses_when_the_topic_lost_records(
    store: Store,
    uids: list[str],
    topics: Topics,
    kafka_settings: KafkaSettings,
) -> None:
    one = invoice_status_at(InvoiceState.FISCALIZED, T0, uid=uids[0], source_id="a")
    two = invoice_status_at(InvoiceState.FISCALIZED, T0, uid=uids[0], source_id="b")
    await publish(kafka_settings, topics.status, [one, two])
    await store.apply([one, two])
    before = await projection_snapshot(store)
    partition = (await publish_raw(kafka_settings, topics.events, b"{}")).partition
    async with admin_client(kafka_settings) as admin:
        await admin.delete_records(
            {TopicPartition(topics.events, partition): RecordsToDelete(before_offset=1)}
        )
    with pytest.raises(RebuildRefused, match=r"no longer start at offset 0"):
        await rebuild(store, kafka_settings, topics=topics)
    assert await projection_snapshot(store) == before
    report = await rebuild(store, kafka_settings, topics=topics, allow_truncated=True)
    assert report.journal_entries == 2


async def test_bad_records_go_to_the_dead_letter_topic(
    store: Store,
    uids: list[str],
    topics: Topics,
    kafka_settings: KafkaSettings,
    projector_group: str,
) -> None:
    dlq = f"{topics.status}.dlq"
    await ensure_topics(kafka_settings, [Topic(dlq, Event, 1)])
    try:
        good = invoice_status_at(InvoiceState.FISCALIZED, T0, uid=uids[0])
        too_long = invoice_status_at(InvoiceState.FISCALIZED, T0, uid=uids[0], source_id="x" * 300)
        await publish_raw(kafka_settings, topics.status, b"not json at all")
        await publish(kafka_settings, topics.status, [good, too_long])
        await publish(kafka_settings, topics.events, [])
        expected_dead = 2 if store.engine.dialect.name == "postgresql" else 1
        await run_until(
            Projector(store, kafka_settings, topics=topics, group_id=projector_group),
            processed=3 - expected_dead,
        )
        assert await store.journal.get(uids[0], good.invoice.source_id) is not None
        consumer = clients.consumer(kafka_settings, dlq, group_id=None)
        await consumer.start()
        try:
            dead: list[ConsumerRecord[bytes, bytes]] = []
            async with asyncio.timeout(20):
                while len(dead) < expected_dead:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        dead += records
        finally:
            await consumer.stop()
        assert dead[0].value == b"not json at all"
        headers = dict(dead[0].headers)
        assert headers["fiscobridge.error.type"] == b"ValidationError"
        assert headers["fiscobridge.source"].startswith(topics.status.encode())
        if expected_dead == 2:
            assert headers.keys() <= dict(dead[1].headers).keys()
            assert dict(dead[1].headers)["fiscobridge.error.type"] == b"DBAPIError"
            assert b"too long" in dict(dead[1].headers)["fiscobridge.error.message"]
    finally:
        await delete_topics(kafka_settings, [dlq])


async def _end_offsets(kafka: KafkaSettings, topic: str) -> int:
    """How many records `topic` holds, over all its partitions."""
    consumer = clients.consumer(kafka, group_id=None)
    await consumer.start()
    try:
        parts = await clients.partitions_of(consumer, topic)
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


async def test_projector_keeps_the_first_receipt_of_each_invoice(
    store: Store,
    uids: list[str],
    topics: Topics,
    kafka_settings: KafkaSettings,
    projector_group: str,
    make_topic: MakeTopic,
) -> None:
    """invoices.received gives the history's "received" step: the earliest delivery out
    of draft, once per invoice, whatever the number and order of deliveries; a record
    that is no event is skipped and counted, not parked: the fiscalizer, whose topic it
    is, parks it, and a second letter would be redriven to it twice."""
    received = await make_topic(partitions=2)
    dlq = f"{received}.dlq"
    await ensure_topics(kafka_settings, [Topic(dlq, Event, 1)])
    try:
        issued = make_invoice(source_id="r-1", number="INV-1", status=SourceStatus.SENT)
        draft = make_invoice(source_id="r-2", number="INV-2", status=SourceStatus.DRAFT)

        def delivery(invoice: Invoice, at: datetime, channel: Channel) -> InvoiceReceived:
            return InvoiceReceived(integration_uid=uids[0], invoice=invoice, channel=channel,
                                   occurred_at=at)

        await publish(kafka_settings, received, [
            delivery(issued, T0 + timedelta(minutes=5), Channel.POLL),
            delivery(draft, T0, Channel.WEBHOOK),
            delivery(issued, T0 + timedelta(minutes=1), Channel.WEBHOOK),
        ])
        await publish_raw(kafka_settings, received, b"not an invoice")
        status = invoice_status_at(InvoiceState.FISCALIZED, T0 + timedelta(minutes=2),
                                   uid=uids[0], source_id="r-1")
        await publish(kafka_settings, topics.status, [status])
        stop = asyncio.Event()
        projector = Projector(store, kafka_settings, topics=topics, group_id=projector_group,
                              received_topic=received)
        task = asyncio.create_task(projector.run(stop))
        try:
            async with asyncio.timeout(60):
                while True:
                    steps = await store.journal.history(uids[0], "r-1")
                    if len(steps) == 2:
                        break
                    if task.done():
                        task.result()
                    await asyncio.sleep(0.2)
        finally:
            stop.set()
            await task
        assert [(s.state, s.occurred_at, s.reason_code) for s in steps] == [
            ("received", T0 + timedelta(minutes=1), "webhook"),
            (InvoiceState.FISCALIZED, status.occurred_at, status.reason_code),
        ]
        assert await store.journal.history(uids[0], "r-2") == []  # a draft is not received
        assert SKIPPED.labels(received)._value.get() == 1
        assert await _end_offsets(kafka_settings, dlq) == 0
    finally:
        await delete_topics(kafka_settings, [dlq])
