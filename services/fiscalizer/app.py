"""fiscalizer: a faust app that decides, signs and hands invoices to the reporter.

Three agents, all on topics keyed by integration uid with the same partition count,
so the per-invoice table (`invoice-state`) and the license counter (`license-usage`)
are co-partitioned with every stream that touches them:
- `invoices.received` -> sign (InvoiceSigned) or report (InvoiceStatus);
- `invoices.retry`    -> re-sign with a new IdPoruke and NakDost=true after the backoff;
- `invoices.status`   -> learn the reporter's final outcomes (fiscalized/rejected/failed).
Agents run at concurrency=1 (faust-streaming #606 loses messages above 1); parallelism
comes from partitions and from `stream.take` batches. Offsets are committed by faust
after the producer is flushed, so every output of a batch is on the broker first, and
only over contiguous processed records (runtime/faust_adapter.py).
A batch's table writes reach the changelog only after its outputs are acked
(services/fiscalizer/pending.py says why), and a stopping agent finishes its batch
first: faust acknowledges every event of a batch when its agent stops, processed or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import faust
from prometheus_client import Counter, Histogram

from fiscal.authority import Change, CredentialsError, InvoiceRejected
from runtime.faust_adapter import FaustWorker, WatchPolicy
from runtime.kafka.dlq import DeadLetters
from runtime.licensing import license_month
from runtime.logging import log_context
from runtime.settings import KafkaSettings
from schemas.events import (
    FiscalNumber,
    InvoiceReceived,
    InvoiceRef,
    InvoiceRetry,
    InvoiceSigned,
    InvoiceState,
    InvoiceStatus,
    SubmissionKind,
)
from schemas.invoice import Invoice
from schemas.topics import (
    FISCALIZER_TABLES,
    INTEGRATIONS_EVENTS,
    INVOICES_RECEIVED,
    INVOICES_RESEND,
    INVOICES_RETRY,
    INVOICES_SIGNED,
    INVOICES_STATUS,
)
from services.fiscalizer.directory import (
    IntegrationDirectory,
    IntegrationUnusable,
    IntegrationView,
)
from services.fiscalizer.pending import Batch, Pending
from services.fiscalizer.retention import SweepResult, sweep
from services.fiscalizer.rules import (
    CheckChange,
    Entry,
    Hold,
    Phase,
    Repeat,
    Report,
    ResignChange,
    Seen,
    Sign,
    Skip,
    Storno,
    change_resent,
    change_sent,
    held_change,
    newest_held,
    on_received,
    on_retry,
    on_status,
    sequence_key,
    sequence_of,
    taken,
)
from services.fiscalizer.settings import FiscalizerSettings

log = logging.getLogger("fiscobridge.fiscalizer")

PROCESSED = Counter(
    "fiscobridge_fiscalizer_processed_total", "Events handled, by input and outcome",
    ["input", "outcome"],
)
SIGN_SECONDS = Histogram(
    "fiscobridge_fiscalizer_sign_seconds", "Build + protection code + XML signature per invoice",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)


# A commit waits this long behind a missing record before its partition is read again
# (commits normally move every broker_commit_interval).
REWIND_AFTER = timedelta(seconds=5)
# Inputs whose records are processed as they come; retries wait for their time on
# purpose, so their commits and reads may stand still.
STALLABLE = (INVOICES_RECEIVED.name, INVOICES_RESEND.name, INVOICES_STATUS.name)


class Output(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None


def rocksdb_options() -> dict[str, Any]:
    """A table's RocksDB options (one database per table partition, 2 x 12 of them):
    faust's defaults (64 MiB write buffers x 3, a 2 GiB block cache, each per database)
    let memory grow with the data read; these keep a partition to a few MiB. A fresh
    dict each time: faust's store pops keys from the one it is given."""
    return {
        "write_buffer_size": 4 * 1024 * 1024,
        "max_write_buffer_number": 2,
        "target_file_size_base": 16 * 1024 * 1024,
        "block_cache_size": 8 * 1024 * 1024,
        "block_cache_compressed_size": 0,
    }


def _broker_urls(kafka: KafkaSettings) -> list[str]:
    return [f"kafka://{host.strip()}" for host in kafka.bootstrap_servers.split(",")]


