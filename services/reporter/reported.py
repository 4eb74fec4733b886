"""Which signed messages, and which invoices, already have a published outcome.

The reporter commits offsets a little after it publishes outcomes, so after a crash
or rebalance it re-reads a few signed messages whose outcome is already on
`invoices.status`. Submitting them again would report an invoice twice, so on
assignment it reads the status partition from the time of the first uncommitted
signed message on, and skips every message id found there. Both topics are keyed
by integration uid with the same partition count, so partition p of one holds the
outcomes of partition p of the other.

Fiscalized invoices are remembered too: a fiscalizer that crashed may sign an invoice
a second time (a new message id), and a fiscalized invoice must never be sent again.
Both messages may be in hand at once, so an invoice is submitted by one of them at a
time (`Turns`): the second asks only once the first's outcome is remembered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.events import InvoiceState, InvoiceStatus

# Clock skew between producers and the broker's log-append time.
MARGIN = timedelta(minutes=1)
# Outcomes the reporter publishes; the fiscalizer's statuses never carry a message id
# of a submission, but filter anyway so a future change there cannot hide a submission.
OUTCOMES = frozenset(
    {InvoiceState.FISCALIZED, InvoiceState.REJECTED, InvoiceState.RETRYING, InvoiceState.FAILED}
)


class Recent:
    """The most recent `capacity` keys: a set that forgets its oldest members."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)


class Turns:
    """One holder per key at a time; the others wait in arrival order."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, holders and waiters

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        lock, users = self._held.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._held[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[key]
            if users == 1:
                del self._held[key]
            else:
                self._held[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._held)


def invoice_key(integration_uid: str, source_id: str) -> str:
    return f"invoice:{integration_uid}:{source_id}"


async def published_outcomes(
    lookup: AIOKafkaConsumer,
    signed: Iterable[TopicPartition],
    committed: dict[TopicPartition, int | None],
    status_topic: str,
) -> dict[TopicPartition, Recent]:
    """For each signed partition, the message ids with an outcome since its committed
    offset, and the invoices fiscalized since then.

    `lookup` is a started consumer without a group, used only for these reads.
    """
    out: dict[TopicPartition, Recent] = {}
    for tp in signed:
        out[tp] = Recent()
        start = committed.get(tp)
        if start is None:
            start = (await lookup.beginning_offsets([tp]))[tp]
        end = (await lookup.end_offsets([tp]))[tp]
        if start >= end:
            continue
        lookup.assign([tp])
        lookup.seek(tp, start)
        first = await lookup.getone(tp)
        status_tp = TopicPartition(status_topic, tp.partition)
        found = await lookup.offsets_for_times(
            {status_tp: max(0, first.timestamp - int(MARGIN.total_seconds() * 1000))}
        )
        begin = found.get(status_tp)
        if begin is None:
            continue
        stop = (await lookup.end_offsets([status_tp]))[status_tp]
        lookup.assign([status_tp])
        lookup.seek(status_tp, begin.offset)
        idle = 0
        while (await lookup.position(status_tp)) < stop and idle < 3:
            batch = await lookup.getmany(status_tp, timeout_ms=1000)
            idle = 0 if batch else idle + 1
            for record in batch.get(status_tp, []):
                if record.offset >= stop:
                    break
                try:
                    status = InvoiceStatus.from_json(record.value)
                except ValueError:
                    continue
                if status.message_id and status.state in OUTCOMES:
                    out[tp].add(status.message_id)
                if status.state is InvoiceState.FISCALIZED:
                    out[tp].add(invoice_key(status.integration_uid, status.invoice.source_id))
    lookup.assign([])
    return out
