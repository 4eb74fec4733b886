"""The projector: keeps the store's integration status, fiscal journal and license usage
current from `invoices.status` and `integrations.events`, each invoice's write-back
outcome from `invoices.writeback`, and each invoice's first receipt (its history's
"received" step) from `invoices.received`.

Each batch of records is applied in one database transaction, and offsets are committed
only after it commits; a crash in between re-delivers records the projection already
holds, which it recognises by event id. So the projector can be killed at any point and
started again. A record that is not a valid event, or that the database refuses as data
(not as an outage), goes to `<topic>.dlq` with the reason, and the rest of its batch is
applied without it. `invoices.received` is the exception: the fiscalizer owns that topic
and parks what it cannot read, so the projector, reading it only for history, skips such
a record (logged and counted) rather than park a second letter that a redrive would
send back to the fiscalizer twice.

Publishing a change and applying it at once (`publish_and_apply`) and rebuilding the
projection from the topics (`rebuild`) belong to the store: runtime/store/rebuild.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence

import prometheus_client
from aiokafka import ConsumerRecord, TopicPartition
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from runtime.kafka import clients
from runtime.kafka.commit import EVERY_BATCH, CommitOffsets
from runtime.kafka.dlq import DeadLetters
from runtime.kafka.steps import Batch, Step
from runtime.kafka.stream import StreamConsumer
from runtime.metrics import INTEGRATION_INVOICES
from runtime.settings import KafkaSettings
from runtime.store import Store
from runtime.store.rebuild import Topics, decode
from schemas.events import (
    Event,
    IntegrationEvent,
    InvoiceReceived,
    InvoiceStatus,
    WriteBackStatus,
)
from schemas.topics import INVOICES_RECEIVED, INVOICES_WRITEBACK, Topic

log = logging.getLogger(__name__)

GROUP_ID = "fiscobridge-projector"

EVENTS = prometheus_client.Counter(
    "fiscobridge_projector_events_total", "Events applied to the projection", ["outcome"]
)
DEAD_LETTERS = prometheus_client.Counter(
    "fiscobridge_projector_dead_letters_total", "Records sent to a dead-letter topic"
)
SKIPPED = prometheus_client.Counter(
    "fiscobridge_projector_skipped_total",
    "Records of a topic another service owns (and parks) that the projection cannot use",
    ["topic"],
)
BATCH_SECONDS = prometheus_client.Histogram(
    "fiscobridge_projector_batch_seconds", "Time to apply one batch and commit its offsets"
)



def refused_as_data(error: BaseException) -> bool:
    """The database refused the record itself (too long, a constraint): dead-letter it.

    Anything else (database down, disk full) stops the projector instead, so an outage
    never empties the topic into the DLQ. asyncpg reports data errors with SQLSTATE
    class 22 (data exception) or 23 (integrity) rather than as DataError.
    """
    if isinstance(error, DataError | IntegrityError | ValueError | TypeError):
        return True
    sqlstate = str(getattr(getattr(error, "orig", None), "sqlstate", None) or "")
    return isinstance(error, DBAPIError) and sqlstate[:2] in ("22", "23")


class Projector:
    def __init__(
        self,
        store: Store,
        kafka: KafkaSettings,
        *,
        topics: Topics | None = None,
        group_id: str = GROUP_ID,
        batch_size: int = 500,
        linger: float = 0.2,
        writeback_topic: str | None = None,
        received_topic: str | None = None,
    ) -> None:
        self.store = store
        self.kafka = kafka
        # The write-back stage's outcomes (invoices.writeback) are kept per invoice for
        # the portal; read by default with the default topics, else when named.
        self.writeback_topic = writeback_topic or (
            INVOICES_WRITEBACK.name if topics is None else None)
        # Deliveries (invoices.received) give each invoice's "received" history step;
        # read by default with the default topics, else when named.
        self.received_topic = received_topic or (
            INVOICES_RECEIVED.name if topics is None else None)
        self.topics = topics or Topics()
        self.group_id = group_id
        self.batch_size = batch_size
        self.linger = linger
        self.dead_letters = DeadLetters([])
        self.ready = False

    async def run(self, stop: asyncio.Event) -> None:
        consumer = clients.consumer(self.kafka, group_id=self.group_id)
        producer = clients.producer(self.kafka)
        self.dead_letters = DeadLetters(
            [Topic(self.topics.status, InvoiceStatus), Topic(self.topics.events, IntegrationEvent),
             *([Topic(self.writeback_topic, WriteBackStatus)] if self.writeback_topic else [])],
            producer,
        )
        # Fetches return at least every quarter linger, so a batch waits about `linger`.
        poll = min(0.5, self.linger / 4) if self.linger > 0 else 0.5
        stream = StreamConsumer(consumer, self._steps, EVERY_BATCH, poll_seconds=poll,
                                max_records=self.batch_size)
        stream.subscribe([*self.topics.names,
                          *([self.writeback_topic] if self.writeback_topic else []),
                          *([self.received_topic] if self.received_topic else [])])
        await consumer.start()
        try:
            await producer.start()
            try:
                self.ready = True
                await stream.run(stop)
            finally:
                self.ready = False
                await producer.stop()
        finally:
            await consumer.stop()

    async def _steps(self, partitions: frozenset[TopicPartition], commit: CommitOffsets) -> Step:
        # A batch's fixed cost (one transaction, one offset commit) outweighs its cost per
        # event, and the fetcher hands over a few records at a time: a batch waits up to
        # `linger` for more, so the portal may show a status that much later.
        return Batch(self._apply, commit, self.batch_size, self.linger)

    async def _apply(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply a batch in one transaction; records that are no event, or that the
        database refuses as data, are parked as dead letters and the rest applied."""
        started = time.perf_counter()
        good: list[tuple[ConsumerRecord[bytes, bytes], Event]] = []
        received: list[tuple[ConsumerRecord[bytes, bytes], InvoiceReceived]] = []
        writebacks: list[tuple[ConsumerRecord[bytes, bytes], WriteBackStatus]] = []
        for record in records:
            try:
                if record.topic == self.writeback_topic:
                    if record.value is None:
                        raise ValueError("record has no value")
                    writebacks.append((record, WriteBackStatus.from_json(record.value)))
                    continue
                if record.topic == self.received_topic:
                    try:
                        if record.value is None:
                            raise ValueError("record has no value")
                        received.append((record, InvoiceReceived.from_json(record.value)))
                    except (ValidationError, ValueError) as error:
                        self._skip(record, error)
                    continue
                good.append((record, decode(self.topics, record)))
            except (ValidationError, ValueError) as error:
                await self._dead_letter(record, error)
        try:
            outcomes = await self.store.apply([event for _, event in good])
        except Exception as batch_error:
            if not refused_as_data(batch_error):
                raise
            # Find the record the database refuses; apply the others one by one.
            outcomes = Counter()
            for record, event in good:
                try:
                    outcomes.update(await self.store.apply([event]))
                except Exception as error:
                    if not refused_as_data(error):
                        raise
                    await self._dead_letter(record, error)
        if received:
            await self._apply_received(received)
        if writebacks:
            await self._apply_writebacks(writebacks)
        for outcome, n in outcomes.items():
            EVENTS.labels(outcome.value).inc(n)
        for _, event in good:
            # Per-integration outcomes (bounded: runtime/metrics.py). A batch re-read after
            # a crash counts again; the journal, not this counter, is the exact record.
            if isinstance(event, InvoiceStatus):
                INTEGRATION_INVOICES.count(event.integration_uid, event.state.value)
        BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _apply_received(
        self, received: list[tuple[ConsumerRecord[bytes, bytes], InvoiceReceived]]
    ) -> None:
        """Keep each invoice's first receipt (the store keeps the earliest, so redelivery
        and order are harmless); a delivery the database refuses is skipped alone."""
        try:
            await self.store.record_received([event for _, event in received])
        except Exception as batch_error:
            if not refused_as_data(batch_error):
                raise
            for record, event in received:
                try:
                    await self.store.record_received([event])
                except Exception as error:
                    if not refused_as_data(error):
                        raise
                    self._skip(record, error)
        EVENTS.labels("received").inc(len(received))

    async def _apply_writebacks(
        self, writebacks: list[tuple[ConsumerRecord[bytes, bytes], WriteBackStatus]]
    ) -> None:
        """Keep each invoice's latest write-back outcome (a newer one stored wins, so
        redelivery is harmless), in one transaction; kept apart from the journal, so it
        does not wait for the invoice's status to be projected first. Applied one by one
        when the write-back stage inserted a row meanwhile, or the database refuses one."""
        try:
            await self.store.writebacks.apply_many([outcome for _, outcome in writebacks])
        except Exception as batch_error:
            if not (isinstance(batch_error, IntegrityError) or refused_as_data(batch_error)):
                raise
            for record, outcome in writebacks:
                try:
                    await self.store.writebacks.apply(
                        integration_uid=outcome.integration_uid, source_id=outcome.source_id,
                        state=outcome.state.value, reason=outcome.reason,
                        fiscal_number=outcome.fiscal_number, event_id=outcome.event_id,
                        occurred_at=outcome.occurred_at,
                    )
                except Exception as error:
                    if not refused_as_data(error):
                        raise
                    await self._dead_letter(record, error)
        EVENTS.labels("writeback").inc(len(writebacks))

    def _skip(self, record: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        log.warning(
            "record of a topic the fiscalizer owns is of no use to the history; skipped",
            extra={"topic": record.topic, "partition": record.partition,
                   "offset": record.offset, "error": type(error).__name__},
        )
        SKIPPED.labels(record.topic).inc()

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        log.error(
            "record is not an event the projection can apply; sent to the dead-letter topic",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error": type(error).__name__,
            },
        )
        await self.dead_letters.park(record, error)
        DEAD_LETTERS.inc()


async def main(stop: asyncio.Event) -> None:
    """Run the projector on its own (the portal normally embeds it)."""
    store = Store.open()
    try:
        await store.require_schema()
        await Projector(store, KafkaSettings()).run(stop)
    finally:
        await store.close()


if __name__ == "__main__":
    from runtime.lifecycle import run

    run(main)
