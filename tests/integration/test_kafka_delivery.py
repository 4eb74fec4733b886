"""Delivery guarantees the services build on, checked against the real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from runtime.kafka import clients
from runtime.settings import KafkaSettings
from tests.fixtures.kafka import MakeTopic

pytestmark = pytest.mark.kafka


Client = TypeVar("Client", AIOKafkaProducer, AIOKafkaConsumer)


@asynccontextmanager
async def started(client: Client) -> AsyncIterator[Client]:
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def drain(consumer: AIOKafkaConsumer, last: bytes, timeout_s: float = 20.0) -> list[bytes]:
    """Values fetched up to and including `last` (or until the timeout).

    Every test writes with one key, so all records share a partition and its order:
    anything delivered twice or wrongly shown would arrive before `last`.
    """
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while last not in values and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        values += [r.value for records in batches.values() for r in records if r.value]
    return values


async def produce(settings: KafkaSettings, topic: str, values: Iterable[bytes]) -> None:
    async with started(clients.producer(settings)) as producer:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"integration-1")


async def test_idempotent_producer_writes_each_record_once_in_key_order(
    kafka_settings: KafkaSettings, make_topic: MakeTopic
) -> None:
    topic = await make_topic(partitions=3)
    sent = [f"invoice-{i}".encode() for i in range(50)]

    async with started(clients.producer(kafka_settings)) as producer:
        results = [await producer.send(topic, v, key=b"integration-7") for v in sent]
        metadata = [await result for result in results]

    assert len({m.partition for m in metadata}) == 1  # one key, one partition, one order
    partition = metadata[0].partition
    assert [m.offset for m in metadata] == list(range(len(sent)))
    async with started(clients.consumer(kafka_settings, group_id=None)) as consumer:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        assert await drain(consumer, last=sent[-1]) == sent
        assert await consumer.end_offsets([tp]) == {tp: len(sent)}


async def test_a_restarted_group_member_sees_nothing_twice(
    kafka_settings: KafkaSettings, make_topic: MakeTopic
) -> None:
    topic = await make_topic(partitions=2)
    group = f"test-group-{uuid.uuid4().hex[:8]}"
    await produce(kafka_settings, topic, [b"a1", b"a2", b"a3"])

    async with started(clients.consumer(kafka_settings, topic, group_id=group)) as consumer:
        assert await drain(consumer, last=b"a3") == [b"a1", b"a2", b"a3"]
        await consumer.commit()

    await produce(kafka_settings, topic, [b"b1", b"b2"])
    async with started(clients.consumer(kafka_settings, topic, group_id=group)) as consumer:
        assert await drain(consumer, last=b"b2") == [b"b1", b"b2"]


async def test_records_not_committed_are_delivered_again(
    kafka_settings: KafkaSettings, make_topic: MakeTopic
) -> None:
    topic = await make_topic()
    group = f"test-group-{uuid.uuid4().hex[:8]}"
    await produce(kafka_settings, topic, [b"c1", b"c2"])

    for _ in range(2):  # no commit: auto-commit is off, so a crash redelivers
        async with started(clients.consumer(kafka_settings, topic, group_id=group)) as consumer:
            assert await drain(consumer, last=b"c2") == [b"c1", b"c2"]


async def test_read_committed_sees_committed_transactions_only(
    kafka_settings: KafkaSettings, make_topic: MakeTopic
) -> None:
    topic = await make_topic()
    writer = clients.transactional_producer(kafka_settings, f"test-tx-{uuid.uuid4().hex[:8]}")
    async with started(writer) as producer:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"kept", key=b"integration-1")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"dropped", key=b"integration-1")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"end", key=b"integration-1")

    async with started(clients.consumer(kafka_settings, topic, group_id=None)) as consumer:
        assert await drain(consumer, last=b"end") == [b"kept", b"end"]
    # The aborted record is on the log; only the isolation level hides it.
    uncommitted = clients.consumer(
        kafka_settings, topic, group_id=None, isolation_level="read_uncommitted"
    )
    async with started(uncommitted) as consumer:
        assert await drain(consumer, last=b"end") == [b"kept", b"dropped", b"end"]


async def test_offsets_for_times_finds_the_first_record_at_or_after_a_time(
    kafka_settings: KafkaSettings, make_topic: MakeTopic
) -> None:
    topic = await make_topic()
    tp = TopicPartition(topic, 0)
    t0 = int(time.time() * 1000) - 60_000
    async with started(clients.producer(kafka_settings)) as producer:
        first = await producer.send_and_wait(topic, b"early", partition=0, timestamp_ms=t0)
        second = await producer.send_and_wait(topic, b"late", partition=0, timestamp_ms=t0 + 10_000)

    async with started(clients.consumer(kafka_settings, group_id=None)) as consumer:
        between = await consumer.offsets_for_times({tp: t0 + 5_000})
        exact = await consumer.offsets_for_times({tp: t0})
        future = await consumer.offsets_for_times({tp: int(time.time() * 1000) + 3_600_000})

    assert between[tp] is not None and between[tp].offset == second.offset
    assert between[tp].timestamp == t0 + 10_000
    assert exact[tp] is not None and exact[tp].offset == first.offset
    assert future[tp] is None
