"""runtime.faust_adapter: the consumer that commits only offsets whose records were all
processed, the stall watch, and the faust particulars behind FaustWorker.

The `test_stock_faust_*` tests assert the faust behaviour a workaround exists for: when
one fails, faust has changed there, and the workaround can go (or must change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import faust
import pytest
from faust.transport.drivers.aiokafka import Consumer, Transport
from faust.types import TP, Message

from runtime.faust_adapter import ContiguousConsumer, FaustWorker, StallWatch, WatchPolicy

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
    # Why ContiguousConsumer._add_gap exists: after the assignment's seek, stock faust
    # takes records 210..252, handed to the agent and unprocessed, for a gap.
    consumer = _consumer(app, Consumer)
    _after_late_seek(consumer)
    assert [(gap.begin, gap.end) for gap in consumer._gap[tp]] == [(210, 253)]


def test_stock_faust_commits_past_records_handed_on_but_unprocessed(app: faust.App) -> None:
    # What that gap costs: with 209 and 211 processed, stock faust commits past 210,
    # still in the agent's batch (a crash now loses it); ContiguousConsumer stops there.
    for cls, expected in ((Consumer, 212), (ContiguousConsumer, 210)):
        consumer = _consumer(app, cls)
        handed = _after_late_seek(consumer)
        consumer.ack(handed[0])
        consumer.ack(handed[2])
        assert _commit(consumer) == expected, cls


def test_stock_faust_commits_a_run_that_does_not_start_at_the_committed_offset(
    app: faust.App,
) -> None:
    # Why ContiguousConsumer._new_offset exists: 101..104 processed, 100 not yet.
    consumer = _consumer(app, Consumer)
    consumer._committed_offset[tp] = 100
    messages = [_message(offset) for offset in range(100, 105)]
    for message in messages:
        _hand_on(consumer, message)
    for message in messages[1:]:
        consumer.ack(message)
    assert _commit(consumer) == 105


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
    assert _commit(consumer) is None  # stock faust commits 105, skipping 100
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


def _seek_nowhere(consumer: Consumer, monkeypatch: pytest.MonkeyPatch) -> None:
    """faust's bookkeeping of a seek, without a broker to seek on."""
    async def seek(partition: TP, offset: int) -> None:
        return None

    async def committed() -> dict[TP, int]:
        return {tp: 100}

    monkeypatch.setattr(consumer, "_seek", seek)
    monkeypatch.setattr(consumer, "seek_to_committed", committed)


