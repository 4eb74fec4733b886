"""Which offsets may be committed when records finish out of order.

Records of one partition are submitted concurrently and finish in any order; only
the completed prefix (in the order they were read) may be committed, or a crash
would skip the gap. Offsets are not contiguous numbers (transaction markers take
offsets too), so the prefix follows read order, not arithmetic.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from aiokafka import TopicPartition


class _Partition:
    __slots__ = ("finished", "order", "safe")

    def __init__(self) -> None:
        self.order: deque[int] = deque()  # offsets in read order, not yet committable
        self.finished: set[int] = set()
        self.safe: int | None = None  # next offset to read after the completed prefix

    def advance(self) -> None:
        while self.order and self.order[0] in self.finished:
            offset = self.order.popleft()
            self.finished.discard(offset)
            self.safe = offset + 1


class OffsetTracker:
    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self._parts.setdefault(tp, _Partition()).order.append(offset)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.get(tp)
        if part is None:  # partition revoked meanwhile; its new owner redoes the record
            return
        part.finished.add(offset)
        part.advance()

    def in_flight(self, tps: Iterable[TopicPartition] | None = None) -> int:
        keys = list(self._parts) if tps is None else [tp for tp in tps if tp in self._parts]
        return sum(len(self._parts[tp].order) for tp in keys)

    def committable(self) -> dict[TopicPartition, int]:
        """Offsets to commit (the next offset to read) that moved since the last commit."""
        return {
            tp: part.safe
            for tp, part in self._parts.items()
            if part.safe is not None and part.safe != self._committed.get(tp)
        }

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._parts.pop(tp, None)
            self._committed.pop(tp, None)
