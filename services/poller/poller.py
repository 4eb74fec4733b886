"""The poller: each due integration's changed Zoho invoices -> `invoices.received`.

One poll of one integration: take its lease, list what changed since the watermark
(with overlap) and fetch each change, publish an `InvoiceReceived(channel=poll)` per
invoice, and only once the broker has acked every one move the watermark. A crash or a
broker failure anywhere before that leaves the watermark where it was, so the next poll
reads the same changes again; the fiscalizer's per-invoice state absorbs the repeats.
A changed invoice the mapping refuses is published as a `blocked` status on
`invoices.status` with the mapping's reason (connectors.zoho.rejected), acked like the
invoices before the watermark moves.

Leases are sticky: after a poll its holder keeps the integration's lease until the next
poll is due (plus the TTL). With several instances each integration is then polled by
one of them once per interval, instead of once per interval by every instance in turn
(which would multiply the Zoho calls of every organization). A dead instance's
integrations are taken over when its leases expire; a drained one releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaProducer

from connectors.zoho.contacts import ContactCache
from connectors.zoho.errors import TokenInvalid, ZohoError
from connectors.zoho.mapping import MappingOptions
from connectors.zoho.rejected import blocked_status
from connectors.zoho.sync import (
    CREDIT_NOTE,
    Refetched,
    SyncResult,
    changed_invoices,
    documents_by_id,
)
from runtime.logging import log_context
from runtime.store.rebuild import publish_and_apply
from runtime.store.refetch import Document
from runtime.store.store import Store
from schemas.events import (
    Channel,
    IntegrationEvent,
    IntegrationEventKind,
    InvoiceReceived,
    InvoiceStatus,
)
from schemas.invoice import DocumentKind, Invoice
from schemas.topics import INTEGRATIONS_EVENTS, INVOICES_RECEIVED, INVOICES_STATUS
from services.poller import metrics
from services.poller.outcome import PollOutcome, ending_of
from services.poller.schedule import Schedule, Target, stretch_interval, target_of
from services.poller.sessions import NotConfigured, Session, Sessions
from services.poller.settings import PollerSettings

log = logging.getLogger("fiscobridge.poller")

TOKEN_INVALID_REASON = (
    "Zoho refused the integration's refresh token (revoked, expired or replaced by a newer "
    "connection): reconnect the integration to Zoho Books"
)


def default_holder() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class PollReport:
    uid: str
    outcome: PollOutcome
    published: int = 0
    rejected: int = 0
    api_calls: int = 0
    watermark: datetime | None = None  # after the poll
    error: str | None = None
    deactivated: bool = False  # token_invalid was published and applied
    stretch: int = 1  # the next interval's multiple while webhooks are delivering
    blocked: int = 0  # of `rejected`, those published as blocked (shown in the portal)


class Poller:
    def __init__(
        self,
        store: Store,
        producer: AIOKafkaProducer,
        settings: PollerSettings,
        *,
        http: httpx.AsyncClient | None = None,
        holder: str | None = None,
        received_topic: str = INVOICES_RECEIVED.name,
        events_topic: str = INTEGRATIONS_EVENTS.name,
        status_topic: str = INVOICES_STATUS.name,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.producer = producer
        self.settings = settings
        self.holder = holder or default_holder()
        self.received_topic = received_topic
        self.events_topic = events_topic
        self.status_topic = status_topic
        self.clock = clock
        self._owns_http = http is None
        self.http = http or metrics.instrumented_http(settings.zoho_timeout.total_seconds())
        self.sessions = Sessions(store, self.http, settings, clock=clock)
        self.schedule = Schedule(settings.interval)
        # Shared by every integration: keyed by organization and contact.
        self.contacts = ContactCache(
            ttl=settings.contact_cache, clock=clock
        )
        self._slots = asyncio.Semaphore(settings.max_concurrent_polls)
        self._running: dict[str, asyncio.Task[PollReport]] = {}
        self._publishing: set[str] = set()
        self._held: set[str] = set()

    # -- scheduling ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll what is due every tick until `stop`; then drain and release the leases."""
        if not self.sessions.configured:
            log.warning(
                "no Zoho OAuth client configured (FISCOBRIDGE_ZOHO_CLIENT_ID/_SECRET): "
                "integrations connected to Zoho cannot be polled"
            )
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception:  # the store is down: keep the loop, try next tick
                    log.exception("scheduler tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.tick.total_seconds())
        finally:
            await self.drain()

    async def tick(self) -> list[asyncio.Task[PollReport]]:
        """Start a poll of every due integration not being polled already."""
        records = await self.store.integrations.list_active()
        targets = [t for t in map(target_of, records) if t is not None]
        metrics.POLLABLE.set(len(targets))
        for uid in self.schedule.retain(t.uid for t in targets):
            if uid not in self._running:
                await self._let_go(uid)
        requested = await self.store.refetch.requested()
        started = []
        due = self.schedule.due(targets, self.clock(), requested=requested,
                                min_gap=self.settings.refetch_min_gap)
        for target in due:
            if target.uid in self._running:
                continue
            task = asyncio.create_task(self._guarded(target), name=f"poll-{target.uid}")
            self._running[target.uid] = task
            task.add_done_callback(self._finished(target.uid))
            started.append(task)
        return started

    def _finished(self, uid: str) -> Callable[[asyncio.Task[PollReport]], None]:
        def forget(_: asyncio.Task[PollReport]) -> None:
            self._running.pop(uid, None)

        return forget

    async def run_once(self) -> list[PollReport]:
        """One tick, waiting for the polls it started."""
        return list(await asyncio.gather(*await self.tick()))

    async def drain(self) -> None:
        """Let running polls finish: one still fetching gets `drain`, one that is
        publishing always finishes (its watermark must follow its acks). Then release."""
        running = dict(self._running)
        if running:
            _, pending = await asyncio.wait(
                running.values(), timeout=self.settings.drain.total_seconds()
            )
            for uid, task in running.items():
                if task in pending and uid not in self._publishing:
                    task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
        await self.release_all()
        if self._owns_http:
            await self.http.aclose()

    async def release_all(self) -> None:
        for uid in list(self._held):
            await self._release(uid)

    # -- one poll -----------------------------------------------------------------------

    async def _guarded(self, target: Target) -> PollReport:
        async with self._slots:
            started = time.perf_counter()
            with log_context(integration_uid=target.uid):
                try:
                    report = await self.poll(target)
                except Exception as error:
                    log.exception("poll failed")
                    self.schedule.attempted(target.uid, self.clock())
                    report = PollReport(target.uid, PollOutcome.ERROR, error=repr(error))
                metrics.POLLS.labels(report.outcome.value).inc()
                metrics.POLL_SECONDS.observe(time.perf_counter() - started)
                # A line per integration and minute saying nothing happened would drown
                # the log; so would one per integration another instance polls.
                quiet = report.outcome is PollOutcome.LEASE_BUSY or (
                    report.outcome is PollOutcome.OK and not report.published
                )
                log.log(
                    logging.DEBUG if quiet else logging.INFO,
                    "poll finished",
                    extra={
                        "outcome": report.outcome.value,
                        "published": report.published,
                        "rejected": report.rejected,
                        "blocked": report.blocked,
                        "api_calls": report.api_calls,
                        "watermark": report.watermark.isoformat() if report.watermark else None,
                        "stretch": report.stretch,
                        **({"error": report.error} if report.error else {}),
                    },
                )
                return report

    async def poll(self, target: Target) -> PollReport:
        """Poll one integration now, if its lease can be had."""
        uid = target.uid
        blocked = self.sessions.limiter(target.organization_id).daily_blocked_until
        if blocked is not None:
            self.schedule.attempted(uid, self.clock(), not_before=blocked, hold=blocked)
            return PollReport(uid, PollOutcome.DAILY_LIMIT, error=f"quota resets {blocked}")
        if not await self.store.lease.acquire(uid, self.holder, self.settings.lease_ttl):
            self.schedule.attempted(uid, self.clock())
            return PollReport(uid, PollOutcome.LEASE_BUSY)
        self._hold(uid)
        renewing = asyncio.create_task(self._renew(uid))
        try:
            report, retry_at = await self._poll_leased(target)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        factor = self.schedule.webhook_stretch(
            target, self.clock(), max_factor=self.settings.webhook_stretch_max_factor
        )
        self.schedule.attempted(
            uid, self.clock(), not_before=self._next_poll(target, retry_at, factor),
            hold=retry_at,
        )
        if factor != report.stretch:
            report = replace(report, stretch=factor)
        if report.deactivated:
            await self._let_go(uid)  # inactive now: nothing to poll until a reconnect
        else:
            await self._keep(target)
        return report

    def _next_poll(
        self, target: Target, retry_at: datetime | None, factor: int
    ) -> datetime | None:
        """The next poll no sooner than the organization's daily call budget allows
        (connectors.zoho.budget: polling takes at most its share of the plan's cap),
        stretched further while webhooks are delivering (schedule.webhook_factor)."""
        if not self.settings.zoho_budget and factor <= 1:
            return retry_at
        now = self.clock()
        interval = self.settings.interval(target.tier)
        if self.settings.zoho_budget:
            budget = self.sessions.limiter(target.organization_id).budget
            interval = budget.interval(interval, now)
        stretched = now + stretch_interval(
            interval, factor, self.settings.webhook_stretch_ceiling
        )
        return stretched if retry_at is None or stretched > retry_at else retry_at

    async def _poll_leased(self, target: Target) -> tuple[PollReport, datetime | None]:
        uid = target.uid
        try:
            session = await self.sessions.open(target)
        except NotConfigured as error:
            return PollReport(uid, PollOutcome.NOT_CONFIGURED, error=str(error)), None
        try:
            # The same options ingest maps webhooks with: one invoice, one mapping.
            options = MappingOptions.from_stored(target.read_options)
        except ValueError as error:
            why = f"the integration's Zoho read options are not valid: {error}"
            return PollReport(uid, PollOutcome.NOT_CONFIGURED, error=why), None
        watermark = await self.store.watermark.get(uid)
        # A first poll reads from the integration's start, not the organization's history.
        since = watermark or target.starts_at
        calls_before = session.client.limiter.calls
        started = self.clock()
        refetched = None
        try:
            await self.sessions.learn_time_zone(session)
        except ZohoError as error:
            result = SyncResult([], watermark, 0, interrupted=error, seen=session.seen)
        else:
            result = await changed_invoices(
                session.client, since, overlap=self.settings.overlap, seen=session.seen,
                options=options, contacts=self.contacts,
            )
            if result.complete:
                refetched = await self._refetch(session, uid, options)
        calls = session.client.limiter.calls - calls_before
        session.client.limiter.budget.record_poll(
            result.list_calls, max(0, calls - result.list_calls), self.clock()
        )
        self._publishing.add(uid)
        try:
            report = await self._deliver(session, target, watermark, result, calls, refetched)
        finally:
            self._publishing.discard(uid)
        if refetched is not None and report[0].outcome is not PollOutcome.PUBLISH_FAILED:
            read = [_document(key) for key in refetched.done]
            await self.store.refetch.done(uid, read, requested_before=started)
        return report

    async def _refetch(
        self, session: Session, uid: str, options: MappingOptions
    ) -> Refetched | None:
        """The documents queued to be read again (runtime.store.refetch), read by id."""
        queued = await self.store.refetch.pending(uid, limit=self.settings.refetch_per_poll)
        if not queued:
            return None
        refetched = await documents_by_id(
            session.client, [_key(d) for d in queued], options=options, contacts=self.contacts
        )
        metrics.REFETCHED.inc(len(refetched.done))
        log.info("queued documents read again", extra={
            "queued": len(queued), "read": len(refetched.done),
            **({"error": str(refetched.interrupted)} if refetched.interrupted else {}),
        })
        return refetched

    async def _deliver(
        self, session: Session, target: Target, watermark: datetime | None, result: SyncResult,
        calls: int, refetched: Refetched | None = None,
    ) -> tuple[PollReport, datetime | None]:
        """`target`: as read this tick (the session's may predate a settings change)."""
        uid = target.uid
        start = target.starts_at
        found = result.invoices + (refetched.invoices if refetched else [])
        refused = result.rejected + (refetched.rejected if refetched else [])
        own = [i for i in found if start is not None and not i.originated_before(start)]
        # A document the mapping refuses is shown blocked with its reason (never passed on
        # with other numbers); published before the watermark moves, like the invoices.
        blocked = [
            status for status in (
                blocked_status(uid, rejected, starts_at=start, only_paid=target.paid_only)
                for rejected in refused
            ) if status is not None
        ]
        try:
            await asyncio.wait_for(
                self._publish(uid, own, blocked), self.settings.publish_timeout.total_seconds()
            )
        except Exception as error:  # no ack for every invoice: the watermark stays
            log.error(
                "publishing failed; watermark not advanced",
                extra={"error": repr(error), "invoices": len(result.invoices)},
            )
            return PollReport(
                uid, PollOutcome.PUBLISH_FAILED, 0, 0, calls, watermark, repr(error)
            ), None
        metrics.INVOICES_FOUND.inc(len(own))
        metrics.INTEGRATION_INVOICES.count(uid, "received", len(own))
        metrics.INVOICES_BEFORE_START.inc(len(found) - len(own))
        for rejected in refused:
            metrics.INVOICES_REJECTED.inc()
            log.warning(
                "changed invoice cannot be fiscalized as it is",
                extra={"invoice_id": rejected.invoice_id, "code": rejected.code,
                       "reason": rejected.reason},
            )
        new = result.new_watermark
        if new is not None and (watermark is None or new > watermark):
            if await self.store.watermark.advance(uid, new, holder=self.holder, read=watermark):
                watermark = new
            else:
                log.warning(
                    "watermark not advanced: the lease was lost or an earlier start was "
                    "chosen during the poll; the next poll reads from the stored watermark"
                )
        session.seen = result.seen
        ending = ending_of(result.interrupted)
        why = str(result.interrupted) if result.interrupted is not None else None
        deactivated = False
        if isinstance(result.interrupted, TokenInvalid):
            deactivated = await self._token_invalid(uid, result.interrupted)
        elif result.interrupted is not None:
            log.warning(
                "poll stopped early",
                extra={"outcome": ending.outcome.value, "error": why,
                       "retry_at": ending.retry_at.isoformat() if ending.retry_at else None},
            )
        report = PollReport(
            uid, ending.outcome, len(own), len(refused), calls, watermark,
            why, deactivated, blocked=len(blocked),
        )
        return report, ending.retry_at

    async def _publish(
        self, uid: str, invoices: Sequence[Invoice], blocked: Sequence[InvoiceStatus] = ()
    ) -> None:
        events = [
            InvoiceReceived(integration_uid=uid, invoice=invoice, channel=Channel.POLL)
            for invoice in invoices
        ]
        acks = [
            await self.producer.send(self.received_topic, event.to_json(), key=event.key)
            for event in events
        ]
        acks += [
            await self.producer.send(self.status_topic, status.to_json(), key=status.key)
            for status in blocked
        ]
        await asyncio.gather(*acks)

    async def _token_invalid(self, uid: str, error: TokenInvalid) -> bool:
        """Turn the integration inactive; False if that could not be done now."""
        event = IntegrationEvent(
            integration_uid=uid,
            kind=IntegrationEventKind.TOKEN_INVALID,
            reason=TOKEN_INVALID_REASON,
            details={"oauth_error": error.error or ""},
        )
        try:
            await publish_and_apply(self.producer, self.store, event, topic=self.events_topic)
        except Exception as failure:  # tried again at the next poll
            log.error("could not publish token_invalid", extra={"error": repr(failure)})
            return False
        log.warning("refresh token refused; integration turned inactive until reconnected")
        return True

    # -- leases ---------------------------------------------------------------------------

    async def _renew(self, uid: str) -> None:
        """Keep the lease while a long poll (a big backlog at 100 calls a minute) runs."""
        every = self.settings.lease_ttl.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                if not await self.store.lease.acquire(uid, self.holder, self.settings.lease_ttl):
                    log.warning("lease taken over by another poller during the poll")
            except Exception as error:
                log.warning("lease renewal failed", extra={"error": repr(error)})

    async def _keep(self, target: Target) -> None:
        now = self.clock()
        ttl = self.schedule.next_due(target, now) - now + self.settings.lease_ttl
        try:
            kept = await self.store.lease.acquire(target.uid, self.holder, ttl)
        except Exception as error:
            log.warning("could not extend the lease", extra={"error": repr(error)})
            return
        if not kept:
            self._unhold(target.uid)

    async def _let_go(self, uid: str) -> None:
        self.sessions.forget(uid)
        self.schedule.forget(uid)
        if uid in self._held:
            await self._release(uid)

    async def _release(self, uid: str) -> None:
        try:
            await self.store.lease.release(uid, self.holder)
        except Exception as error:  # it expires on its own
            log.warning("lease release failed", extra={"integration_uid": uid,
                                                       "error": repr(error)})
        self._unhold(uid)

    def _hold(self, uid: str) -> None:
        self._held.add(uid)
        metrics.LEASES_HELD.set(len(self._held))

    def _unhold(self, uid: str) -> None:
        self._held.discard(uid)
        metrics.LEASES_HELD.set(len(self._held))

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)


def _key(document: Document) -> str:
    """The connector's key of a queued document."""
    if document.kind is DocumentKind.CREDIT_NOTE:
        return CREDIT_NOTE + document.source_invoice_id
    return document.source_invoice_id


def _document(key: str) -> Document:
    if key.startswith(CREDIT_NOTE):
        return Document(key.removeprefix(CREDIT_NOTE), DocumentKind.CREDIT_NOTE)
    return Document(key, DocumentKind.INVOICE)
