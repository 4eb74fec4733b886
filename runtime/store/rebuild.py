"""The projection's topics (`invoices.status`, `integrations.events`) seen from the store:
`publish_and_apply` makes a status change durable on the topic and visible in the store at
once; `rebuild` replays both topics into an emptied projection (`fiscobridge
rebuild-state`). The projector service (services/portal/projector.py) consumes the same
topics live; anything that changes an integration's status goes through here, never
through a service.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from runtime.kafka import clients
from runtime.kafka.admin import cluster_topics
from runtime.settings import KafkaSettings
from runtime.store import projection
from runtime.store.projection import Outcome
from runtime.store.store import Store
from schemas.events import Event, IntegrationEvent, InvoiceStatus
from schemas.topics import INTEGRATIONS_EVENTS, INVOICES_STATUS


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
        await clients.stop_consumer(consumer)
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
