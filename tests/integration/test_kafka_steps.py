"""The stream-step layer (runtime/kafka: stream, steps, commit, dlq) against the real
broker: what is committed is the processed prefix, batches linger and fill, a dead
letter keeps the record and its headers, a refused commit is no crash, and a rebalance
finishes and commits what is in hand before the partitions go."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import pytest
from aiokafka import TopicPartition

from runtime.kafka import clients
from runtime.kafka.admin import delete_topics, ensure_topics
from runtime.kafka.commit import EVERY_BATCH, CommitOffsets, CommitPolicy
from runtime.kafka.dlq import ERROR_MESSAGE, ERROR_TYPE, SOURCE, DeadLetters
from runtime.kafka.steps import Batch, Record, RunConcurrently, Step
from runtime.kafka.stream import StreamConsumer
from runtime.settings import KafkaSettings
from schemas.events import Event
from schemas.topics import Topic
from tests.fixtures.kafka import MakeTopic

pytestmark = pytest.mark.kafka

Factory = Callable[[frozenset[TopicPartition], CommitOffsets], Awaitable[Step]]


async def produce(kafka: KafkaSettings, topic: str, count: int, partition: int = 0,
                  headers: list[tuple[str, bytes]] | None = None) -> None:
    producer = clients.producer(kafka)
    await producer.start()
    try:
        for n in range(count):
            await producer.send_and_wait(topic, f"v{n}".encode(), key=b"k",
                                         partition=partition, headers=headers)
    finally:
        await producer.stop()


async def committed(kafka: KafkaSettings, group: str, tps: Sequence[TopicPartition]
                    ) -> dict[TopicPartition, int | None]:
    consumer = clients.consumer(kafka, group_id=group)
    await consumer.start()
    try:
        return {tp: await consumer.committed(tp) for tp in tps}
    finally:
        await consumer.stop()


class Running:
    """A StreamConsumer of its own consumer, run as a task until stopped."""

    def __init__(self, kafka: KafkaSettings, topic: str, group: str, factory: Factory,
                 policy: CommitPolicy, **options: float | int) -> None:
        self.consumer = clients.consumer(kafka, group_id=group)
        self.stream = StreamConsumer(self.consumer, factory, policy, **options)  # type: ignore[arg-type]
        self.stream.subscribe([topic])
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        await self.consumer.start()
        self.task = asyncio.create_task(self.stream.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        try:
            if self.task is not None:
                await asyncio.wait_for(self.task, 30)
        finally:
            await self.consumer.stop()


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.fixture
def group() -> str:
    return f"test-steps-{uuid.uuid4().hex[:8]}"


async def test_only_the_processed_prefix_is_committed_when_records_finish_out_of_order(
    kafka_settings: KafkaSettings, make_topic: MakeTopic, group: str
) -> None:
    topic = await make_topic(partitions=1)
    tp = TopicPartition(topic, 0)
    await produce(kafka_settings, topic, 10)
    release = {offset: asyncio.Event() for offset in range(10)}
    done: list[int] = []

    async def work(record: Record) -> None:
        await release[record.offset].wait()
        done.append(record.offset)

    async def factory(partitions: frozenset[TopicPartition], commit: CommitOffsets) -> Step:
        return RunConcurrently(work, commit, limit=10)

    async with Running(kafka_settings, topic, group, factory, CommitPolicy(seconds=0.05)):
        for offset in (1, 2, 3, 5):  # 0 and 4 still in hand
            release[offset].set()
        await until(lambda: len(done) == 4)
        await asyncio.sleep(0.5)  # commit interval passed many times
        assert await committed(kafka_settings, group, [tp]) == {tp: None}
        release[0].set()
        await until(lambda: len(done) == 5)
        await asyncio.sleep(0.5)
        assert await committed(kafka_settings, group, [tp]) == {tp: 4}
        for offset in range(10):
            release[offset].set()  # stopping finishes and commits what is in hand
    assert sorted(done) == list(range(10))
    assert await committed(kafka_settings, group, [tp]) == {tp: 10}


async def test_a_batch_fills_or_lingers_and_commits_after_its_work(
    kafka_settings: KafkaSettings, make_topic: MakeTopic, group: str
) -> None:
    topic = await make_topic(partitions=1)
    tp = TopicPartition(topic, 0)
    batches: list[tuple[list[int], int | None]] = []  # offsets, committed when it ran
    probe = clients.consumer(kafka_settings, group_id=group)

    async def work(records: Sequence[Record]) -> None:
        batches.append(([r.offset for r in records], await probe.committed(tp)))

    async def factory(partitions: frozenset[TopicPartition], commit: CommitOffsets) -> Step:
        return Batch(work, commit, size=4, linger=1.0)

    await probe.start()
    try:
        async with Running(kafka_settings, topic, group, factory, EVERY_BATCH,
                           poll_seconds=0.05, max_records=4):
            await produce(kafka_settings, topic, 6)
            await until(lambda: len(batches) == 1)  # full at once
            loop = asyncio.get_running_loop()
            full_at = loop.time()
            await until(lambda: len(batches) == 2)  # the rest, after the linger
            assert 0.5 <= loop.time() - full_at < 3
    finally:
        await probe.stop()
    assert batches == [([0, 1, 2, 3], None), ([4, 5], 4)]
    assert await committed(kafka_settings, group, [tp]) == {tp: 6}


async def test_a_dead_letter_keeps_the_record_and_its_headers_and_adds_the_error(
    kafka_settings: KafkaSettings, make_topic: MakeTopic
) -> None:
    source = Topic(await make_topic(partitions=1), Event)
    await ensure_topics(kafka_settings, [Topic(source.dlq, Event, 1)])
    producer = clients.producer(kafka_settings)
    reader = clients.consumer(kafka_settings, source.name, source.dlq, group_id=None)
    await producer.start()
    await reader.start()
    try:
        await produce(kafka_settings, source.name, 1, headers=[("trace", b"abc")])
        (record,) = (await reader.getmany(timeout_ms=10_000)).get(
            TopicPartition(source.name, 0), []
        )
        await DeadLetters([source], producer).park(record, ValueError("no such invoice"))
        letters: list[Record] = []
        async with asyncio.timeout(20):
            while not letters:
                letters = (await reader.getmany(timeout_ms=500)).get(
                    TopicPartition(source.dlq, 0), []
                )
    finally:
        await reader.stop()
        await producer.stop()
        await delete_topics(kafka_settings, [source.dlq])
    (letter,) = letters
    assert (letter.key, letter.value) == (b"k", b"v0")
    assert list(letter.headers) == [
        ("trace", b"abc"),
        (ERROR_TYPE, b"ValueError"),
        (ERROR_MESSAGE, b"no such invoice"),
        (SOURCE, f"{source.name}/0/0".encode()),
    ]


async def test_a_letter_for_a_topic_the_policy_does_not_read_is_refused() -> None:
    record = Record(topic="elsewhere", partition=0, offset=0, timestamp=0, timestamp_type=0,
                    key=None, value=b"", checksum=None, serialized_key_size=0,
                    serialized_value_size=0, headers=())
    with pytest.raises(KeyError):
        DeadLetters([Topic("invoices.signed", Event)]).letter(record, ValueError())


async def test_a_commit_the_group_refuses_is_logged_and_stays_to_commit(
    kafka_settings: KafkaSettings, make_topic: MakeTopic, group: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = await make_topic(partitions=1)
    tp = TopicPartition(topic, 0)
    await produce(kafka_settings, topic, 3)
    done: list[int] = []

    async def work(record: Record) -> None:
        done.append(record.offset)

    async def factory(partitions: frozenset[TopicPartition], commit: CommitOffsets) -> Step:
        return RunConcurrently(work, commit, limit=1)

    outsider = clients.consumer(kafka_settings, group_id=group)
    await outsider.start()
    try:
        async with Running(kafka_settings, topic, group, factory, EVERY_BATCH):
            await until(lambda: len(done) == 3)
            # Not a member of the group that owns the partition (as a member is once a
            # rebalance moved its partitions on): the broker refuses its commit.
            outsider.assign([tp])
            commit = CommitOffsets(outsider, EVERY_BATCH)
            for offset in range(3):
                commit.read(_record(topic, offset))
                await commit.submit(_record(topic, offset))
            with caplog.at_level(logging.WARNING, logger="fiscobridge.kafka"):
                assert not await commit.commit()
            assert "commit refused after a rebalance" in caplog.text
            assert commit.prefix.committable() == {tp: 3}  # not taken as committed
            # A partition not assigned at all: refused before it reaches the broker.
            elsewhere = CommitOffsets(outsider, EVERY_BATCH)
            elsewhere.read(_record(topic, 0, partition=7))
            await elsewhere.submit(_record(topic, 0, partition=7))
            assert not await elsewhere.commit()
    finally:
        await outsider.stop()
    assert await committed(kafka_settings, group, [tp]) == {tp: 3}


def _record(topic: str, offset: int, partition: int = 0) -> Record:
    return Record(topic=topic, partition=partition, offset=offset, timestamp=0,
                  timestamp_type=0, key=None, value=b"", checksum=None,
                  serialized_key_size=0, serialized_value_size=0, headers=())


async def test_a_rebalance_finishes_and_commits_what_is_in_hand_first(
    kafka_settings: KafkaSettings, make_topic: MakeTopic, group: str
) -> None:
    topic = await make_topic(partitions=4)
    for partition in range(4):
        await produce(kafka_settings, topic, 50, partition=partition)
    seen: Counter[tuple[int, int]] = Counter()

    def factory_of(delay: float) -> Factory:
        async def work(record: Record) -> None:
            await asyncio.sleep(delay)
            seen[(record.partition, record.offset)] += 1

        async def factory(partitions: frozenset[TopicPartition], commit: CommitOffsets
                          ) -> Step:
            return RunConcurrently(work, commit, limit=8)

        return factory

    # The first member is slow, so a rebalance finds records in hand; the second joins.
    async with Running(kafka_settings, topic, group, factory_of(0.05),
                       CommitPolicy(seconds=10)):
        await until(lambda: len(seen) >= 20)
        async with Running(kafka_settings, topic, group, factory_of(0.0),
                           CommitPolicy(seconds=10)) as second:
            await until(lambda: len(second.stream.partitions) > 0)
            await until(lambda: len(seen) == 200, timeout=60)
    assert set(seen.values()) == {1}, [k for k, n in seen.items() if n > 1]
    tps = [TopicPartition(topic, p) for p in range(4)]
    assert await committed(kafka_settings, group, tps) == dict.fromkeys(tps, 50)



async def test_a_chain_that_cannot_be_built_stops_the_loop(
    kafka_settings: KafkaSettings, make_topic: MakeTopic, group: str
) -> None:
    topic = await make_topic(partitions=1)
    await produce(kafka_settings, topic, 1)

    async def factory(partitions: frozenset[TopicPartition], commit: CommitOffsets) -> Step:
        raise RuntimeError("no outcomes to look up")

    consumer = clients.consumer(kafka_settings, group_id=group)
    stream = StreamConsumer(consumer, factory, EVERY_BATCH)
    stream.subscribe([topic])
    await consumer.start()
    try:
        with pytest.raises(RuntimeError, match="no outcomes"):
            await asyncio.wait_for(stream.run(asyncio.Event()), 30)
    finally:
        await consumer.stop()
    tp = TopicPartition(topic, 0)
    assert await committed(kafka_settings, group, [tp]) == {tp: None}
