"""reporter: invoices.signed -> CIS -> invoices.status (+ invoices.retry).

Why aiokafka rather than a faust agent: submissions are I/O-bound and slow (50 ms to
seconds each), so throughput needs many in flight per partition; a faust agent at
concurrency=1 would need batching that stalls a whole batch on its slowest request.
Here records of every partition are submitted concurrently (bounded by a semaphore)
and the contiguous completed prefix of each partition is committed, so a slow or
hanging request delays commits but never loses or reorders outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError
from cryptography import x509
from prometheus_client import Counter, Gauge

from fiscal.hr_cis.soap import AnswerVerifier
from runtime import metrics
from runtime.health import kafka_ok
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import producer as make_producer
from runtime.kafka.dlq import send_to_dlq
from runtime.logging import log_context
from runtime.ops import OpsServer
from runtime.settings import KafkaSettings
from schemas.events import InvoiceSigned, InvoiceState
from schemas.topics import INVOICES_RETRY, INVOICES_SIGNED, INVOICES_STATUS
from services.reporter.backoff import Backoff
from services.reporter.cis import CisSubmitter
from services.reporter.offsets import OffsetTracker
from services.reporter.outcome import decide
from services.reporter.reported import Recent, invoice_key, published_outcomes
from services.reporter.settings import ReporterSettings

log = logging.getLogger("fiscobridge.reporter")

PROCESSED = Counter(
    "fiscobridge_reporter_processed_total", "Signed invoices handled, by outcome", ["outcome"]
)
PUBLISHED = Counter("fiscobridge_reporter_published_total", "Events published", ["topic"])
IN_FLIGHT = Gauge("fiscobridge_reporter_in_flight", "Submissions in flight")
# Exported at 0 from the start: CIS error codes (alert CisErrorRate), and the "late"
# stage, which the reporter will count once it judges lateness (alert InvoicesLate).
metrics.declare_cis_errors()
metrics.INTEGRATION_INVOICES.declare("late")


def load_trust(settings: ReporterSettings) -> list[x509.Certificate]:
    path = settings.cis_trust
    if path is None:
        from sandbox.cis.ca import default_ca_dir

        path = default_ca_dir() / "ca.cert.pem"
    if not Path(path).exists():
        raise SystemExit(
            f"CIS trust anchor {path} not found: set FISCOBRIDGE_REPORTER_CIS_TRUST to the PEM "
            "of the CIS answer-signing certificate or its CA"
        )
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


class Reporter:
    def __init__(
        self,
        kafka: KafkaSettings,
        settings: ReporterSettings,
        submitter: CisSubmitter,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.submitter = submitter
        self.backoff = Backoff(
            base=timedelta(seconds=settings.retry_base_seconds),
            cap=timedelta(seconds=settings.retry_cap_seconds),
            deadline=timedelta(seconds=settings.retry_deadline_seconds),
        )
        self.tracker = OffsetTracker()
        # Partitions ready to process, with the message ids they must not submit again.
        # Records of other partitions are fetched during a rebalance and dropped: their
        # owner (us again, once prepared, or another instance) reads them from the
        # committed offset.
        self.reported: dict[TopicPartition, Recent] = {}
        self.settled = asyncio.Event()
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.tasks: set[asyncio.Task[None]] = set()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.lookup: AIOKafkaConsumer | None = None
        self.running = False

    # -- rebalance --------------------------------------------------------------

    class _Listener(ConsumerRebalanceListener):
        def __init__(self, reporter: Reporter) -> None:
            self.reporter = reporter

        async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
            await self.reporter.drain(revoked)

        async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
            await self.reporter.prepare(assigned)

    async def drain(self, tps: list[TopicPartition]) -> None:
        """Finish what is in flight for partitions we are losing, and commit it."""
        self.settled.clear()
        # Each finishes within the CIS timeout; polling beats an event per partition.
        while self.tracker.in_flight(tps):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await self.commit()
        self.tracker.forget(tps)
        for tp in tps:
            self.reported.pop(tp, None)

    async def prepare(self, tps: list[TopicPartition]) -> None:
        assert self.consumer is not None and self.lookup is not None
        committed = {tp: await self.consumer.committed(tp) for tp in tps}
        found = await published_outcomes(self.lookup, tps, committed, INVOICES_STATUS.name)
        self.reported.update(found)
        self.settled.set()
        skipped = sum(len(recent) for recent in found.values())
        if skipped:
            log.info("outcomes already published for re-read messages", extra={"count": skipped})

    # -- main loop --------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        # Outcomes of concurrent submissions share produce requests.
        self.producer = make_producer(self.kafka, linger_ms=self.kafka.linger_ms)
        self.lookup = make_consumer(self.kafka, group_id=None)
        self.consumer = make_consumer(
            self.kafka,
            group_id=self.settings.group_id,
            max_poll_records=self.settings.concurrency * 4,
        )
        async with contextlib.AsyncExitStack() as shutdown:
            # Each client is stopped even when stopping another fails (a broker outage
            # at shutdown), consumer first, producer last.
            await self.producer.start()
            shutdown.push_async_callback(self.producer.stop)
            await self.lookup.start()
            shutdown.push_async_callback(self.lookup.stop)
            self.consumer.subscribe([INVOICES_SIGNED.name], listener=self._Listener(self))
            await self.consumer.start()
            shutdown.push_async_callback(self.consumer.stop)
            self.running = True
            lag = asyncio.create_task(metrics.track_lag(self.consumer, self.settings.group_id))
            shutdown.callback(lag.cancel)
            shutdown.callback(setattr, self, "running", False)
            await self._consume(stop)

    async def _consume(self, stop: asyncio.Event) -> None:
        assert self.consumer is not None
        last_commit = time.monotonic()
        while not stop.is_set():
            batch = await self.consumer.getmany(timeout_ms=100)
            if batch:
                await self.settled.wait()
            for tp, records in batch.items():
                if tp not in self.reported:
                    continue
                for record in records:
                    await self.slots.acquire()
                    self.tracker.started(tp, record.offset)
                    task = asyncio.create_task(self.handle(tp, record))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            if time.monotonic() - last_commit >= self.settings.commit_interval_seconds:
                await self.commit()
                last_commit = time.monotonic()
        log.info("draining", extra={"in_flight": len(self.tasks)})
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.commit()

    async def commit(self) -> None:
        assert self.consumer is not None
        offsets = self.tracker.committable()
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except CommitFailedError as exc:
                # The group moved the partitions on (a rebalance, often while we drain on
                # SIGTERM). Their new owner re-reads from the last commit and finds these
                # outcomes on invoices.status, so nothing is reported twice; not a crash.
                log.warning("commit refused after a rebalance; the new owner re-reads",
                            extra={"error": str(exc).splitlines()[0]})
                return
            self.tracker.committed(offsets)

    async def handle(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        IN_FLIGHT.inc()
        try:
            signed: InvoiceSigned | None = None
            try:
                signed = InvoiceSigned.from_json(record.value)
                await self._handle(tp, signed)
            except Exception as exc:  # publish retries until acked, so this is the record's fault
                await self.dead_letter(record, exc, signed)
            # The outcome (status or dead letter) is on the broker: the offset may pass.
            self.tracker.finished(tp, record.offset)
        finally:
            IN_FLIGHT.dec()
            self.slots.release()

    async def dead_letter(
        self, record: ConsumerRecord, error: Exception, signed: InvoiceSigned | None
    ) -> None:
        """Park a record we cannot process on `<topic>.dlq`, waiting for the broker's ack."""
        assert self.producer is not None
        producer = self.producer
        with log_context(integration_uid=signed.integration_uid if signed else None,
                         event_id=signed.event_id if signed else None):
            log.error(
                "cannot process; sent to the dead-letter topic",
                exc_info=error,
                extra={"topic": record.topic, "partition": record.partition,
                       "offset": record.offset, "error": type(error).__name__},
            )
            await self._until_acked(f"{record.topic}.dlq",
                                    lambda: send_to_dlq(producer, record, error))
        PROCESSED.labels("dead_letter").inc()

    async def _handle(self, tp: TopicPartition, signed: InvoiceSigned) -> None:
        with log_context(integration_uid=signed.integration_uid, event_id=signed.event_id):
            seen = self.reported.get(tp)
            invoice = invoice_key(signed.integration_uid, signed.invoice.source_id)
            if seen is not None and (signed.message_id in seen or invoice in seen):
                PROCESSED.labels("already_reported").inc()
                log.info("outcome already published; not submitting again")
                return
            result = await self.submitter.submit(signed)
            status, retry = decide(signed, result, datetime.now(UTC), self.backoff)
            # The retry first: were we to die between the two, the status (which makes a
            # restarted reporter skip this message) must not exist without the retry.
            if retry is not None:
                await self.publish(INVOICES_RETRY.name, retry.key, retry.to_json())
            await self.publish(INVOICES_STATUS.name, status.key, status.to_json())
            if seen is not None:
                seen.add(signed.message_id)
                if status.state is InvoiceState.FISCALIZED:
                    seen.add(invoice)
            PROCESSED.labels(status.state.value).inc()
            if status.state is not InvoiceState.FISCALIZED:  # alert CisErrorRate
                metrics.CIS_ERRORS.labels(status.reason_code).inc()
            log.info(
                "reported",
                extra={"state": status.state.value, "reason_code": status.reason_code,
                       "attempt": signed.attempt},
            )

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Publish, retrying until acked: an outcome we cannot record must not be committed."""
        assert self.producer is not None
        producer = self.producer
        await self._until_acked(topic, lambda: producer.send_and_wait(topic, value, key=key))

    async def _until_acked(self, topic: str, send: Callable[[], Awaitable[object]]) -> None:
        delay = 0.1
        while True:
            try:
                await send()
                PUBLISHED.labels(topic).inc()
                return
            except Exception as exc:  # broker unavailable: hold the offset, keep trying
                log.warning("publish failed; retrying", extra={"topic": topic, "error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def readiness(self) -> dict[str, bool]:
        # The reporter reads and writes only Kafka; it has no store to check.
        consumer = self.consumer
        return {"kafka": self.running and consumer is not None and await kafka_ok(consumer)}


async def cis_clients(
    stack: contextlib.AsyncExitStack, settings: ReporterSettings
) -> list[httpx.AsyncClient]:
    """The HTTP clients CisSubmitter spreads submissions over, closed with `stack`.

    httpcore rescans every connection of a pool (a poll(2) for each idle one) whenever
    a request starts or ends, so one pool of N connections costs O(N) per request.
    Pools of `cis_connections_per_client` connections, one client per that many
    submissions in flight, keep it O(1); CisSubmitter hands each submission a client
    with nothing in flight.
    """
    per_client = settings.cis_connections_per_client
    count = -(-settings.concurrency // per_client)
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    timeout = httpx.Timeout(settings.timeout_seconds)
    # One context for all: httpx would build (and load the CA bundle into) one per client.
    tls = httpx.create_ssl_context()
    return [
        await stack.enter_async_context(
            httpx.AsyncClient(timeout=timeout, limits=limits, verify=tls)
        )
        for _ in range(count)
    ]


async def main(stop: asyncio.Event) -> None:
    kafka = KafkaSettings()
    settings = ReporterSettings()
    verifier = AnswerVerifier(load_trust(settings))
    async with contextlib.AsyncExitStack() as clients:
        pool = await cis_clients(clients, settings)
        submitter = CisSubmitter(pool, settings.cis_url, verifier)
        reporter = Reporter(kafka, settings, submitter)
        ops = OpsServer(reporter.readiness, settings.ops_host, settings.ops_port)
        await ops.start()
        log.info("reporter started", extra={"ops_port": ops.port, "cis_url": settings.cis_url})
        try:
            await reporter.run(stop)
        finally:
            with contextlib.suppress(Exception):
                await ops.stop()
