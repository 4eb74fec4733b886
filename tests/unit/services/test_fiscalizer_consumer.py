"""The fiscalizer's consumer commits only offsets whose records were all processed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import faust
import pytest
from faust.transport.drivers.aiokafka import Consumer, Transport
from faust.types import TP, Message

from services.fiscalizer.consumer import ContiguousConsumer

TOPIC = "invoices.received"
tp = TP(TOPIC, 0)


def _message(offset: int) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, [], b"k", b"v", None, tp=tp)


@pytest.fixture
def app() -> Iterator[faust.App]:
    app = faust.App("offsets-test", broker="kafka://localhost:1", store="memory://")
    app.topic(TOPIC)  # acks are counted only for topics an agent reads
    app.topics.acking_topics.add(TOPIC)
    yield app


def _consumer(app: faust.App, cls: type[Consumer]) -> Consumer:
    async def callback(message: Message) -> None:
        return None

    async def rebalance(tps: object) -> None:
        return None

    return cls(app.transport, callback=callback, on_partitions_revoked=rebalance,
               on_partitions_assigned=rebalance)


def _hand_on(consumer: Consumer, message: Message) -> None:
    """What the fetch loop does with each record it passes to the agents."""
    consumer.track_message(message)
    if isinstance(consumer, ContiguousConsumer):
        async def hand() -> None:
            await consumer.callback(message)

        asyncio.run(hand())


def _commit(consumer: Consumer) -> int | None:
    """What a commit would write, recorded as faust records a commit it made."""
    offset: int | None = consumer._new_offset(tp)
    if offset is not None:
        consumer._committed_offset[tp] = offset
    return offset


def _after_late_seek(consumer: Consumer) -> list[Message]:
    """Records 209..251 handed to the agent, then the assignment's seek resets faust's
    read offset to the committed 209, and record 252 arrives: what faust does then."""
    consumer._committed_offset[tp] = 209
    handed = [_message(offset) for offset in range(209, 253)]
    for message in handed[:-1]:
        _hand_on(consumer, message)
    consumer._read_offset[tp] = 209  # perform_seek
    asyncio.run(consumer._add_gap(tp, 210, 252))  # the drain loop's call for record 252
    _hand_on(consumer, handed[-1])
    return handed


def test_stock_faust_counts_records_handed_on_as_skipped(app: faust.App) -> None:
    # Why ContiguousConsumer exists; when this fails, faust mended it and it can go.
    consumer = _consumer(app, Consumer)
    _after_late_seek(consumer)
    assert [(gap.begin, gap.end) for gap in consumer._gap[tp]] == [(210, 253)]


def test_records_handed_on_are_no_gap(app: faust.App) -> None:
    consumer = _consumer(app, ContiguousConsumer)
    _after_late_seek(consumer)
    assert not consumer._gap[tp]


def test_after_a_late_seek_only_processed_records_are_committed(app: faust.App) -> None:
    consumer = _consumer(app, ContiguousConsumer)
    handed = _after_late_seek(consumer)
    consumer.ack(handed[0])
    assert _commit(consumer) == 210
    for message in handed[1:30]:
        consumer.ack(message)
    assert _commit(consumer) == 239


def test_a_run_that_does_not_start_at_the_committed_offset_waits(app: faust.App) -> None:
    consumer = _consumer(app, ContiguousConsumer)
    consumer._committed_offset[tp] = 100
    messages = [_message(offset) for offset in range(100, 105)]
    for message in messages:
        _hand_on(consumer, message)
    for message in messages[1:]:
        consumer.ack(message)
    assert _commit(consumer) is None  # faust alone would commit 105, skipping 100
    consumer.ack(messages[0])
    assert _commit(consumer) == 105


def test_offsets_the_broker_really_skipped_are_committed_over(app: faust.App) -> None:
    consumer = _consumer(app, ContiguousConsumer)
    consumer._committed_offset[tp] = 100
    first = _message(100)
    _hand_on(consumer, first)
    consumer._read_offset[tp] = 100
    asyncio.run(consumer._add_gap(tp, 101, 110))  # 101..109 are gone (say, retention)
    arrived = _message(110)
    _hand_on(consumer, arrived)
    consumer.ack(first)
    assert _commit(consumer) == 101
    consumer.ack(arrived)
    assert _commit(consumer) == 111


def test_a_revoked_partition_forgets_what_it_expected(app: faust.App) -> None:
    consumer = _consumer(app, ContiguousConsumer)
    _hand_on(consumer, _message(7))
    asyncio.run(consumer.on_partitions_revoked({tp}))
    consumer._committed_offset[tp] = 50  # reassigned; another worker got as far as 50
    asyncio.run(consumer._add_gap(tp, 51, 60))
    assert [(gap.begin, gap.end) for gap in consumer._gap[tp]] == [(50, 60)]


def test_a_commit_held_behind_an_unprocessed_record_is_reported(app: faust.App) -> None:
    consumer = _consumer(app, ContiguousConsumer)
    assert isinstance(consumer, ContiguousConsumer)
    consumer._committed_offset[tp] = 100
    messages = [_message(offset) for offset in range(100, 110)]
    for message in messages:
        _hand_on(consumer, message)
    for message in messages[3:]:  # 100..102 never reached an agent
        consumer.ack(message)
    _commit(consumer)
    assert consumer.held_commits([tp]) == {tp: (100, 110)}
    for message in messages[:3]:
        consumer.ack(message)
    _commit(consumer)
    assert consumer.held_commits([tp]) == {}


def test_a_commit_held_for_a_while_is_due_to_be_read_again(app: faust.App) -> None:
    consumer = _consumer(app, ContiguousConsumer)
    assert isinstance(consumer, ContiguousConsumer)
    consumer._committed_offset[tp] = 100
    for offset in range(100, 110):
        _hand_on(consumer, _message(offset))
    consumer.ack(_message(105))
    assert consumer.due_rewinds([tp], now=0.0, after=5.0) == {}
    assert consumer.due_rewinds([tp], now=4.0, after=5.0) == {}
    assert consumer.due_rewinds([tp], now=5.0, after=5.0) == {tp: 100}
    assert consumer.due_rewinds([tp], now=6.0, after=5.0) == {}  # not again at once
    asyncio.run(consumer.on_partitions_revoked({tp}))
    assert consumer.due_rewinds([tp], now=20.0, after=5.0) == {}


def test_a_tail_read_but_never_handed_on_holds_the_commit(app: faust.App) -> None:
    # faust read 100..109 (its read offset moved) but dropped them before any agent:
    # nothing after them arrives, so no gap and no processed record shows the loss.
    consumer = _consumer(app, ContiguousConsumer)
    assert isinstance(consumer, ContiguousConsumer)
    consumer._committed_offset[tp] = 100
    consumer._read_offset[tp] = 109
    assert consumer.held_commits([tp]) == {tp: (100, 110)}
    assert consumer.due_rewinds([tp], now=0.0, after=5.0) == {}
    assert consumer.due_rewinds([tp], now=5.0, after=5.0) == {tp: 100}


def test_a_caught_up_partition_holds_nothing(app: faust.App) -> None:
    # Everything read was processed and committed; a transaction marker after the last
    # record is never read, so a highwater beyond it holds nothing either.
    consumer = _consumer(app, ContiguousConsumer)
    assert isinstance(consumer, ContiguousConsumer)
    consumer._committed_offset[tp] = 110
    consumer._read_offset[tp] = 109
    assert consumer.held_commits([tp]) == {}
    assert consumer.due_rewinds([tp], now=0.0, after=5.0) == {}
    assert consumer.due_rewinds([tp], now=60.0, after=5.0) == {}


def test_only_the_partitions_asked_about_are_held(app: faust.App) -> None:
    # The fiscalizer leaves out retries: they wait for their time on purpose.
    consumer = _consumer(app, ContiguousConsumer)
    assert isinstance(consumer, ContiguousConsumer)
    consumer._committed_offset[tp] = 100
    consumer._read_offset[tp] = 109
    assert consumer.held_commits([]) == {}
    assert consumer.due_rewinds([], now=60.0, after=5.0) == {}


def test_fetches_are_sized_as_configured(app: faust.App) -> None:
    consumer = _consumer(app, ContiguousConsumer.fetching(65536, 50))
    transport = app.transport
    assert isinstance(transport, Transport)

    async def create() -> tuple[int, int]:  # aiokafka wants a running loop
        created = consumer._thread._create_worker_consumer(transport)
        return created._fetch_min_bytes, created._fetch_max_wait_ms

    assert asyncio.run(create()) == (65536, 50)
