"""The consumer loop under every hand-written consumer: fetch, submit to the chain of
steps, poll it; one chain per assignment of partitions.

When the group assigns partitions, `factory` builds the chain for them (and may prepare,
say by reading what was already done since the last commit); records fetched meanwhile
wait until it is built. When the group takes partitions away, and when the loop stops,
the chain is closed and joined: what is in hand is finished and committed before the
partitions go. A loop that fails (its work raised, the database is down) stops without
committing, so the records in hand are read again; so does one whose factory fails for
any reason but the broker's (then it prepares again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from runtime.kafka.commit import CommitOffsets, CommitPolicy
from runtime.kafka.steps import Record, Step

log = logging.getLogger("fiscobridge.kafka")

StepFactory = Callable[[frozenset[TopicPartition], CommitOffsets], Awaitable[Step]]


@dataclass(frozen=True)
class _Chain:
    partitions: frozenset[TopicPartition]
    first: Step
    commit: CommitOffsets


class StreamConsumer:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        factory: StepFactory,
        policy: CommitPolicy,
        *,
        poll_seconds: float = 0.1,
        max_records: int | None = None,
    ) -> None:
        """`consumer` is a group consumer that commits only when told to
        (`runtime.kafka.clients.consumer`), not yet started; `factory` builds the chain
        for an assignment, ending in the CommitOffsets it is given."""
        self.consumer = consumer
        self.factory = factory
        self.policy = policy
        self.poll_seconds = poll_seconds
        self.max_records = max_records
        self._chain: _Chain | None = None
        self._ready = asyncio.Event()
        self._failed: BaseException | None = None
        self._stopping = asyncio.Event()

    def subscribe(self, topics: Sequence[str]) -> None:
        self.consumer.subscribe(list(topics), listener=_Listener(self))

    @property
    def partitions(self) -> frozenset[TopicPartition]:
        chain = self._chain
        return chain.partitions if chain is not None else frozenset()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then finish and commit what is in hand."""
        self._stopping = stop
        timeout_ms = int(self.poll_seconds * 1000)
        while not stop.is_set():
            self._raise_failure()
            batch = await self.consumer.getmany(timeout_ms=timeout_ms,
                                                max_records=self.max_records)
            if batch:
                # Records of an assignment whose chain is still being built wait for it.
                while not self._ready.is_set() and not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._ready.wait(), self.poll_seconds)
                self._raise_failure()
            chain = self._chain
            if chain is None:
                continue
            await self._submit(chain, batch)
            if self._chain is chain:
                await chain.first.poll()
        chain, self._chain = self._chain, None
        if chain is not None:
            await _finish(chain)

    async def _submit(
        self, chain: _Chain, batch: dict[TopicPartition, list[Record]]
    ) -> None:
        for tp, records in batch.items():
            if tp not in chain.partitions:
                continue  # fetched before a rebalance took it away: its owner reads it
            for record in records:
                chain.commit.read(record)
                await chain.first.submit(record)
                if self._chain is not chain:
                    return  # revoked meanwhile; the rest is read again from the commit

    def _raise_failure(self) -> None:
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    async def _assigned(self, partitions: Collection[TopicPartition]) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            try:
                commit = CommitOffsets(self.consumer, self.policy)
                first = await self.factory(frozenset(partitions), commit)
                self._chain = _Chain(frozenset(partitions), first, commit)
                break
            except KafkaError as exc:  # the broker is away or moving: prepare again
                log.warning("preparing assigned partitions failed; trying again",
                            extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception as exc:  # aiokafka would only log it; the loop raises it
                self._failed = exc
                break
        self._ready.set()

    async def _revoked(self) -> None:
        self._ready.clear()
        chain, self._chain = self._chain, None
        if chain is not None:
            try:
                await _finish(chain)
            except Exception:
                # Nothing unfinished was committed: the partitions' next owner (this
                # consumer too, from a new assignment) reads it again from the commit.
                log.exception("finishing the records of revoked partitions failed")


async def _finish(chain: _Chain) -> None:
    chain.first.close()
    await chain.first.join()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, stream: StreamConsumer) -> None:
        self.stream = stream

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # aiokafka's assignors are eager: every partition is revoked at a rebalance.
        await self.stream._revoked()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.stream._assigned(assigned)