class Fiscalizer:
    def __init__(
        self,
        kafka: KafkaSettings,
        settings: FiscalizerSettings,
        directory: IntegrationDirectory,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.zone = ZoneInfo(settings.timezone)
        self.app = faust.App(
            settings.app_id,
            broker=_broker_urls(kafka),
            # rocksdb://: each table partition a RocksDB under datadir, memory flat in the
            # number of invoices, a restart reads only the changelog written since.
            store=settings.store,
            processing_guarantee="at_least_once",
            topic_partitions=kafka.partitions,
            topic_replication_factor=1,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            # A batch's outputs and changelog writes leave in a few requests, not one each.
            producer_linger=kafka.linger_ms / 1000,
            producer_max_batch_size=kafka.max_batch_size,
            web_enabled=False,
            stream_wait_empty=False,
            broker_commit_interval=1.0,
            # A killed worker's partitions are reassigned once its session expires.
            broker_session_timeout=settings.session_timeout.total_seconds(),
            # Each instance its own (settings.instance): table files are per process.
            datadir=str(settings.data_dir()),
            key_serializer="raw",
            value_serializer="raw",
        )
        # Before anything creates the consumer.
        self.worker = FaustWorker(
            self.app,
            WatchPolicy(settings.app_id, frozenset(STALLABLE), REWIND_AFTER, settings.stall),
            fetch_min_bytes=kafka.fetch_min_bytes, fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        )
        state_table, usage_table = FISCALIZER_TABLES
        # Per invoice its entry, and per fiscal-number sequence the last number drawn
        # (rules.sequence_of; _high_water makes up for a counter write a crash lost).
        # Fiscalized invoices' entries expire (expire_states); nothing else in either table.
        self.states = self.app.Table(state_table, default=None, partitions=kafka.partitions,
                                     options=rocksdb_options())
        self.usage = self.app.Table(usage_table, default=int, partitions=kafka.partitions,
                                    options=rocksdb_options())
        self._partitions = kafka.partitions
        self._highest: dict[str, int] = {}
        self._highest_for: frozenset[Any] | None = None
        self.received_topic = self.app.topic(INVOICES_RECEIVED.name)
        self.retry_topic = self.app.topic(INVOICES_RETRY.name)
        self.resend_topic = self.app.topic(INVOICES_RESEND.name)
        self.status_topic = self.app.topic(INVOICES_STATUS.name)
        self.integrations_topic = self.app.topic(INTEGRATIONS_EVENTS.name)
        self._pending = Pending()
        self._stopping = asyncio.Event()
        self._dead_letters = DeadLetters([INVOICES_RECEIVED, INVOICES_RETRY, INVOICES_RESEND,
                                          INVOICES_STATUS])
        # A settled batch writes up to two table entries per event at once.
        self.worker.hold_streams_at(4 * settings.batch_size)
        self._register_agents()

    # -- wiring -------------------------------------------------------------------

    def _register_agents(self) -> None:
        batch, within = self.settings.batch_size, self.settings.batch.total_seconds()

        @self.app.agent(self.received_topic, concurrency=1, name="received")
        async def received(stream: Any) -> None:
            async for events in stream.take_events(batch, within):
                await self._batch(events, "received", self._on_received)

        @self.app.agent(self.retry_topic, concurrency=1, name="retry")
        async def retry(stream: Any) -> None:
            async for events in stream.take_events(batch, within):
                await self._batch(events, "retry", self._on_retry)

        # Operators' resends: the same rules as retries (rules.on_retry), due at once.
        @self.app.agent(self.resend_topic, concurrency=1, name="resend")
        async def resend(stream: Any) -> None:
            async for events in stream.take_events(batch, within):
                await self._batch(events, "resend", self._on_retry)

        @self.app.agent(self.status_topic, concurrency=1, name="status")
        async def status(stream: Any) -> None:
            async for events in stream.take_events(batch, within):
                await self._batch(events, "status", self._on_status)

        @self.app.timer(interval=self.settings.state_sweep.total_seconds())
        async def expire() -> None:
            await self.expire_states()

        @self.app.timer(interval=5.0)
        async def watch() -> None:
            await self.worker.watch()

        @self.app.agent(self.integrations_topic, concurrency=1, name="integrations")
        async def integrations(stream: Any) -> None:
            async for event in stream.events():
                # Status, tier, certificate or settings may have changed: read again.
                self.directory.invalidate(event.key.decode())

    async def _batch(
        self,
        events: list[Any],
        kind: str,
        handler: Callable[[bytes, Batch], Awaitable[list[Output]]],
    ) -> None:
        work = asyncio.ensure_future(self._process(events, kind, handler))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            # Stopping: faust is about to acknowledge the whole batch, so finish it first
            # (a retry still waiting for its time is handed back to its topic).
            if self.app.should_stop:
                self._stopping.set()
            await work
            raise

    async def _process(
        self,
        events: list[Any],
        kind: str,
        handler: Callable[[bytes, Batch], Awaitable[list[Output]]],
    ) -> None:
        sends: list[Any] = []
        held: list[Output] = []  # outputs that wait for durable writes (see pending.py)
        durable: list[Any] = []
        batch = self._pending.batch()
        for event in events:
            message = event.message
            try:
                outputs = await handler(event.value, batch)
                batch.commit_event(event)
            except Exception as exc:  # never acknowledge silently: park it for an operator
                batch.discard_event()
                log.exception("cannot process; sent to DLQ", extra={"topic": message.topic})
                PROCESSED.labels(kind, "dead_letter").inc()
                letter = self._dead_letters.letter(message, exc)
                outputs = [Output(letter.topic, letter.key, letter.value, letter.headers)]
            durable += batch.take_durable()
            if durable:
                held += outputs
            else:
                sends += [await self._send(output) for output in outputs]
        if durable:
            await self.worker.write_durably(durable)
            sends += [await self._send(output) for output in held]
        # The batch's events are acknowledged when the next batch is taken; faust
        # flushes the producer (changelog writes included) before it commits them.
        if sends:
            await asyncio.gather(*sends)
        batch.settle(self.worker.write)

    async def _send(self, output: Output) -> Any:
        # Straight to the producer: faust's Topic.send wraps each message in three more
        # objects and callbacks (and tells faust's sensors, which nothing here reads:
        # our own metrics count what is published).
        return await self.app.producer.send(
            output.topic, output.key, output.value, partition=None, timestamp=None,
            headers=output.headers,
        )

    async def expire_states(self, now: datetime | None = None) -> SweepResult | None:
        """Delete the fiscalized invoices' entries past the retention (retention.py), in
        the partitions this worker holds; not while a rebalance moves them."""
        if self.app.rebalancing:
            return None
        cutoff = (now or datetime.now(UTC)) - timedelta(days=self.settings.state_retention_days)

        def held() -> set[int]:
            if self.app.rebalancing:
                return set()
            return {tp.partition for tp in self.app.consumer.assignment()
                    if tp.topic == INVOICES_RECEIVED.name}

        return await sweep(self.states, lambda key: self._pending.get(self.states, key), held,
                           self._partitions, cutoff)

    # -- handlers -----------------------------------------------------------------

    def _entry(self, batch: Batch, uid: str, source_id: str) -> Entry | None:
        raw = batch.get(self.states, f"{uid}:{source_id}")
        return Entry.from_json(raw) if raw else None

    def _high_water(self, sequence: str) -> int:
        """The highest number any invoice entry this worker holds drew from `sequence`.

        The sequence's own counter is written with the batch that drew from it, but a
        crash keeps whichever table writes had reached the changelog, in no order
        across batches and agents: an entry (e.g. fiscalized, written by the status
        agent) can survive while the counter write before it did not. Drawing above
        every surviving entry's number means a number is never given to a second
        invoice; the entries are read once per assignment of partitions.
        """
        assigned = frozenset(self.app.consumer.assignment()) if self.app.consumer else None
        if assigned != self._highest_for:
            highest: dict[str, int] = {}
            for key, value in self.states.items():
                number = value.get("number") if isinstance(value, dict) else None
                if number:
                    seq = sequence_key(key.split(":", 1)[0], FiscalNumber(**number))
                    highest[seq] = max(highest.get(seq, 0), int(number["number"]))
            self._highest, self._highest_for = highest, assigned
        return self._highest.get(sequence, 0)

    def _set_entry(self, batch: Batch, uid: str, source_id: str, entry: Entry) -> None:
        batch.set(self.states, f"{uid}:{source_id}", entry.to_json())

    def _month_key(self, uid: str, now: datetime) -> str:
        return f"{uid}:{license_month(now, self.zone)}"

    async def _on_received(self, value: bytes, batch: Batch) -> list[Output]:
        event = InvoiceReceived.from_json(value)
        with log_context(integration_uid=event.integration_uid, event_id=event.event_id):
            return await self._received(event, event.invoice, batch)

    async def _received(
        self, event: InvoiceReceived, invoice: Invoice, batch: Batch
    ) -> list[Output]:
        uid = event.integration_uid
        now = datetime.now(UTC)
        integration = await self.directory.get(uid)
        month = self._month_key(uid, now)
        decision = on_received(
            invoice,
            self._entry(batch, uid, invoice.source_id),
            integration_status=integration.status if integration else None,
            trigger=integration.trigger if integration else self.directory.default_trigger,
            used_this_month=batch.get(self.usage, month, 0),
            monthly_limit=(
                self.settings.monthly_limit(integration.tier) if integration else None
            ),
            now=now,
            starts_at=integration.starts_at if integration else None,
        )
        if isinstance(decision, Hold):
            # Held in the entry, written with the batch like any entry: lost in a crash
            # only with this delivery's offset, so the delivery is read again.
            self._set_entry(batch, uid, invoice.source_id, decision.entry)
            PROCESSED.labels("received", "held").inc()
            decision = decision.then
        if isinstance(decision, Skip):
            PROCESSED.labels("received", decision.reason).inc()
            return []
        if isinstance(decision, Seen):
            self._set_entry(batch, uid, invoice.source_id, Entry(
                Phase.SEEN, invoice.version, 0, event.occurred_at, issued_at=event.occurred_at))
            PROCESSED.labels("received", "seen").inc()
            return []
        if isinstance(decision, Storno):
            PROCESSED.labels("received", "storno").inc()
            return await self._received(event, decision.invoice, batch)
        if isinstance(decision, Report):
            PROCESSED.labels("received", decision.state.value).inc()
            if integration is not None and decision.state is InvoiceState.BLOCKED:
                self._note_seen(batch, uid, invoice, event.occurred_at)
            return [self._status(uid, invoice, decision)]
        if isinstance(decision, CheckChange):
            assert integration is not None
            return self._check_change(batch, integration, invoice, decision.entry,
                                      decision.duplicate, now, "received")
        if isinstance(decision, Repeat):
            if decision.entry.attempt <= 1:
                # Counted as the first signature was: that count went with the lost writes.
                batch.set(self.usage, month, batch.get(self.usage, month, 0) + 1)
            return self._repeat(batch, uid, invoice.source_id, decision, "received")
        assert integration is not None and isinstance(decision, Sign)
        if decision.issued_at is None:
            # Issued when FiscoBridge first saw it out of draft (hr-fiscal-record).
            decision = replace(decision, issued_at=event.occurred_at)
        outputs = self._sign(batch, integration, invoice, decision, now)
        if decision.counts_toward_license and outputs[0].topic == INVOICES_SIGNED.name:
            batch.set(self.usage, month, batch.get(self.usage, month, 0) + 1)
        return outputs

    def _repeat(self, batch: Batch, uid: str, source_id: str, repeat: Repeat,
                kind: str) -> list[Output]:
        signed = repeat.entry.signed
        assert signed is not None
        self._set_entry(batch, uid, source_id, replace(repeat.entry, phase=Phase.SIGNED,
                                                       signed=None))
        PROCESSED.labels(kind, "signature_repeated").inc()
        log.info("signature sent again", extra={"invoice_id": source_id,
                                                "attempt": repeat.entry.attempt})
        return [Output(INVOICES_SIGNED.name, uid.encode(), signed.encode())]

    def _note_seen(self, batch: Batch, uid: str, invoice: Invoice, at: datetime) -> None:
        """Refused before it was signed (blocked, or rejected by the fiscal record), yet
        issued: note when FiscoBridge first saw it out of draft, its moment of issue, so
        that once it is let through (runtime/store/refetch.py) it is signed with that
        moment, as a subsequent delivery (hr-fiscal-record: DatVrijeme, late delivery)."""
        if self._entry(batch, uid, invoice.source_id) is None:
            self._set_entry(batch, uid, invoice.source_id,
                            Entry(Phase.SEEN, invoice.version, 0, at, issued_at=at))

    async def _on_retry(self, value: bytes, batch: Batch) -> list[Output]:
        retry = InvoiceRetry.from_json(value)
        uid = retry.integration_uid
        with log_context(integration_uid=uid, event_id=retry.event_id):
            decision = on_retry(retry, self._entry(batch, uid, retry.invoice.source_id))
            if isinstance(decision, Skip):
                PROCESSED.labels("retry", decision.reason).inc()
                return []
            if isinstance(decision, Repeat):  # waited for its time before it was signed
                return self._repeat(batch, uid, retry.invoice.source_id, decision, "retry")
            assert isinstance(decision, Sign | ResignChange)
            integration = await self.directory.get(uid)
            if integration is None:
                raise IntegrationUnusable(f"integration {uid} no longer exists in the store")
            wait = (retry.not_before - datetime.now(UTC)).total_seconds()
            if wait > 0:
                # Retries of one partition arrive roughly in not_before order; waiting here
                # delays only this partition's retries, never new invoices.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), wait)
                if self._stopping.is_set():
                    PROCESSED.labels("retry", "handed_back").inc()
                    return [Output(INVOICES_RETRY.name, retry.key, value)]
            if isinstance(decision, ResignChange):
                return self._resign_change(batch, integration, retry.invoice, decision,
                                           datetime.now(UTC))
            return self._sign(batch, integration, retry.invoice, decision, datetime.now(UTC))

    async def _on_status(self, value: bytes, batch: Batch) -> list[Output]:
        status = InvoiceStatus.from_json(value)
        uid, source_id = status.integration_uid, status.invoice.source_id
        entry = self._entry(batch, uid, source_id)
        updated = on_status(status, entry)
        if updated is None:
            if entry is None and status.state is InvoiceState.BLOCKED \
                    and status.message_id is None and await self.directory.get(uid):
                # Shown blocked by the poller or ingest (the mapping refused it): it was
                # seen out of draft then, whatever its corrected version brings.
                self._set_entry(batch, uid, source_id, Entry(
                    Phase.SEEN, status.invoice.version, 0, status.occurred_at,
                    issued_at=status.occurred_at))
            return []
        if updated.phase is not Phase.FISCALIZED or updated.newer is None:
            self._set_entry(batch, uid, source_id, updated)
            PROCESSED.labels("status", updated.phase.value).inc()
            return []
        # Fiscalized while a newer delivery was held: judged for a change now. The entry
        # is read again after the integration's lookup: a delivery held meanwhile (the
        # received agent, in that await) is the one to judge, never overwritten.
        integration = await self.directory.get(uid)
        updated = on_status(status, self._entry(batch, uid, source_id))
        if updated is None:
            return []
        PROCESSED.labels("status", updated.phase.value).inc()
        # The fiscalized outcome is written whatever the held delivery turns out to be.
        self._set_entry(batch, uid, source_id, taken(updated))
        with log_context(integration_uid=uid):
            try:
                held = held_change(updated, integration_status=integration.status
                                   if integration else None)
                if held is None:
                    return []
                assert integration is not None
                # As a delivery arriving now would be, except that no duplicate is
                # reported: the delivery held already was (already_signed).
                return self._check_change(batch, integration, held.invoice, held.entry,
                                          None, datetime.now(UTC), "status")
            except Exception:
                # Never at the cost of the outcome (a dead letter would leave the invoice
                # "being fiscalized" for good); a later delivery is judged again.
                log.exception("cannot judge the delivery held for a change; dropped",
                              extra={"invoice_id": source_id})
                self._set_entry(batch, uid, source_id, taken(updated))  # no change went out
                PROCESSED.labels("status", "held_unjudged").inc()
                return []

    # -- changes of fiscalized invoices -------------------------------------------

    def _prepare_change(
        self, integration: IntegrationView, invoice: Invoice, entry: Entry, base: str | None,
        now: datetime,
    ) -> Change | Report | None:
        """The authority's answer to whether `invoice` changes its fiscalized record from
        the data in force (`base`; None: as fiscalized): a signed change, a report (too
        late, or the new data cannot be sent), or None (nothing changed)."""
        assert entry.fiscalized is not None
        authority = integration.authority
        try:
            result = authority.prepare_change(
                entry.fiscalized, base, invoice, integration.fiscal_settings,
                integration.credentials, now=now)
        except InvoiceRejected as exc:
            return Report(InvoiceState.REJECTED, exc.code,
                          f"The change of fiscalized invoice {invoice.number} cannot be sent: "
                          f"{exc} The invoice stays fiscalized as issued.")
        except CredentialsError as exc:
            return Report(InvoiceState.BLOCKED, exc.code,
                          f"The change of fiscalized invoice {invoice.number} cannot be signed: "
                          f"{exc} The invoice stays fiscalized as issued.")
        if result is None or isinstance(result, Change):
            return result
        return Report(InvoiceState.REJECTED, result.code, result.reason)

    def _check_change(
        self, batch: Batch, integration: IntegrationView, invoice: Invoice, entry: Entry,
        duplicate: Report | None, now: datetime, source: str,
    ) -> list[Output]:
        """`invoice` judged for a change of fiscalized `entry`: a signed change (the entry
        remembers its data), a report, or `duplicate` (None: nothing) when unchanged."""
        uid = integration.uid
        started = time.perf_counter()
        prepared = self._prepare_change(integration, invoice, entry, entry.changed, now)
        SIGN_SECONDS.observe(time.perf_counter() - started)
        if prepared is None:
            PROCESSED.labels(source, InvoiceState.DUPLICATE.value).inc()
            return [] if duplicate is None else [self._status(uid, invoice, duplicate)]
        if isinstance(prepared, Report):
            PROCESSED.labels(source, "change_" + prepared.state.value).inc()
            return [self._status(uid, invoice, prepared)]
        self._set_entry(batch, uid, invoice.source_id, change_sent(entry, prepared.data))
        PROCESSED.labels(source, "change_signed").inc()
        return [self._change_output(uid, integration, invoice, entry, prepared, 1, now)]

    def _resign_change(
        self, batch: Batch, integration: IntegrationView, invoice: Invoice,
        resign: ResignChange, now: datetime,
    ) -> list[Output]:
        uid, entry = integration.uid, resign.entry
        prepared = self._prepare_change(integration, invoice, entry, entry.change_base, now)
        if isinstance(prepared, Change) and prepared.data != entry.changed:
            prepared = None  # a later change of the invoice went out meanwhile
        if prepared is None:
            PROCESSED.labels("retry", "stale_retry").inc()
            return []
        if isinstance(prepared, Report):
            PROCESSED.labels("retry", "change_" + prepared.state.value).inc()
            return [self._status(uid, invoice, prepared)]
        self._set_entry(batch, uid, invoice.source_id, change_resent(entry, resign.attempt))
        PROCESSED.labels("retry", "change_signed").inc()
        return [self._change_output(uid, integration, invoice, entry, prepared, resign.attempt,
                                    resign.first_attempt_at)]

    def _change_output(
        self, uid: str, integration: IntegrationView, invoice: Invoice, entry: Entry,
        change: Change, attempt: int, first_attempt_at: datetime,
    ) -> Output:
        signed = change.submission
        event = InvoiceSigned(
            kind=SubmissionKind.CHANGE,
            integration_uid=uid,
            # As fiscalized: the moment of issue the record states.
            invoice=invoice.model_copy(update={"first_seen_issued_at": entry.issued_at})
            if entry.issued_at else invoice,
            profile=integration.authority.name,
            message_id=signed.message_id,
            protection_code=signed.protection_code,
            document=signed.document.decode(),
            attempt=attempt,
            first_attempt_at=first_attempt_at,
            fiscal_number=entry.number,
        )
        log.info("change signed", extra={"attempt": attempt, "invoice_id": invoice.source_id})
        return Output(INVOICES_SIGNED.name, event.key, event.to_json())

    # -- outputs ------------------------------------------------------------------

    def _status(self, uid: str, invoice: Invoice, report: Report) -> Output:
        status = InvoiceStatus(
            integration_uid=uid,
            invoice=InvoiceRef.of(invoice),
            state=report.state,
            reason_code=report.reason_code,
            message=report.message,
        )
        log.info("reported", extra={"state": report.state.value, "reason_code": report.reason_code})
        return Output(INVOICES_STATUS.name, status.key, status.to_json())

    def _sign(
        self,
        batch: Batch,
        integration: IntegrationView,
        invoice: Invoice,
        sign: Sign,
        now: datetime,
    ) -> list[Output]:
        uid, authority = integration.uid, integration.authority
        try:
            outside = authority.out_of_scope(invoice, integration.fiscal_settings)
        except InvoiceRejected as exc:
            PROCESSED.labels("sign", "rejected").inc()
            self._note_seen(batch, uid, invoice, sign.issued_at or now)
            return [self._status(uid, invoice, Report(InvoiceState.REJECTED, exc.code, str(exc)))]
        if outside is not None:
            PROCESSED.labels("sign", "skipped").inc()
            return [self._status(uid, invoice, Report(InvoiceState.SKIPPED, "e_invoice", outside))]
        issued_at = sign.issued_at or invoice.first_seen_issued_at or invoice.issued_at
        invoice = invoice.model_copy(update={"first_seen_issued_at": issued_at})
        number, sequence = sign.number, None
        # None: the authority numbers the invoice itself (its answer carries the number).
        numbering = authority.numbering(integration.fiscal_settings) if number is None else None
        if numbering is not None:
            sequence, year = sequence_of(uid, "N" if numbering.per_device else "P",
                                         numbering.premises, numbering.device, issued_at,
                                         numbering.zone)
            last = max(batch.get(self.states, sequence, 0), self._high_water(sequence))
            number = FiscalNumber(number=last + 1, per_device=numbering.per_device,
                                  premises=numbering.premises, device=numbering.device,
                                  year=year)
        started = time.perf_counter()
        try:
            signed = authority.prepare(
                invoice,
                integration.fiscal_settings,
                integration.credentials(),
                number=number,
                subsequent_delivery=sign.subsequent_delivery,
                now=now,
            )
        except InvoiceRejected as exc:
            PROCESSED.labels("sign", "rejected").inc()
            self._note_seen(batch, uid, invoice, issued_at)
            return [self._status(uid, invoice, Report(InvoiceState.REJECTED, exc.code, str(exc)))]
        except CredentialsError as exc:
            PROCESSED.labels("sign", "blocked").inc()
            self._note_seen(batch, uid, invoice, issued_at)
            return [self._status(uid, invoice, Report(InvoiceState.BLOCKED, exc.code, str(exc)))]
        finally:
            SIGN_SECONDS.observe(time.perf_counter() - started)
        # A delivery held (a newer version than the one signed here, as a retry signs the
        # invoice as first signed) stays held until the outcome.
        newer = newest_held(self._entry(batch, uid, invoice.source_id), invoice)
        event = InvoiceSigned(
            integration_uid=uid,
            invoice=invoice,
            profile=authority.name,
            message_id=signed.message_id,
            protection_code=signed.protection_code,
            document=signed.document.decode(),
            subsequent_delivery=sign.subsequent_delivery,
            attempt=sign.attempt,
            first_attempt_at=sign.first_attempt_at,
            fiscal_number=number,
            late=sign.late,
        )
        message = event.to_json()
        if number is not None:
            # A number is drawn only by a signature that goes out (no gaps), and is
            # durable with that signature before it goes out (never drawn twice, never
            # signed twice): see pending.py. So is a retry's signature under its number:
            # the retry read again after a crash sends it again (rules.on_retry). The
            # numbered entry is written before the counter, to the same changelog
            # partition (the integration's), which keeps the order: a crash between them
            # keeps the entry alone (_high_water reads it, the delivery read again sends
            # its signature), never a counter past a number nobody holds.
            batch.set(self.states, f"{uid}:{invoice.source_id}", Entry(
                Phase.NUMBERED, invoice.version, sign.attempt, sign.first_attempt_at,
                number=number, issued_at=issued_at, newer=newer,
                signed=message.decode()).to_json(), durable=True)
        if sequence is not None:
            assert number is not None
            batch.set(self.states, sequence, number.number, durable=True)
            self._highest[sequence] = number.number
        self._set_entry(
            batch, uid, invoice.source_id,
            Entry(Phase.SIGNED, invoice.version, sign.attempt, sign.first_attempt_at,
                  number=number, issued_at=issued_at, newer=newer),
        )
        PROCESSED.labels("sign", "signed").inc()
        log.info("signed", extra={"attempt": sign.attempt, "subsequent": sign.subsequent_delivery,
                                  "invoice_id": invoice.source_id,
                                  "fiscal_number": number.text if number else None})
        return [Output(INVOICES_SIGNED.name, event.key, message)]