def test_stock_faust_sets_the_read_offset_to_the_offset_to_read_next_on_a_seek(
    app: faust.App, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Why held_commits tells a seek's read offset from a record's: elsewhere faust's
    # read offset is the last offset read.
    consumer = _consumer(app, Consumer)
    _seek_nowhere(consumer, monkeypatch)
    asyncio.run(consumer.perform_seek())
    assert (consumer._committed_offset[tp], consumer._read_offset[tp]) == (100, 100)
    asyncio.run(consumer.seek(tp, 90))
    assert consumer._read_offset[tp] == 90


def test_an_idle_partition_after_its_assignment_holds_nothing(
    app: faust.App, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Committed at 100, nothing after it: read again every few seconds, such a partition
    # ended as a stall exit some 20 s after every start.
    consumer = _consumer(app, ContiguousConsumer)
    assert isinstance(consumer, ContiguousConsumer)
    _seek_nowhere(consumer, monkeypatch)
    asyncio.run(consumer.perform_seek())
    assert consumer.held_commits([tp]) == {}
    assert consumer.due_rewinds([tp], now=0.0, after=5.0) == {}
    assert consumer.due_rewinds([tp], now=60.0, after=5.0) == {}
    assert consumer.read_offset(tp) == 99  # none read yet: 100 is the next
    # Its next record, handed on and not yet processed, holds the commit as ever.
    _hand_on(consumer, _message(100))
    consumer._read_offset[tp] = 100  # what the fetch loop does once it is handed on
    assert consumer.read_offset(tp) == 100
    assert consumer.held_commits([tp]) == {tp: (100, 101)}


def test_a_rewound_partition_stays_held_until_the_records_are_processed(
    app: faust.App, monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = _consumer(app, ContiguousConsumer)
    assert isinstance(consumer, ContiguousConsumer)
    _seek_nowhere(consumer, monkeypatch)
    asyncio.run(consumer.perform_seek())
    for offset in range(100, 105):  # handed on, then lost before any agent
        _hand_on(consumer, _message(offset))
    assert consumer.due_rewinds([tp], now=0.0, after=5.0) == {}
    assert consumer.due_rewinds([tp], now=5.0, after=5.0) == {tp: 100}
    asyncio.run(consumer.seek(tp, 100))  # the rewind: nothing read again yet
    assert consumer.held_commits([tp]) == {tp: (100, 105)}
    for offset in range(100, 105):
        _hand_on(consumer, _message(offset))
        consumer.ack(_message(offset))
    _commit(consumer)
    assert consumer.held_commits([tp]) == {}


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


def test_the_worker_installs_the_consumer_before_the_app_builds_one(app: faust.App) -> None:
    policy = WatchPolicy("offsets-test", frozenset({TOPIC}), rewind_after=timedelta(seconds=5),
                         stall=timedelta(seconds=60))
    worker = FaustWorker(app, policy, fetch_min_bytes=65536, fetch_max_wait_ms=50)
    worker.hold_streams_at(800)
    assert isinstance(worker.consumer, ContiguousConsumer)
    assert (worker.consumer.fetch_min_bytes, worker.consumer.fetch_max_wait_ms) == (65536, 50)
    assert app.producer.buffer.max_messages == 800
    assert worker.consumer.read_offset(tp) is None


def test_a_table_write_goes_to_the_changelog_partition_of_its_event(app: faust.App) -> None:
    table = app.Table("adapter-test", default=None, partitions=8)
    event = _Event(partition=5)
    partitions: list[int | None] = []
    # Where faust's Table.on_key_set takes the changelog partition from.
    table.on_key_set = lambda key, value: partitions.append(  # type: ignore[method-assign]
        table.partition_for_key(key)
    )
    FaustWorker.write(event, table, "k", "v")  # type: ignore[arg-type]
    assert partitions == [5]
    assert table["k"] == "v"


class _Event:
    """Stands for the faust Event being processed: a table write reads its message."""

    def __init__(self, partition: int) -> None:
        self.message = Message(TOPIC, partition, 0, 0.0, 0, [], b"k", b"v", None,
                               tp=TP(TOPIC, partition))


# -- the stall watch ----------------------------------------------------------------


def test_waiting_records_without_progress_are_a_stall_after_the_limit() -> None:
    watch = StallWatch(limit=30)
    assert not watch.stalled({"p0": (9, 20)}, now=0)
    assert watch.stalled_for({"p0": (9, 20)}, now=20) == 20
    assert not watch.stalled({"p0": (9, 25)}, now=29)
    assert watch.stalled({"p0": (9, 25)}, now=30)


def test_progress_or_an_empty_partition_resets_the_clock() -> None:
    watch = StallWatch(limit=30)
    watch.stalled_for({"p0": (9, 20), "p1": (4, 5)}, now=0)
    # p0 read on; p1 has caught up (offset 4 read, highwater 5: nothing waits).
    assert watch.stalled_for({"p0": (12, 20), "p1": (4, 5)}, now=25) == 0
    assert watch.stalled_for({"p0": (12, 20), "p1": (4, 5)}, now=50) == 25
    assert not watch.stalled({"p0": (19, 20), "p1": (4, 5)}, now=100)


def test_a_partition_never_read_since_start_counts_from_offset_zero() -> None:
    watch = StallWatch(limit=10)
    assert not watch.stalled({"p0": (None, 0)}, now=0)  # empty partition
    watch.stalled_for({"p0": (None, 3)}, now=0)
    assert watch.stalled({"p0": (None, 3)}, now=10)
    assert watch.stalled_for({}, now=11) == 0  # revoked: forgotten


def test_the_fiscalizer_uses_no_private_name_of_faust() -> None:
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "services" / "fiscalizer"
    private = []
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("faust"):
                deep = node.module not in ("faust", "faust.types")
                private += [f"{path.name}: {node.module}.{alias.name}" for alias in node.names
                            if deep or alias.name.startswith("_")]
            elif isinstance(node, ast.Import):
                private += [f"{path.name}: {alias.name}" for alias in node.names
                            if alias.name.startswith("faust.")]
    assert private == []


def test_a_stalled_worker_flushes_its_pending_writes_before_it_exits(
    app: faust.App, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Table writes of outputs already acked wait in the producer; exiting without
    sending them would make the next delivery of those invoices sign them again."""
    policy = WatchPolicy("offsets-test", frozenset({TOPIC}), rewind_after=timedelta(seconds=5),
                         stall=timedelta(seconds=60))
    worker = FaustWorker(app, policy, fetch_min_bytes=1, fetch_max_wait_ms=50)
    flushed: list[str] = []

    async def flush() -> None:
        flushed.append("flushed")

    monkeypatch.setattr(app.producer, "flush", flush)
    assert asyncio.run(worker.flush_before_exit()) and flushed == ["flushed"]

    async def never() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(app.producer, "flush", never)
    assert not asyncio.run(worker.flush_before_exit(timeout=0.05))
