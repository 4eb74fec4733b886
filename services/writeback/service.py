"""writeback: invoices.status -> Zoho invoice custom fields -> invoices.writeback.

For each fiscalized invoice the fiscal number, ZKI, JIR and QR URL go onto the Zoho
invoice (services/writeback/stage.py says how), and the outcome is published to
`invoices.writeback`, which the portal's projector keeps per invoice. An invoice signed
but still retried (CIS unreachable) gets its fiscal number, ZKI and `zki=` QR once before
that, its outcome `waiting` until the JIR is written.

It also reads `integrations.events`: a `settings_changed` event that sets the write-back
mapping (`writeback_fields` in its details) re-drives the integration's write-backs that
wait (their latest outcome `waiting`, rebuilt from the fiscal journal), so the customer
need not wait for another fiscalization. Each outcome is applied to the store as soon as
the broker has it, those that come together in one transaction (the projector applies
them again, harmlessly), so such a re-drive finds every outcome published before it.

Built on the stream-step layer: records of every partition run concurrently (bounded),
the contiguous processed prefix of each partition is committed only after its outcome is
on the broker, and a record that cannot be processed goes to `invoices.status.dlq` with
the reason. Its own consumer group: however slow Zoho is, fiscalization never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Gauge

from runtime import metrics
from runtime.health import kafka_ok, store_ok
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import producer as make_producer
from runtime.kafka.commit import CommitOffsets, CommitPolicy
from runtime.kafka.dlq import DeadLetters
from runtime.kafka.steps import RunConcurrently, Step
from runtime.kafka.stream import StreamConsumer
from runtime.logging import log_context
from runtime.ops import OpsServer
from runtime.settings import KafkaSettings
from runtime.store.journal import JournalRecord
from runtime.store.store import Store
from runtime.store.writeback import OutcomeRecorder
from runtime.vault import Vault
from runtime.writeback_mapping import sets_mapping
from schemas.events import (
    IntegrationEvent,
    InvoiceRef,
    InvoiceState,
    InvoiceStatus,
    WriteBackState,
    WriteBackStatus,
)
from schemas.invoice import DocumentKind
from schemas.topics import INTEGRATIONS_EVENTS, INVOICES_STATUS, INVOICES_WRITEBACK, Topic
from services.writeback.sessions import ZohoSessions
from services.writeback.settings import WriteBackSettings
from services.writeback.stage import Backoff, RecentIntegrations, Stopping, WriteBackStage

log = logging.getLogger("fiscobridge.writeback")

PROCESSED = Counter(
    "fiscobridge_writeback_processed_total", "Statuses handled, by outcome", ["outcome"]
)
IN_FLIGHT = Gauge("fiscobridge_writeback_in_flight", "Write-backs in flight")
# This stage owns the write-back stages of the per-integration counter (alert
# WriteBackFailing in deploy/prometheus/alerts.yml): exported at 0 from its start.
metrics.INTEGRATION_INVOICES.declare("written_back", "write_back_failed")
STAGE_OF = {WriteBackState.WRITTEN_BACK: "written_back", WriteBackState.FAILED: "write_back_failed"}

Waiting = Callable[[str], Awaitable[list[JournalRecord]]]
Record = Callable[[WriteBackStatus], Awaitable[None]]


def status_of(entry: JournalRecord) -> InvoiceStatus:
    """The fiscalized status a journal row keeps, as the write-back stage needs it (the
    same event id: its outcome answers that status)."""
    return InvoiceStatus(
        event_id=entry.last_event_id, occurred_at=entry.last_occurred_at,
        integration_uid=entry.integration_uid, state=InvoiceState.FISCALIZED,
        reason_code=entry.reason_code, message=entry.message,
        invoice=InvoiceRef(
            source_id=entry.source_invoice_id, number=entry.invoice_number,
            version=entry.source_version, kind=DocumentKind(entry.kind),
            customer=entry.customer, total=entry.total, issued_at=entry.issued_at,
        ),
        receipt_id=entry.receipt_id, protection_code=entry.protection_code,
        fiscal_number=entry.fiscal_number,
    )


class WriteBack:
    def __init__(
        self, kafka: KafkaSettings, settings: WriteBackSettings, stage: WriteBackStage,
        *, status_topic: str = INVOICES_STATUS.name,
        writeback_topic: str = INVOICES_WRITEBACK.name,
        events_topic: str = INTEGRATIONS_EVENTS.name,
        waiting: Waiting | None = None, record: Record | None = None,
    ) -> None:
        """`waiting` (the store's waiting write-backs of an integration) turns on the
        re-drive from `events_topic`; `record` applies each outcome to the store."""
        self.kafka = kafka
        self.settings = settings
        self.stage = stage
        self.status_topic = status_topic
        self.writeback_topic = writeback_topic
        self.events_topic = events_topic if waiting is not None else None
        self.waiting = waiting
        self.record = record
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        sources = [Topic(status_topic, InvoiceStatus)]
        if self.events_topic is not None:
            sources.append(Topic(self.events_topic, IntegrationEvent))
        self.dead_letters = DeadLetters(sources)
        self.stop = asyncio.Event()
        self.running = False

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.producer = make_producer(self.kafka)
        self.dead_letters.producer = self.producer
        self.consumer = make_consumer(self.kafka, group_id=self.settings.group_id,
                                      max_poll_records=self.settings.concurrency * 4)
        stream = StreamConsumer(self.consumer, self._steps,
                                CommitPolicy(seconds=self.settings.commit_interval.total_seconds()))
        async with contextlib.AsyncExitStack() as shutdown:
            await self.producer.start()
            shutdown.push_async_callback(self.producer.stop)
            stream.subscribe([self.status_topic]
                             + ([self.events_topic] if self.events_topic else []))
            await self.consumer.start()
            shutdown.push_async_callback(self.consumer.stop)
            self.running = True
            shutdown.callback(setattr, self, "running", False)
            lag = asyncio.create_task(metrics.track_lag(self.consumer, self.settings.group_id))
            shutdown.callback(lag.cancel)
            await stream.run(stop)
            log.info("drained")

    async def _steps(self, partitions: frozenset[TopicPartition], commit: CommitOffsets) -> Step:
        return RunConcurrently(self.handle, commit, self.settings.concurrency)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Write one status back and publish the outcome, or park the record as a dead
        letter; either way the result is on the broker when this returns. Raises only
        when stopping mid-retry: the record then stays uncommitted."""
        if record.topic == self.events_topic:
            await self.handle_event(record)
            return
        IN_FLIGHT.inc()
        try:
            status: InvoiceStatus | None = None
            try:
                if record.value is None:
                    raise ValueError("record has no value")
                status = InvoiceStatus.from_json(record.value)
                with log_context(integration_uid=status.integration_uid,
                                 event_id=status.event_id):
                    outcome = await self.stage.process(status, self.publish, self.stop)
                PROCESSED.labels(outcome.state.value if outcome else "not_due").inc()
            except Stopping:
                raise
            except Exception as error:  # publish retries until acked: the record's fault
                await self.dead_letter(record, error, status)
        finally:
            IN_FLIGHT.dec()

    async def handle_event(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """An integration event: when it sets the write-back mapping, write back what
        waits (one by one, in order of issue). Raises only when stopping mid-retry: the
        event stays uncommitted and the next owner re-drives again (harmless: writing the
        same values again changes nothing, a storno's comment is not added twice)."""
        try:
            if record.value is None:
                raise ValueError("record has no value")
            event = IntegrationEvent.from_json(record.value)
        except Exception as error:
            await self.dead_letter(record, error, None)
            return
        self.stage.forget(event.integration_uid)
        if not sets_mapping(event):
            return
        assert self.waiting is not None
        uid = event.integration_uid
        with log_context(integration_uid=uid, event_id=event.event_id):
            delay = 0.1
            while True:
                try:
                    entries = await self.waiting(uid)
                    break
                except Exception as error:  # the store is down: wait for it, lose nothing
                    log.warning("cannot read the waiting write-backs; retrying",
                                extra={"error": repr(error)})
                    try:
                        await asyncio.wait_for(self.stop.wait(), delay)
                    except TimeoutError:
                        delay = min(delay * 2, 5.0)
                        continue
                    raise Stopping("stopping while the store is unavailable") from error
            log.info("write-back mapping set: re-driving what waits",
                     extra={"waiting": len(entries)})
            for entry in entries:
                status = status_of(entry)
                IN_FLIGHT.inc()
                try:
                    outcome = await self.stage.process(status, self.publish, self.stop)
                except Stopping:
                    raise
                except Exception as error:  # one invoice's fault: the others still go
                    log.error("re-driven write-back failed", exc_info=error,
                              extra={"source_id": entry.source_invoice_id})
                    PROCESSED.labels("redrive_error").inc()
                    continue
                finally:
                    IN_FLIGHT.dec()
                PROCESSED.labels(outcome.state.value if outcome else "not_due").inc()

    async def dead_letter(self, record: ConsumerRecord[bytes, bytes], error: Exception,
                          status: InvoiceStatus | None) -> None:
        with log_context(integration_uid=status.integration_uid if status else None,
                         event_id=status.event_id if status else None):
            log.error("cannot write back; sent to the dead-letter topic", exc_info=error,
                      extra={"topic": record.topic, "partition": record.partition,
                             "offset": record.offset, "error": type(error).__name__})
            await self.dead_letters.park(record, error)
        PROCESSED.labels("dead_letter").inc()

    async def publish(self, outcome: WriteBackStatus) -> None:
        """Publish, retrying until acked: an outcome not on the broker is not committed."""
        assert self.producer is not None
        delay = 0.1
        while True:
            try:
                await self.producer.send_and_wait(self.writeback_topic, outcome.to_json(),
                                                  key=outcome.key)
                break
            except Exception as exc:
                log.warning("publish failed; retrying", extra={"error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self.record is not None:
            try:
                await self.record(outcome)
            except Exception as error:  # the projector applies it from the topic anyway
                log.warning("outcome not applied to the store; the projector will",
                            extra={"error": repr(error)})
        stage = STAGE_OF.get(outcome.state)
        if stage is not None:
            metrics.INTEGRATION_INVOICES.count(outcome.integration_uid, stage)
        log.info("write-back outcome", extra={"state": outcome.state.value,
                                              "reason": outcome.reason})

    async def readiness(self, store: Store) -> dict[str, bool]:
        consumer = self.consumer
        return {"kafka": self.running and consumer is not None and await kafka_ok(consumer),
                "store": await store_ok(store)}


async def main(stop: asyncio.Event) -> None:
    kafka = KafkaSettings()
    settings = WriteBackSettings()
    store = Store.open(vault=Vault.from_env(allow_dev_keyfile=True))
    try:
        await store.require_schema()
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(settings.zoho_timeout.total_seconds())
        ) as http:
            sessions = ZohoSessions(store, http, settings)

            async def has_receipt(uid: str, source_id: str) -> bool:
                entry = await store.journal.get(uid, source_id)
                return entry is not None and entry.receipt_id is not None

            stage = WriteBackStage(
                RecentIntegrations(store.integrations.get, settings.integration_ttl),
                sessions.client,
                Backoff(settings.retry_base.total_seconds(), settings.retry_cap.total_seconds()),
                written=store.writebacks.get, has_receipt=has_receipt,
            )
            service = WriteBack(kafka, settings, stage, waiting=store.writebacks.waiting,
                                record=OutcomeRecorder(store.writebacks).record)

            async def ready() -> dict[str, bool]:
                return await service.readiness(store)

            ops = OpsServer(ready, settings.ops_host, settings.ops_port)
            await ops.start()
            log.info("writeback started", extra={"ops_port": ops.port})
            try:
                await service.run(stop)
            finally:
                with contextlib.suppress(Exception):
                    await ops.stop()
    finally:
        await store.close()
