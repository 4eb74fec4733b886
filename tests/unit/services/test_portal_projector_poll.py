"""The projector's poll: one batch of what arrived, plus what arrives within the linger."""

from __future__ import annotations

from typing import Any, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from runtime.settings import KafkaSettings
from runtime.store import Store
from services.portal.projector import Projector

Batches = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
A, B = TopicPartition("invoices.status", 0), TopicPartition("invoices.status", 1)


def record(tp: TopicPartition, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=tp.topic, partition=tp.partition, offset=offset, timestamp=0, timestamp_type=0,
        key=None, value=b"{}", checksum=None, serialized_key_size=0,
        serialized_value_size=2, headers=(),
    )


class FakeConsumer:
    def __init__(self, *polls: Batches) -> None:
        self.polls = list(polls)
        self.calls: list[dict[str, Any]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> Batches:
        self.calls.append({"timeout_ms": timeout_ms, "max_records": max_records})
        return self.polls.pop(0) if self.polls else {}


def projector(batch_size: int, linger: float = 0.01) -> Projector:
    return Projector(cast(Store, None), KafkaSettings(), batch_size=batch_size, linger=linger)


async def test_poll_adds_what_arrives_within_the_linger_in_offset_order() -> None:
    consumer = FakeConsumer({A: [record(A, 5)]}, {A: [record(A, 6)], B: [record(B, 0)]})
    batches = await projector(10)._poll(cast(AIOKafkaConsumer, consumer))
    assert {tp: [r.offset for r in records] for tp, records in batches.items()} == {
        A: [5, 6],
        B: [0],
    }
    assert consumer.calls[1] == {"timeout_ms": 0, "max_records": 9}


async def test_poll_does_not_wait_when_the_batch_is_full_or_empty() -> None:
    full = FakeConsumer({A: [record(A, 0), record(A, 1)]}, {B: [record(B, 0)]})
    assert list(await projector(2)._poll(cast(AIOKafkaConsumer, full))) == [A]
    assert len(full.calls) == 1
    empty = FakeConsumer({}, {B: [record(B, 0)]})
    assert await projector(2)._poll(cast(AIOKafkaConsumer, empty)) == {}
    assert len(empty.calls) == 1
