"""The projector's poll: one batch of what arrived, plus what arrives within the linger;
and its commit, which a rebalance may refuse."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from runtime.settings import KafkaSettings
from runtime.store import Store
from schemas.events import InvoiceRef, InvoiceState, InvoiceStatus
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
        if self.polls:
            return self.polls.pop(0)
        await asyncio.sleep(timeout_ms / 1000)  # as aiokafka: nothing came in time
        return {}


def projector(batch_size: int, linger: float = 0.01) -> Projector:
    return Projector(cast(Store, None), KafkaSettings(), batch_size=batch_size, linger=linger)


async def test_poll_adds_what_arrives_within_the_linger_in_offset_order() -> None:
    consumer = FakeConsumer({A: [record(A, 5)]}, {A: [record(A, 6)], B: [record(B, 0)]})
    batches = await projector(10)._poll(cast(AIOKafkaConsumer, consumer))
    assert {tp: [r.offset for r in records] for tp, records in batches.items()} == {
        A: [5, 6],
        B: [0],
    }
    assert consumer.calls[1]["max_records"] == 9
    assert 0 <= consumer.calls[1]["timeout_ms"] <= 10  # what is left of the linger


async def test_poll_returns_as_soon_as_the_batch_is_full() -> None:
    consumer = FakeConsumer({A: [record(A, 0)]}, {A: [record(A, 1)]}, {B: [record(B, 0)]})
    started = time.monotonic()
    batches = await projector(3, linger=30)._poll(cast(AIOKafkaConsumer, consumer))
    assert time.monotonic() - started < 5
    assert sum(len(records) for records in batches.values()) == 3
    assert [call["max_records"] for call in consumer.calls] == [3, 2, 1]


async def test_poll_waits_no_longer_than_the_linger_for_more() -> None:
    consumer = FakeConsumer({A: [record(A, 0)]})
    started = time.monotonic()
    batches = await projector(10, linger=0.05)._poll(cast(AIOKafkaConsumer, consumer))
    assert 0.04 <= time.monotonic() - started < 2
    assert list(batches) == [A]


async def test_poll_does_not_wait_when_the_batch_is_full_or_empty() -> None:
    full = FakeConsumer({A: [record(A, 0), record(A, 1)]}, {B: [record(B, 0)]})
    assert list(await projector(2)._poll(cast(AIOKafkaConsumer, full))) == [A]
    assert len(full.calls) == 1
    empty = FakeConsumer({}, {B: [record(B, 0)]})
    assert await projector(2)._poll(cast(AIOKafkaConsumer, empty)) == {}
    assert len(empty.calls) == 1


class AppliedStore:
    def __init__(self) -> None:
        self.applied: list[Any] = []

    async def apply(self, events: list[Any]) -> Counter[Any]:
        self.applied += events
        return Counter()


class RefusingConsumer:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        raise self.error


@pytest.mark.parametrize("error", [
    CommitFailedError("the group has already rebalanced"),
    IllegalStateError(f"Partition {A} is not assigned"),
])
async def test_a_commit_refused_after_a_rebalance_is_not_a_crash(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    store = AppliedStore()
    subject = Projector(cast(Store, store), KafkaSettings())
    status = InvoiceStatus(
        integration_uid="u", invoice=InvoiceRef(source_id="1", number="1", version="v"),
        state=InvoiceState.BLOCKED, reason_code="license_limit", message="over the limit",
    )
    good = dataclasses.replace(record(A, 7), value=status.to_json())

    with caplog.at_level(logging.WARNING):
        await subject._process(cast(AIOKafkaConsumer, RefusingConsumer(error)),
                               cast(AIOKafkaProducer, None), {A: [good]})

    assert len(store.applied) == 1  # applied; its new owner finds it processed
    assert "commit refused after a rebalance" in caplog.text
