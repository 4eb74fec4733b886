"""The projector: keeps the store's integration status, fiscal journal and license usage
current from `invoices.status` and `integrations.events`.

Each batch of records is applied in one database transaction, and offsets are committed
only after it commits; a crash in between re-delivers records the projection already
holds, which it recognises by event id. So the projector can be killed at any point and
started again. A record that is not a valid event, or that the database refuses as data
(not as an outage), goes to `<topic>.dlq` with the reason, and the rest of its batch is
applied without it.

`rebuild` replays both topics from their beginning into an emptied projection (the
`fiscobridge rebuild-state` command); `publish_and_apply` is how the CLI and portal make
a status change take effect at once and still be rebuilt identically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import prometheus_client
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from runtime.kafka import clients
from runtime.kafka.admin import cluster_topics
from runtime.kafka.commit import EVERY_BATCH, CommitOffsets
from runtime.kafka.dlq import DeadLetters
from runtime.kafka.steps import Batch, Step
from runtime.kafka.stream import StreamConsumer
from runtime.metrics import INTEGRATION_INVOICES
from runtime.settings import KafkaSettings
from runtime.store import Outcome, Store, projection
from schemas.events import Event, IntegrationEvent, InvoiceStatus
from schemas.topics import INTEGRATIONS_EVENTS, INVOICES_STATUS, Topic

log = logging.getLogger(__name__)

GROUP_ID = "fiscobridge-projector"

EVENTS = prometheus_client.Counter(
    "fiscobridge_projector_events_total", "Events applied to the projection", ["outcome"]
)
DEAD_LETTERS = prometheus_client.Counter(
    "fiscobridge_projector_dead_letters_total", "Records sent to a dead-letter topic"
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


@dataclass(frozen=True)
class Topics:
    status: str = INVOICES_STATUS.name
    events: str = INTEGRATIONS_EVENTS.name

    def model_of(self, topic: str) -> type[Event]:
        if topic == self.status:
            return InvoiceStatus
        if topic == self.events:
            return IntegrationEvent
        raise KeyError(f"the projector does not read {topic!r}")

    @property
    def names(self) -> tuple[str, str]:
        return (self.status, self.events)


def decode(topics: Topics, record: ConsumerRecord[bytes, bytes]) -> Event:
    if record.value is None:
        raise ValueError("record has no value")
    return topics.model_of(record.topic).from_json(record.value)


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
    ) -> None:
        self.store = store
        self.kafka = kafka
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
            [Topic(self.topics.status, InvoiceStatus), Topic(self.topics.events, IntegrationEvent)],
            producer,
        )
        # Fetches return at least every quarter linger, so a batch waits about `linger`.
        poll = min(0.5, self.linger / 4) if self.linger > 0 else 0.5
        stream = StreamConsumer(consumer, self._steps, EVERY_BATCH, poll_seconds=poll,
                                max_records=self.batch_size)
        stream.subscribe(self.topics.names)
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
        # A batch costs a few milliseconds of CPU whatever its size (transaction, offset
        # commit) and well under one per event, while the fetcher hands over a handful
        # of records at a time: lingering for more makes batches several times larger,
        # for up to `linger` before the portal shows a status.
        return Batch(self._apply, commit, self.batch_size, self.linger)

    async def _apply(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Apply a batch in one transaction; records that are no event, or that the
        database refuses as data, are parked as dead letters and the rest applied."""
        started = time.perf_counter()
        good: list[tuple[ConsumerRecord[bytes, bytes], Event]] = []
        for record in records:
            try:
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
        for outcome, n in outcomes.items():
            EVENTS.labels(outcome.value).inc(n)
        for _, event in good:
            # Per-integration outcomes (bounded: runtime/metrics.py). A batch re-read after
            # a crash counts again; the journal, not this counter, is the exact record.
            if isinstance(event, InvoiceStatus):
                INTEGRATION_INVOICES.count(event.integration_uid, event.state.value)
        BATCH_SECONDS.observe(time.perf_counter() - started)

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


