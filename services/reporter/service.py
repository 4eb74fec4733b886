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
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Gauge

from fiscal.authorities import DEFAULT_AUTHORITY, Authorities
from fiscal.authority import Deadline
from runtime import metrics
from runtime.health import kafka_ok
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import producer as make_producer
from runtime.kafka.commit import CommitOffsets, CommitPolicy
from runtime.kafka.dlq import DeadLetters
from runtime.kafka.steps import RunConcurrently, Step
from runtime.kafka.stream import StreamConsumer
from runtime.logging import log_context
from runtime.ops import OpsServer
from runtime.settings import KafkaSettings
from schemas.events import InvoiceSigned, InvoiceState, SubmissionKind
from schemas.topics import INVOICES_RETRY, INVOICES_SIGNED, INVOICES_STATUS
from services.reporter.backoff import Backoff
from services.reporter.outcome import decide, first_late
from services.reporter.reported import Recent, Turns, invoice_key, published_outcomes
from services.reporter.settings import ReporterSettings
from services.reporter.submit import Submitter
from services.reporter.trust import answer_verifier, cis_tls_context

log = logging.getLogger("fiscobridge.reporter")

PROCESSED = Counter(
    "fiscobridge_reporter_processed_total", "Signed invoices handled, by outcome", ["outcome"]
)
PUBLISHED = Counter("fiscobridge_reporter_published_total", "Events published", ["topic"])
IN_FLIGHT = Gauge("fiscobridge_reporter_in_flight", "Submissions in flight")
# Exported at 0 from the start: CIS error codes (alert CisErrorRate), and the "late"
# stage, counted once per invoice past its delivery deadline (alert InvoicesLate).
metrics.declare_cis_errors()
metrics.INTEGRATION_INVOICES.declare("late")


