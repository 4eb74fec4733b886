"""The fiscalizer's faust consumer: offsets that never pass an unprocessed record, and
fetches sized like every other consumer's (KafkaSettings.fetch_min_bytes / _max_wait_ms;
faust itself asks for every fetch to be answered at the first byte).

faust commits, per partition, the end of the run of acknowledged offsets, where "gaps"
(offsets the broker skipped, such as transaction markers) count as acknowledged. Its
gap detection compares each arriving record with the last offset it read, but once
partitions are assigned it resets that to the committed offset, which lies behind
records already handed to the agents. The next record then opens a "gap" over records
that are waiting in a batch, and the record itself is inside the gap too; the next
commit jumps past them all, and a crash before they are processed loses them. (Seen
here after a restart with a backlog: a gap of 43 records right after the seek, and
invoices that no worker ever read after a second SIGKILL.)

This consumer keeps, per partition, the next offset it expects from the records it
has actually handed on, and a gap is only what lies between that and an arriving
record. A commit never starts beyond the committed offset: a run of acknowledgements
that does not begin there waits for the records before it.

faust can also drop records between its fetcher and the agents when it seeks after an
assignment (seen here: 22 and 178 records read just then never reached the agent, and
once the last 303 records of a partition, with nothing after them). Their commit then
waits for good; `due_rewinds` names such partitions so the worker reads them again
from the commit.
"""

from __future__ import annotations

from collections.abc import Collection
from collections.abc import Set as AbstractSet
from typing import Any, ClassVar

import aiokafka
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer, Transport
from faust.types import TP, Message


class _SizedFetches(AIOKafkaConsumerThread):
    consumer: ContiguousConsumer

    def _create_worker_consumer(self, transport: Transport) -> aiokafka.AIOKafkaConsumer:
        created = super()._create_worker_consumer(transport)
        # Read by the fetcher when the consumer starts, which it has not yet.
        created._fetch_min_bytes = self.consumer.fetch_min_bytes
        created._fetch_max_wait_ms = self.consumer.fetch_max_wait_ms
        return created


class ContiguousConsumer(Consumer):
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

    def held_commits(self, partitions: Collection[TP]) -> dict[TP, tuple[int, int]]:
        """Those of `partitions` whose committed offset is behind records already read:
        (committed,
        end of what was read or processed). Normal while a batch is in hand; held for a
        while, it means records read never reached an agent: a hole before processed
        ones, or the tail of the partition dropped with nothing after it to show it.
        (A transaction marker after the last record is not read, so it holds nothing.)"""
        held = {}
        for tp in partitions:
            committed = self._committed_offset.get(tp)
            if committed is None:
                continue
            acked = self._acked.get(tp)
            read = self._read_offset.get(tp)
            end = max(max(acked) + 1 if acked else 0, read + 1 if read is not None else 0)
            if end > committed:
                held[tp] = (committed, end)
        return held

    def due_rewinds(
        self, partitions: Collection[TP], now: float, after: float
    ) -> dict[TP, int]:
        """Those of `partitions` whose commit has been held at the same offset for
        `after` seconds, with that offset: reading them again from there gives the agents
        the records they missed (those already processed come again as duplicates, which
        are no-ops)."""
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
        await super().on_partitions_revoked(revoked)