async def publish_and_apply(
    producer: AIOKafkaProducer, store: Store, event: IntegrationEvent, *, topic: str | None = None
) -> Outcome:
    """Make a status change durable in the topic first, then visible in the store at once.

    The projector applies the same event again later and finds it processed, so a
    rebuild from the topic reaches the same state. If the broker does not acknowledge,
    nothing is applied and the error propagates.
    """
    await producer.send_and_wait(
        topic or INTEGRATIONS_EVENTS.name, event.to_json(), key=event.key
    )
    outcomes = await store.apply([event])
    (outcome,) = outcomes
    return outcome


class RebuildRefused(RuntimeError):
    pass


@dataclass
class RebuildReport:
    records: Counter[str] = field(default_factory=Counter)  # per topic
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    undecodable: int = 0
    journal_entries: int = 0
    integrations: dict[str, int] = field(default_factory=dict)


async def rebuild(
    store: Store,
    kafka: KafkaSettings,
    *,
    topics: Topics | None = None,
    allow_truncated: bool = False,
    batch_size: int = 1000,
    stall_timeout: float = 60.0,
) -> RebuildReport:
    """Drop the projection and replay both topics from their first record.

    Everything happens in one database transaction: if the replay fails half way, the
    old projection (and with it the fiscal journal) is still there. The replay reads up
    to the end offsets seen at its start, with a consumer of no group, so the live
    projector's committed offsets are untouched.
    """
    topics = topics or Topics()
    report = RebuildReport()
    consumer = clients.consumer(kafka, group_id=None)
    await consumer.start()
    try:
        partitions = await _partitions(kafka, topics.names)
        consumer.assign(partitions)
        beginning = await consumer.beginning_offsets(partitions)
        end = await consumer.end_offsets(partitions)
        truncated = sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions if beginning[tp])
        if truncated and not allow_truncated:
            raise RebuildRefused(
                f"{', '.join(truncated)} no longer start at offset 0: records before were "
                "deleted (retention or manual), so a rebuild would lose fiscal journal "
                "entries that exist now; refusing (use --allow-truncated to accept that)"
            )
        await consumer.seek_to_beginning(*partitions)
        pending = {tp for tp in partitions if end[tp] > beginning[tp]}
        consumer.pause(*(tp for tp in partitions if tp not in pending))
        async with store.transaction() as session:
            await projection.drop(session)
            last_progress = time.monotonic()
            while pending:
                batches = await consumer.getmany(timeout_ms=1000, max_records=batch_size)
                events: list[Event] = []
                for tp, records in batches.items():
                    for record in records:
                        if record.offset >= end[tp]:
                            break
                        report.records[record.topic] += 1
                        try:
                            events.append(decode(topics, record))
                        except (ValidationError, ValueError):
                            report.undecodable += 1
                report.outcomes.update(await projection.apply_batch(session, events))
                for tp in list(pending):
                    if await consumer.position(tp) >= end[tp]:
                        pending.discard(tp)
                        consumer.pause(tp)
                if batches:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > stall_timeout:
                    raise TimeoutError(
                        f"no records for {stall_timeout:.0f}s before the end offsets of "
                        f"{sorted(str(tp) for tp in pending)}; nothing was changed"
                    )
    finally:
        await consumer.stop()
    report.journal_entries = sum((await store.journal.counts()).values())
    report.integrations = await store.integrations.count_by_status()
    return report


async def _partitions(kafka: KafkaSettings, names: Sequence[str]) -> list[TopicPartition]:
    existing = await cluster_topics(kafka)
    missing = [name for name in names if name not in existing]
    if missing:
        raise RebuildRefused(
            f"topic(s) {', '.join(missing)} do not exist on the cluster; nothing to rebuild "
            "from (create them with `fiscobridge topics create`)"
        )
    return [TopicPartition(name, p) for name in names for p in range(existing[name])]


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