class Reporter:
    def __init__(
        self,
        kafka: KafkaSettings,
        settings: ReporterSettings,
        submitter: Submitter,
        authorities: Authorities | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = settings
        self.submitter = submitter
        self.authorities = authorities or Authorities()
        self.backoff = Backoff(
            base=settings.retry_base,
            cap=settings.retry_cap,
        )
        self._deadlines: dict[str, Deadline] = {}
        self._turns = Turns()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.lookup: AIOKafkaConsumer | None = None
        self.dead_letters = DeadLetters([INVOICES_SIGNED])
        self.running = False

    async def run(self, stop: asyncio.Event) -> None:
        # Outcomes of concurrent submissions share produce requests.
        self.producer = make_producer(self.kafka, linger_ms=self.kafka.linger_ms)
        self.dead_letters.producer = self.producer
        self.lookup = make_consumer(self.kafka, group_id=None)
        self.consumer = make_consumer(
            self.kafka,
            group_id=self.settings.group_id,
            max_poll_records=self.settings.concurrency * 4,
        )
        stream = StreamConsumer(
            self.consumer, self._steps,
            CommitPolicy(seconds=self.settings.commit_interval.total_seconds()), poll_seconds=0.1,
        )
        async with contextlib.AsyncExitStack() as shutdown:
            # Each client is stopped even when stopping another fails (a broker outage
            # at shutdown), consumer first, producer last.
            await self.producer.start()
            shutdown.push_async_callback(self.producer.stop)
            await self.lookup.start()
            shutdown.push_async_callback(self.lookup.stop)
            stream.subscribe([INVOICES_SIGNED.name])
            await self.consumer.start()
            shutdown.push_async_callback(self.consumer.stop)
            self.running = True
            lag = asyncio.create_task(metrics.track_lag(self.consumer, self.settings.group_id))
            shutdown.callback(lag.cancel)
            shutdown.callback(setattr, self, "running", False)
            await stream.run(stop)
            log.info("drained")

    async def _steps(self, partitions: frozenset[TopicPartition], commit: CommitOffsets) -> Step:
        """The chain for newly assigned partitions, once the outcomes already published
        for their uncommitted records are known: those are never submitted again."""
        assert self.consumer is not None and self.lookup is not None
        committed = {tp: await self.consumer.committed(tp) for tp in partitions}
        reported = await published_outcomes(self.lookup, partitions, committed,
                                            INVOICES_STATUS.name)
        skipped = sum(len(recent) for recent in reported.values())
        if skipped:
            log.info("outcomes already published for re-read messages", extra={"count": skipped})

        async def handle(record: ConsumerRecord[bytes, bytes]) -> None:
            await self.handle(reported, record)

        return RunConcurrently(handle, commit, self.settings.concurrency)

    async def handle(
        self, reported: dict[TopicPartition, Recent], record: ConsumerRecord[bytes, bytes]
    ) -> None:
        """Submit one signed invoice and publish its outcome, or park the record as a dead
        letter; either way the result is on the broker when this returns."""
        IN_FLIGHT.inc()
        try:
            signed: InvoiceSigned | None = None
            try:
                signed = InvoiceSigned.from_json(record.value)
                tp = TopicPartition(record.topic, record.partition)
                await self._handle(reported.get(tp), signed)
            except Exception as exc:  # publish retries until acked, so this is the record's fault
                await self.dead_letter(record, exc, signed)
        finally:
            IN_FLIGHT.dec()

    async def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: Exception, signed: InvoiceSigned | None
    ) -> None:
        with log_context(integration_uid=signed.integration_uid if signed else None,
                         event_id=signed.event_id if signed else None):
            log.error(
                "cannot process; sent to the dead-letter topic",
                exc_info=error,
                extra={"topic": record.topic, "partition": record.partition,
                       "offset": record.offset, "error": type(error).__name__},
            )
            await self.dead_letters.park(record, error)
        PUBLISHED.labels(INVOICES_SIGNED.dlq).inc()
        PROCESSED.labels("dead_letter").inc()

    async def _handle(self, seen: Recent | None, signed: InvoiceSigned) -> None:
        invoice = invoice_key(signed.integration_uid, signed.invoice.source_id)
        # Two messages of one invoice in hand (a fiscalizer that signed it again after a
        # crash) must not both reach the authority: the second waits for the first's
        # outcome, and is skipped if that fiscalized the invoice.
        async with self._turns.turn(invoice):
            await self._submit(seen, invoice, signed)

    async def _submit(self, seen: Recent | None, invoice: str, signed: InvoiceSigned) -> None:
        with log_context(integration_uid=signed.integration_uid, event_id=signed.event_id):
            # A change is of a fiscalized invoice: only its own message id says it was sent.
            fiscalized = invoice in seen if seen is not None and \
                signed.kind is SubmissionKind.INVOICE else False
            if seen is not None and (signed.message_id in seen or fiscalized):
                PROCESSED.labels("already_reported").inc()
                log.info("outcome already published; not submitting again")
                return
            result = await self.submitter.submit(signed)
            now = datetime.now(UTC)
            deadline = self.deadline(signed.profile)
            status, retry = decide(signed, result, now, self.backoff, deadline)
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
            # A change's lateness is not the invoice's (its deadline is the day of issue).
            if signed.kind is SubmissionKind.INVOICE and first_late(signed, now, deadline):
                # alert InvoicesLate
                metrics.INTEGRATION_INVOICES.count(signed.integration_uid, "late")
            if status.state is not InvoiceState.FISCALIZED:  # alert CisErrorRate
                metrics.CIS_ERRORS.labels(status.reason_code).inc()
            log.info(
                "reported",
                extra={"state": status.state.value, "reason_code": status.reason_code,
                       "attempt": signed.attempt},
            )

    def deadline(self, authority: str) -> Deadline:
        """When a retried delivery to `authority` becomes late, by this reporter's settings."""
        deadline = self._deadlines.get(authority)
        if deadline is None:
            deadline = self._deadlines[authority] = self.authorities.get(authority).late_deadline(
                self.settings.late_after_working_days, self.settings.late_holidays,
                None if self.settings.late_after is None
                else self.settings.late_after.total_seconds())
        return deadline

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Publish, retrying until acked: an outcome we cannot record must not be committed."""
        assert self.producer is not None
        delay = 0.1
        while True:
            try:
                await self.producer.send_and_wait(topic, value, key=key)
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
    """The HTTP clients the Submitter spreads submissions over, closed with `stack`.

    httpcore rescans every connection of a pool (a poll(2) for each idle one) whenever
    a request starts or ends, so one pool of N connections costs O(N) per request.
    Pools of `cis_connections_per_client` connections, one client per that many
    submissions in flight, keep it O(1); the Submitter hands each submission a client
    with nothing in flight.
    """
    per_client = settings.cis_connections_per_client
    count = -(-settings.concurrency // per_client)
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    timeout = httpx.Timeout(settings.timeout.total_seconds())
    # One context for all: httpx would build (and load the CA bundle into) one per client.
    # TLS 1.2 or newer only (services/reporter/trust.py).
    tls = cis_tls_context()
    return [
        await stack.enter_async_context(
            httpx.AsyncClient(timeout=timeout, limits=limits, verify=tls)
        )
        for _ in range(count)
    ]


async def main(stop: asyncio.Event) -> None:
    kafka = KafkaSettings()
    settings = ReporterSettings()
    # Refuses to start without an explicit trust setting (services/reporter/trust.py).
    verifier = answer_verifier(settings)
    authorities = Authorities()
    channels = {DEFAULT_AUTHORITY: authorities.get(DEFAULT_AUTHORITY).channel(settings.cis_url,
                                                                               verifier)}
    async with contextlib.AsyncExitStack() as clients:
        pool = await cis_clients(clients, settings)
        submitter = Submitter(pool, channels)
        reporter = Reporter(kafka, settings, submitter, authorities)
        ops = OpsServer(reporter.readiness, settings.ops_host, settings.ops_port)
        await ops.start()
        log.info("reporter started", extra={"ops_port": ops.port, "cis_url": settings.cis_url})
        try:
            await reporter.run(stop)
        finally:
            with contextlib.suppress(Exception):
                await ops.stop()
