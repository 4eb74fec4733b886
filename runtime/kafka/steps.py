"""Processing steps: what a hand-written consumer does with its records, as a chain of
small steps behind one interface.

The consumer loop (`runtime.kafka.stream.StreamConsumer`) submits each record it reads
to the first step and polls the chain after every fetch; each step hands a record to the
next once its part is done, and the last one (`runtime.kafka.commit.CommitOffsets`)
makes its offset committable. A chain lives for one assignment of partitions: when the
group takes them away, the loop closes the chain and joins it, which finishes and
commits everything in hand before the partitions go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeAlias

from aiokafka import ConsumerRecord

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class Step(Protocol):
    async def submit(self, record: Record) -> None:
        """Take a record; waits while the step is full. After `close` a record is
        dropped: it is not committed, so the partition's next owner reads it again."""

    async def poll(self) -> None:
        """Do what has come due (a lingering batch, a commit) without waiting for more."""

    def close(self) -> None:
        """No more records will be submitted."""

    async def join(self, timeout: float | None = None) -> None:
        """Finish every record submitted, hand it on, and join the next step."""


class RunConcurrently:
    """Runs `work` for up to `limit` records at once, in any order; each record goes on
    to `next` when its work has returned. `work` owns its failures (a dead letter is a
    result too): should it raise, the record is not handed on and so never committed."""

    def __init__(
        self, work: Callable[[Record], Awaitable[None]], next: Step, limit: int
    ) -> None:
        self.work = work
        self.next = next
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def submit(self, record: Record) -> None:
        await self._slots.acquire()
        if self._closed:
            self._slots.release()
            return
        task = asyncio.create_task(self._run(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, record: Record) -> None:
        try:
            await self.work(record)
            await self.next.submit(record)
        finally:
            self._slots.release()

    async def poll(self) -> None:
        await self.next.poll()

    def close(self) -> None:
        self._closed = True

    async def join(self, timeout: float | None = None) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        self.next.close()
        await self.next.join(timeout)


class Batch:
    """Collects records and runs `work` on them together, once `size` are in hand or
    `linger` seconds after the first; then hands them all on. `work` runs on one batch
    at a time, in read order."""

    def __init__(
        self,
        work: Callable[[Sequence[Record]], Awaitable[None]],
        next: Step,
        size: int,
        linger: float,
    ) -> None:
        self.work = work
        self.next = next
        self.size = size
        self.linger = linger
        self._records: list[Record] = []
        self._first = 0.0  # loop time of the first record in hand
        self._lock = asyncio.Lock()
        self._closed = False

    async def submit(self, record: Record) -> None:
        if self._closed:
            return
        if not self._records:
            self._first = asyncio.get_running_loop().time()
        self._records.append(record)
        if len(self._records) >= self.size:
            await self._flush()

    async def poll(self) -> None:
        waited = asyncio.get_running_loop().time() - self._first
        if self._records and waited >= self.linger:
            await self._flush()
        else:
            await self.next.poll()

    def close(self) -> None:
        self._closed = True

    async def join(self, timeout: float | None = None) -> None:
        await self._flush()
        self.next.close()
        await self.next.join(timeout)

    async def _flush(self) -> None:
        async with self._lock:
            records, self._records = self._records, []
            if records:
                await self.work(records)
                for record in records:
                    await self.next.submit(record)
            await self.next.poll()

