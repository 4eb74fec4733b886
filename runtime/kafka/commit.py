"""Committing what is processed, and only that: the contiguous processed prefix of each
partition, when the commit policy says so, with one answer to a commit the group refuses.

Records of one partition may finish out of order (submitted concurrently); only the
processed prefix, in the order they were read, may be committed, or a crash would skip
the records in the gap. Offsets are not contiguous numbers (transaction markers take
offsets too), so the prefix follows read order, not arithmetic.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from runtime.kafka.steps import Record

log = logging.getLogger("fiscobridge.kafka")


@dataclass(frozen=True)
class CommitPolicy:
    """When the processed prefix is committed: once `records` more records are processed
    or `seconds` have passed since the last commit, whichever comes first. A stopping or
    rebalancing consumer commits regardless (`CommitOffsets.join`)."""

    records: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.records is None and self.seconds is None:
            raise ValueError("a commit policy needs records, seconds or both")

    def due(self, processed: int, elapsed: float) -> bool:
        """`processed` records since the last commit, `elapsed` seconds since it."""
        return (self.records is not None and processed >= self.records) or (
            self.seconds is not None and elapsed >= self.seconds
        )


EVERY_BATCH = CommitPolicy(records=1)  # as soon as anything was processed


class _Partition:
    __slots__ = ("finished", "order", "safe")

    def __init__(self) -> None:
        self.order: deque[int] = deque()  # offsets in read order, not yet committable
        self.finished: set[int] = set()
        self.safe: int | None = None  # next offset to read after the processed prefix

    def advance(self) -> None:
        while self.order and self.order[0] in self.finished:
            offset = self.order.popleft()
            self.finished.discard(offset)
            self.safe = offset + 1


class ProcessedPrefix:
    """Per partition, the offset after the contiguous run of processed records."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}
        self._committed: dict[TopicPartition, int] = {}

    def read(self, tp: TopicPartition, offset: int) -> None:
        self._parts.setdefault(tp, _Partition()).order.append(offset)

    def processed(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts[tp]  # a record is read before it is processed
        part.finished.add(offset)
        part.advance()

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets to commit (the next offset to read) that moved since the last commit."""
        return {
            tp: part.safe
            for tp, part in self._parts.items()
            if part.safe is not None and part.safe != self._committed.get(tp)
        }

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)


class Committer(Protocol):
    """What commits offsets: an AIOKafkaConsumer of the group."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> object: ...


class CommitOffsets:
    """The last step of every chain: a record submitted here is processed (its effects
    are stored or acknowledged), and its offset may be committed once every record read
    before it on its partition is too. The consumer loop reports each record as `read`
    before handing it to the first step."""

    def __init__(self, consumer: Committer, policy: CommitPolicy) -> None:
        self.consumer = consumer
        self.policy = policy
        self.prefix = ProcessedPrefix()
        self._processed = 0
        self._last = time.monotonic()

    def read(self, record: Record) -> None:
        self.prefix.read(TopicPartition(record.topic, record.partition), record.offset)

    async def submit(self, record: Record) -> None:
        self.prefix.processed(TopicPartition(record.topic, record.partition), record.offset)
        self._processed += 1

    async def poll(self) -> None:
        if self.policy.due(self._processed, time.monotonic() - self._last):
            await self.commit()

    async def join(self, timeout: float | None = None) -> None:
        await self.commit()

    def close(self) -> None:
        pass

    async def commit(self) -> bool:
        """Commit the prefix that moved; False when the group refused it."""
        self._processed, self._last = 0, time.monotonic()
        offsets = self.prefix.committable()
        if not offsets:
            return True
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            refused_after_rebalance(exc)
            return False
        self.prefix.committed(offsets)
        return True


def refused_after_rebalance(error: CommitFailedError | IllegalStateError) -> None:
    """The group moved the partitions on (a rebalance, often while a stopping consumer
    drains): their new owner reads again from the last commit, and every consumer's
    effects are idempotent (outcomes looked up, events deduplicated by id), so nothing
    is done twice. Not a crash; the offsets stay uncommitted here."""
    log.warning("commit refused after a rebalance; the new owner re-reads",
                extra={"error": str(error).splitlines()[0]})
