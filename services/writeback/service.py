"""writeback: invoices.status -> Zoho invoice custom fields -> invoices.writeback.

For each fiscalized invoice the fiscal number, ZKI, JIR and QR URL go onto the Zoho
invoice (services/writeback/stage.py says how), and the outcome is published to
`invoices.writeback`, which the portal's projector keeps per invoice.

Built on the stream-step layer: records of every partition run concurrently (bounded),
the contiguous processed prefix of each partition is committed only after its outcome is
on the broker, and a record that cannot be processed goes to `invoices.status.dlq` with
the reason. Its own consumer group: however slow Zoho is, fiscalization never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

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
from runtime.store.store import Store
from runtime.vault import Vault
from schemas.events import InvoiceStatus, WriteBackState, WriteBackStatus
from schemas.topics import INVOICES_STATUS, INVOICES_WRITEBACK, Topic
from services.writeback.sessions import ZohoSessions
from services.writeback.settings import WriteBackSettings
from services.writeback.stage import Backoff, Stopping, WriteBackStage

log = logging.getLogger("fiscobridge.writeback")

PROCESSED = Counter(
    "fiscobridge_writeback_processed_total", "Statuses handled, by outcome", ["outcome"]
)
IN_FLIGHT = Gauge("fiscobridge_writeback_in_flight", "Write-backs in flight")
# This stage owns the write-back stages of the per-integration counter (alert
# WriteBackFailing in deploy/prometheus/alerts.yml): exported at 0 from its start.
metrics.INTEGRATION_INVOICES.declare("written_back", "write_back_failed")
STAGE_OF = {WriteBackState.WRITTEN_BACK: "written_back", WriteBackState.FAILED: "write_back_failed"}


class WriteBack:
    def __init__(
        self, kafka: KafkaSettings, settings: WriteBackSettings, stage: WriteBackStage,
        *, status_topic: str = INVOICES_STATUS.name,
        writeback_topic: str = INVOICES_WRITEBACK.name,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.stage = stage
        self.status_topic = status_topic
        self.writeback_topic = writeback_topic
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.dead_letters = DeadLetters([Topic(status_topic, InvoiceStatus)])
        self.stop = asyncio.Event()
        self.running = False

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.producer = make_producer(self.kafka)
        self.dead_letters.producer = self.producer
        self.consumer = make_consumer(self.kafka, group_id=self.settings.group_id,
                                      max_poll_records=self.settings.concurrency * 4)
        stream = StreamConsumer(self.consumer, self._steps,
                                CommitPolicy(seconds=self.settings.commit_interval_seconds))
        async with contextlib.AsyncExitStack() as shutdown:
            await self.producer.start()
            shutdown.push_async_callback(self.producer.stop)
            stream.subscribe([self.status_topic])
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
            timeout=httpx.Timeout(settings.zoho_timeout_seconds)
        ) as http:
            sessions = ZohoSessions(store, http, settings)
            stage = WriteBackStage(
                store.integrations.get, sessions.client,
                Backoff(settings.retry_base_seconds, settings.retry_cap_seconds),
            )
            service = WriteBack(kafka, settings, stage)

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
