"""Everything a faust worker needs from faust beyond its public API, in one place.

faust-streaming 0.15 has three defects a worker that must never lose a record works
around here, each pinned by a test in tests/unit/test_faust_adapter.py that fails once
faust mends it (then the workaround can go):

1. Gap handling. faust commits, per partition, the end of the run of acknowledged
   offsets, where "gaps" (offsets the broker skipped, such as transaction markers) count
   as acknowledged. It detects a gap by comparing each arriving record with the last
   offset it read, but after an assignment it resets that to the committed offset,
   which may lie behind records already handed to the agents: the next record then
   opens a "gap" over records waiting in a batch (itself included), and a commit jumps
   past them. `ContiguousConsumer` keeps, per partition, the next offset after the
   records it actually handed on; a gap is only what lies between that and an arriving
   record, and a commit never starts beyond the committed offset.
2. Records dropped between the fetcher and the agents when faust seeks after an
   assignment, tail of a partition included. Their commit waits for good;
   `FaustWorker.watch` reads such partitions again from the commit once it has been
   held `rewind_after`.
3. A worker that stops handing records to its agents with no error (faust-streaming
   #175, #640). `FaustWorker.watch` exits the process with STALL_EXIT_CODE once records
   have waited `StallWatch.limit` seconds with none read, or a commit has been held that
   long, for its supervisor to start it again (offsets follow outputs: nothing is lost).

And three particulars: faust asks the broker to answer every fetch at the first byte
(`fetching` sizes them like every other consumer's), a table write takes its
changelog partition from the event being iterated (`FaustWorker.write`), and after a
seek faust's "last offset read" is the offset to read next (`read_offset`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Collection, Hashable, Mapping, MutableMapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, NoReturn

import aiokafka
import faust
from faust.streams import _current_event
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP, EventT, Message

from runtime.metrics import CONSUMER_LAG

log = logging.getLogger("fiscobridge.faust")

STALL_EXIT_CODE = 70  # EX_SOFTWARE: the worker's supervisor starts it again
FLUSH_BEFORE_EXIT_SECONDS = 10.0


class _SizedFetches(AIOKafkaConsumerThread):
    consumer: ContiguousConsumer

    def _create_worker_consumer(self, transport: Transport) -> aiokafka.AIOKafkaConsumer:
        created = super()._create_worker_consumer(transport)
        # Read by the fetcher when the consumer starts, which it has not yet.
        created._fetch_min_bytes = self.consumer.fetch_min_bytes
        created._fetch_max_wait_ms = self.consumer.fetch_max_wait_ms
        return created


class ContiguousConsumer(Consumer):
    """faust's aiokafka consumer, committing only over records that were processed."""

    fetch_min_bytes: ClassVar[int] = 1
    fetch_max_wait_ms: ClassVar[int] = 1500

    @classmethod
    def fetching(cls, min_bytes: int, max_wait_ms: int) -> type[ContiguousConsumer]:
        """This consumer with its fetches answered at `min_bytes` or after `max_wait_ms`."""
        return type(cls.__name__, (cls,), {
            "fetch_min_bytes": min_bytes, "fetch_max_wait_ms": max_wait_ms,
        })

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _SizedFetches(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._expected: dict[TP, int] = {}  # next offset after the last record handed on
        self._held_since: dict[TP, tuple[int, float]] = {}  # held commit, since when
        self._sought: dict[TP, int] = {}  # the offset of the last seek, to read next
        hand_on = self.callback

        # The fetch loop hands every record to this callback (after its gap check).
        async def handing_on(message: Message) -> None:
            self.handed_on(message)
            await hand_on(message)

        self.callback = handing_on

    def handed_on(self, message: Message) -> None:
        following = message.offset + 1
        if following > self._expected.get(message.tp, -1):
            self._expected[message.tp] = following
        if message.offset >= self._sought.get(message.tp, following):
            del self._sought[message.tp]  # faust's read offset is a record's again

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # faust passes (its read offset + 1, the offset of the record now arriving).
        committed = self._committed_offset[tp]
        start = self._expected.get(tp, offset_from if committed is None else committed)
        if committed is not None:
            start = max(start, committed)
        if start < offset_to:
            gaps = self._gap[tp]
            gaps.addi(start, offset_to)  # the end is excluded: the arriving record is no gap
            gaps.merge_overlaps()

    def _new_offset(self, tp: TP) -> int | None:
        committed = self._committed_offset[tp]
        acked = self._acked[tp]
        if acked and committed is not None:
            head = min([*acked, *(gap.begin for gap in self._gap[tp])])
            if head > committed:
                return None  # the record at the committed offset is not processed yet
        offset: int | None = super()._new_offset(tp)
        return offset

    def read_offset(self, tp: TP) -> int | None:
        """The last offset faust read from `tp` (None: none since the assignment).

        faust's own is that, except after a seek (each assignment's, or a rewind) and
        until a record is read: then it is the offset to read next."""
        read: int | None = self._read_offset.get(tp)
        if read is not None and self._sought.get(tp) == read:
            return read - 1 if read > 0 else None
        return read

    def held_commits(self, partitions: Collection[TP]) -> dict[TP, tuple[int, int]]:
        """Those of `partitions` whose committed offset is behind records already read:
        (committed, end of what was read, handed on or processed). Normal while a batch is
        in hand; held for a while, it means records handed on never reached an agent: a
        hole before processed ones, or the tail of the partition dropped with nothing
        after it to show it. (A transaction marker after the last record is not read, so
        it holds nothing.)

        (`read_offset`, not faust's: after a seek faust's is the offset to read next, and
        taken for the last one read, an idle partition looked one record ahead of its
        commit for good, was read again every few seconds, and ended as a stall.)"""
        held = {}
        for tp in partitions:
            committed = self._committed_offset.get(tp)
            if committed is None:
                continue
            acked = self._acked.get(tp)
            read = self.read_offset(tp)
            end = max(max(acked) + 1 if acked else 0, self._expected.get(tp, 0),
                      read + 1 if read is not None else 0)
            if end > committed:
                held[tp] = (committed, end)
        return held

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._sought[partition] = offset

    async def perform_seek(self) -> None:
        await super().perform_seek()
        self._sought = {tp: offset for tp, offset in self._read_offset.items()
                        if offset is not None}

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        await super().seek_wait(partitions)
        self._sought.update(partitions)

    def due_rewinds(
        self, partitions: Collection[TP], now: float, after: float
    ) -> dict[TP, int]:
        """Those of `partitions` whose commit has been held at the same offset for
        `after` seconds, with that offset: reading them again from there gives the agents
        the records they missed (those already processed come again as duplicates, which
        must be no-ops)."""
        held = self.held_commits(partitions)
        for tp in set(self._held_since) - set(held):
            del self._held_since[tp]
        due = {}
        for tp, (committed, _) in held.items():
            seen = self._held_since.get(tp)
            if seen is None or seen[0] != committed:
                self._held_since[tp] = (committed, now)
            elif now - seen[1] >= after:
                due[tp] = committed
                self._held_since[tp] = (committed, now)
        return due

    async def on_partitions_revoked(self, revoked: AbstractSet[TP]) -> None:
        for tp in revoked:
            self._expected.pop(tp, None)
            self._held_since.pop(tp, None)
            self._sought.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class StallWatch:
    """How long partitions have had records waiting without progress."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._since: dict[Hashable, tuple[int | None, float]] = {}  # read offset, when

    def stalled_for(
        self, positions: Mapping[Hashable, tuple[int | None, int | None]], now: float
    ) -> float:
        """Seconds the longest-waiting partition has gone without progress.

        `positions` maps each watched partition to (last offset read or None, highwater
        or None); a partition is waiting when its highwater is past what was read.
        """
        longest = 0.0
        for tp, (read, high) in positions.items():
            waiting = high is not None and high > (read + 1 if read is not None else 0)
            if not waiting:
                self._since.pop(tp, None)
                continue
            seen = self._since.get(tp)
            if seen is None or seen[0] != read:
                self._since[tp] = (read, now)
                continue
            longest = max(longest, now - seen[1])
        for tp in set(self._since) - set(positions):
            del self._since[tp]
        return longest

    def stalled(
        self, positions: Mapping[Hashable, tuple[int | None, int | None]], now: float
    ) -> bool:
        return self.stalled_for(positions, now) >= self.limit


@dataclass(frozen=True)
class WatchPolicy:
    """What `FaustWorker.watch` holds a worker to."""

    group: str  # the consumer group, as the lag gauge's label
    watched_topics: frozenset[str]  # inputs processed as they come (not waiting on purpose)
    rewind_after: timedelta  # how long a commit may stand behind missing records
    stall: timedelta  # how long without progress before the worker exits


@dataclass(frozen=True)
class _OriginMessage:
    partition: int
    topic: str


@dataclass(frozen=True)
class _Origin:
    """What faust reads of "the current event" to write a table key: its message's
    partition (the changelog partition, and the RocksDB the key lives in) and topic."""

    message: _OriginMessage


class FaustWorker:
    """A faust app's worker, with the workarounds above installed.

    Build it right after the app and before anything starts the consumer.
    """

    def __init__(
        self, app: faust.App, policy: WatchPolicy, *, fetch_min_bytes: int,
        fetch_max_wait_ms: int,
    ) -> None:
        self.app = app
        self.policy = policy
        self.stall = StallWatch(policy.stall.total_seconds())
        app.transport.Consumer = ContiguousConsumer.fetching(  # type: ignore[misc]
            fetch_min_bytes, fetch_max_wait_ms
        )

    def hold_streams_at(self, pending_writes: int) -> None:
        """faust holds its streams back while more than `pending_writes` messages (table
        writes included) wait to be produced."""
        self.app.producer.buffer.max_messages = pending_writes

    @staticmethod
    def write(event: EventT, table: MutableMapping[str, Any], key: str, value: Any) -> None:
        """`table[key] = value` from outside the agent's iteration: the write goes to the
        changelog partition of `event`, the event it stands for."""
        _current_event.set(weakref.ref(event))
        table[key] = value

    @staticmethod
    def delete(table: MutableMapping[str, Any], key: str, partition: int,
               source_topic: str) -> None:
        """`del table[key]` outside any event (a periodic sweep): the tombstone goes to
        changelog partition `partition` (and a RocksDB store deletes the key there);
        `source_topic` is one of the table's input topics."""
        origin = _Origin(_OriginMessage(partition, source_topic))
        token = _current_event.set(weakref.ref(origin))  # type: ignore[arg-type]
        try:
            del table[key]
        finally:
            _current_event.reset(token)

    @staticmethod
    async def write_durably(writes: Sequence[tuple[EventT, Any, str, Any]]) -> None:
        """Write `(event, table, key, value)` to the table and its changelog (the
        partition of `event`), in order, and wait until the broker acked them all.

        The value goes into the table's store as well as the changelog: a RocksDB store
        records the changelog offsets it holds, and recovers only what follows them, so
        a changelog write that is not in the store would be skipped after a restart."""
        sent = []
        for event, table, key, value in writes:
            _current_event.set(weakref.ref(event))
            table.data[key] = value  # the store alone: no second changelog write
            sent.append(table.send_changelog(event.message.partition, key, value))
        if sent:
            await asyncio.gather(*sent)

    @property
    def consumer(self) -> ContiguousConsumer:
        consumer = self.app.consumer
        assert isinstance(consumer, ContiguousConsumer), "FaustWorker was built too late"
        return consumer

    async def watch(self) -> None:
        """Once per timer tick: export consumer lag, read again partitions whose commit is
        held behind records no agent got, and exit when a watched partition has stalled."""
        consumer, policy = self.consumer, self.policy
        assigned = list(consumer.assignment())
        # From the broker, not faust's fetch state: a stalled fetcher would hide lag.
        ends = await consumer.highwaters(*assigned) if assigned else {}
        watched: dict[Hashable, tuple[int | None, int | None]] = {}
        for tp in assigned:
            high = ends.get(tp)
            read = consumer.read_offset(tp)
            if high is not None:
                CONSUMER_LAG.labels(policy.group, tp.topic, str(tp.partition)).set(
                    max(0, high - (read + 1 if read is not None else 0))
                )
            if tp.topic in policy.watched_topics:
                watched[tp] = (read, high)
        inputs = [tp for tp in assigned if tp.topic in policy.watched_topics]
        for tp, offset in consumer.due_rewinds(inputs, time.monotonic(),
                                               policy.rewind_after.total_seconds()).items():
            log.warning(
                "commit held behind records no agent got; reading again from there",
                extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
            )
            await consumer.seek(tp, offset)
        # Should reading again not cure it, the commit held is a stall too.
        for tp, (committed, done) in consumer.held_commits(inputs).items():
            watched[("commit", tp)] = (committed - 1, done)
        if self.stall.stalled(watched, time.monotonic()):
            await self.flush_before_exit()
            _exit_stalled(self.stall.limit)

    async def flush_before_exit(self, timeout: float = FLUSH_BEFORE_EXIT_SECONDS) -> bool:
        """Send what the producer holds (table writes of outputs already acked) before the
        process exits: a write lost with it would make the next delivery of that invoice
        sign it again. False if the broker did not take it all within `timeout`."""
        try:
            await asyncio.wait_for(self.app.producer.flush(), timeout)
        except Exception as error:  # exiting anyway; the restart reads from the commit
            log.warning("pending writes not flushed before the exit",
                        extra={"error": repr(error)})
            return False
        return True


def _exit_stalled(limit: float) -> NoReturn:
    log.error(
        "stalled: records have waited %.0f s with none read, or a commit has been held "
        "that long behind a record no agent got; exiting to be restarted (nothing is "
        "lost: offsets follow outputs)",
        limit, extra={"exit_code": STALL_EXIT_CODE},
    )
    logging.shutdown()
    os._exit(STALL_EXIT_CODE)
