"""The poller against the real Zoho Books sandbox, the real broker and the store."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from runtime.kafka.clients import producer as make_producer
from runtime.settings import KafkaSettings
from runtime.store import IntegrationStatus, Store
from runtime.store.refetch import Document
from schemas.events import (
    Channel,
    IntegrationEvent,
    IntegrationEventKind,
    InvoiceReceived,
)
from schemas.invoice import DocumentKind
from services.poller.outcome import PollOutcome
from services.poller.poller import Poller, PollReport
from services.poller.schedule import target_of
from tests.e2e.zoho_helpers import (
    ZohoGrant,
    poller_settings,
    read_topic,
    reauthorize,
    store_connection,
    versions,
    zoho_grant,
)
from tests.fixtures.certs import Pfx
from tests.fixtures.kafka import MakeTopic
from tests.fixtures.zoho import ZohoSandboxHandle, invoice_spec

pytestmark = pytest.mark.kafka

SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
FAST = {"per_minute": 100_000, "daily": 1_000_000}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class World:
    store: Store
    kafka: KafkaSettings
    zoho: ZohoSandboxHandle
    client: dict[str, Any]
    received: str
    events: str
    producer: AIOKafkaProducer
    pfx: Pfx
    certificate: FiscalCertificate
    fiscal_settings: FiscalSettings

    async def integration(
        self, *, tier: str = "scale", limits: dict[str, Any] | None = None,
        backfill: timedelta | None = timedelta(days=30), **grant: Any,
    ) -> tuple[str, ZohoGrant]:
        """An active integration connected to a new sandbox organization, started
        `backfill` before now as a customer would choose (None: it starts now)."""
        made = await zoho_grant(self.zoho, self.client, limits=limits, **grant)
        account, _ = await self.store.accounts.ensure("owner@obrt.hr")
        created = await self.store.integrations.create(
            account_id=account.account_id, fiscal_settings=self.fiscal_settings,
            pfx=self.pfx.data, password=self.pfx.password, certificate=self.certificate,
            tier=tier,
        )
        uid = created.record.uid
        await store_connection(self.store, uid, made)
        await self.store.apply(
            [IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.CONNECTED)]
        )
        if backfill is not None:
            now = datetime.now(UTC)
            await self.store.integrations.choose_start(uid, now - backfill, now=now)
        return uid, made

    @asynccontextmanager
    async def poller(
        self, *, producer: AIOKafkaProducer | None = None, holder: str | None = None,
        received: str | None = None, **settings: Any,
    ) -> AsyncIterator[Poller]:
        poller = Poller(
            self.store,
            producer or self.producer,
            poller_settings(self.zoho, self.client, **settings),
            holder=holder,
            received_topic=received or self.received,
            events_topic=self.events,
        )
        try:
            yield poller
        finally:
            await poller.drain()

    async def published(self) -> list[InvoiceReceived]:
        events: list[InvoiceReceived] = await read_topic(self.kafka, self.received, InvoiceReceived)
        return events

    async def integration_events(self) -> list[IntegrationEvent]:
        events: list[IntegrationEvent] = await read_topic(self.kafka, self.events, IntegrationEvent)
        return events


@pytest.fixture
async def world(
    store: Store,
    kafka_settings: KafkaSettings,
    make_topic: MakeTopic,
    zoho_sandbox: ZohoSandboxHandle,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> AsyncIterator[World]:
    producer = make_producer(kafka_settings)
    await producer.start()
    try:
        yield World(
            store, kafka_settings, zoho_sandbox, await zoho_sandbox.oauth_client(),
            await make_topic(partitions=3), await make_topic(partitions=1), producer,
            demo_pfx, demo_certificate, fiscal_settings,
        )
    finally:
        await producer.stop()


async def seed(
    zoho: ZohoSandboxHandle, grant: ZohoGrant, times: list[datetime]
) -> list[dict[str, Any]]:
    specs = [
        invoice_spec(customer_name=f"Customer {i}", created_time=t.isoformat(),
                     last_modified_time=t.isoformat())
        for i, t in enumerate(times)
    ]
    return await zoho.create_invoices(grant.organization_id, specs)


def days_ago(n: int, count: int, step: timedelta = timedelta(minutes=1)) -> list[datetime]:
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=n)
    return [base + i * step for i in range(count)]


def only(reports: list[PollReport]) -> PollReport:
    assert len(reports) == 1, reports
    return reports[0]


@SQLITE
async def test_an_organizations_history_before_the_start_is_never_published(
    world: World,
) -> None:
    """A new integration on an organization with years of invoices: its first poll
    reads from its start, and an old invoice edited afterwards is still not published."""
    uid, grant = await world.integration(limits=FAST, backfill=None)
    org = grant.organization_id
    old = [c["invoice_id"] for c in await seed(world.zoho, grant, days_ago(400, 30))]
    async with world.poller() as poller:
        first = only(await poller.run_once())
        assert (first.outcome, first.published) == (PollOutcome.OK, 0), first
        assert first.api_calls < len(old)  # no detail call for any of the history

        await world.zoho.edit_invoice(org, old[3], status="paid")  # modified after start
        await asyncio.sleep(1.1)  # Zoho stamps whole seconds
        new = (await world.zoho.create_invoice(org))["invoice_id"]
        second = only(await poller.run_once())
        assert second.outcome is PollOutcome.OK and second.published == 1, second

    assert [e.invoice.source_id for e in await world.published()] == [new]
    record = await world.store.integrations.get(uid)
    assert record is not None and record.starts_at is not None and not record.starts_at_chosen


@SQLITE
async def test_an_earlier_start_chosen_later_reads_back_to_it(world: World) -> None:
    uid, grant = await world.integration(limits=FAST, backfill=None)
    times = days_ago(2, 5)
    ids = [c["invoice_id"] for c in await seed(world.zoho, grant, times)]
    async with world.poller() as poller:
        assert only(await poller.run_once()).published == 0
        now = datetime.now(UTC)
        await world.store.integrations.choose_start(uid, now - timedelta(days=3), now=now)
        poller.schedule.forget(uid)
        assert only(await poller.run_once()).published == 5
    assert sorted(e.invoice.source_id for e in await world.published()) == sorted(ids)


@SQLITE
async def test_incremental_polls_publish_every_change_exactly_once(world: World) -> None:
    uid, grant = await world.integration(limits=FAST)
    times = days_ago(2, 450)
    ids = [c["invoice_id"] for c in await seed(world.zoho, grant, times)]

    async with world.poller() as poller:
        first = only(await poller.run_once())
        assert first.outcome is PollOutcome.OK, first
        assert first.published == 450
        # The organization (for its time zone) once, three pages of <= 200, one page of
        # credit notes, 450 details, and the buyers' one contact (no tax number on the
        # invoices; cached for the polls after).
        assert first.api_calls == 1 + 3 + 1 + 450 + 1
        assert await world.store.watermark.get(uid) == times[-1]

        # Edits reach every page, one invoice is edited twice, two are new.
        org = grant.organization_id
        for invoice_id in (ids[0], ids[200], ids[449]):
            await world.zoho.edit_invoice(org, invoice_id, status="paid")
        await world.zoho.edit_invoice(org, ids[100], status="paid")
        await world.zoho.edit_invoice(org, ids[100], customer_name="Renamed d.o.o.")
        new = [(await world.zoho.create_invoice(org))["invoice_id"] for _ in range(2)]
        second = only(await poller.run_once())
        assert second.outcome is PollOutcome.OK and second.published == 6
        # A page of invoices and one of credit notes, 6 details, the payments of the 4 paid.
        assert second.api_calls == 2 + 6 + 4

        # Nothing changed: two list calls, nothing published, watermark unchanged.
        watermark = await world.store.watermark.get(uid)
        third = only(await poller.run_once())
        assert (third.published, third.api_calls) == (0, 2)
        assert await world.store.watermark.get(uid) == watermark

        await world.zoho.edit_invoice(org, ids[300], status="paid")
        fourth = only(await poller.run_once())
        assert fourth.published == 1

    published = await world.published()
    assert {e.channel for e in published} == {Channel.POLL}
    assert {e.integration_uid for e in published} == {uid}
    counts = versions(published, uid)
    assert set(counts.values()) == {1}, [k for k, n in counts.items() if n > 1]
    assert len(counts) == 450 + 6 + 1
    by_id: dict[str, list[InvoiceReceived]] = {}
    for event in published:
        by_id.setdefault(event.invoice.source_id, []).append(event)
    assert set(by_id) == {*ids, *new}
    # The double edit between two polls is one version: the latest.
    assert by_id[ids[100]][-1].invoice.customer.name == "Renamed d.o.o."
    assert len(by_id[ids[100]]) == 2


@SQLITE
async def test_documents_queued_to_be_read_again_are_published_though_unchanged(
    world: World,
) -> None:
    """runtime/store/refetch.py: what was refused before it was signed is read again by
    id at the next poll (no edit in Zoho brings it back), then its request is cleared;
    one deleted in Zoho meanwhile is cleared too."""
    uid, grant = await world.integration(limits=FAST)
    org = grant.organization_id
    ids = [c["invoice_id"] for c in await seed(world.zoho, grant, days_ago(1, 3))]
    note = (await world.zoho.create_credit_note(org))["creditnote_id"]
    gone = (await world.zoho.create_invoice(org))["invoice_id"]
    async with world.poller() as poller:
        assert only(await poller.run_once()).published == 5
        assert only(await poller.run_once()).published == 0  # nothing changed
        await world.zoho.delete_invoice(org, gone)
        await world.store.refetch.request(uid, [
            Document(ids[1], DocumentKind.INVOICE), Document(note, DocumentKind.CREDIT_NOTE),
            Document(gone, DocumentKind.INVOICE),
        ], "resent by test")
        again = only(await poller.run_once())
        assert (again.outcome, again.published) == (PollOutcome.OK, 2), again
        assert await world.store.refetch.requested() == {}
        assert only(await poller.run_once()).published == 0

    published = [e.invoice.source_id for e in await world.published()]
    assert sorted(published) == sorted([*ids, note, gone, ids[1], note])


async def test_two_pollers_one_integration_only_one_polls(world: World) -> None:
    uid, grant = await world.integration(limits=FAST)
    old = [c["invoice_id"] for c in await seed(world.zoho, grant, days_ago(2, 30))]

    async with world.poller(holder="poller-a") as a, world.poller(holder="poller-b") as b:
        rounds = []
        for n in range(4):
            ra, rb = await asyncio.gather(a.run_once(), b.run_once())
            outcomes = sorted(only(r).outcome.value for r in (ra, rb))
            assert outcomes == ["lease_busy", "ok"], (n, ra, rb)
            rounds.append((ra, rb))
            if n == 1:
                await world.zoho.create_invoice(grant.organization_id)
        # The lease is sticky: the winner of the first round kept the integration.
        winners = {only(ra).outcome is PollOutcome.OK for ra, _ in rounds}
        assert len(winners) == 1
        winner, other = (a, b) if winners == {True} else (b, a)
        assert await world.store.lease.holder(uid) == winner.holder
        assert winner.held == {uid} and other.held == frozenset()
        assert sum(only(r).published for pair in rounds for r in pair) == 31
        assert set(versions(await world.published(), uid).values()) == {1}

        # Drained (SIGTERM), the winner hands the integration over at once.
        await winner.drain()
        assert await world.store.lease.holder(uid) is None
        newest = (await world.zoho.create_invoice(grant.organization_id))["invoice_id"]
        takeover = only(await other.run_once())
        assert takeover.outcome is PollOutcome.OK
        assert await world.store.lease.holder(uid) == other.holder

    counts = versions(await world.published(), uid)
    by_id = {invoice_id: n for (invoice_id, _), n in counts.items()}
    assert all(by_id[i] == 1 for i in old)  # outside the overlap: never re-read
    assert by_id[newest] == 1


@SQLITE
async def test_a_dead_pollers_integrations_are_taken_over_when_its_lease_expires(
    world: World,
) -> None:
    uid, grant = await world.integration(limits=FAST)
    await seed(world.zoho, grant, days_ago(1, 3))
    async with world.poller(holder="dies", lease_ttl=1) as dead, world.poller(
        holder="survives", lease_ttl=1
    ) as survivor:
        assert only(await dead.run_once()).outcome is PollOutcome.OK
        # `dead` never polls or releases again (as if SIGKILLed).
        assert only(await survivor.run_once()).outcome is PollOutcome.LEASE_BUSY
        await asyncio.sleep(1.2)
        assert only(await survivor.run_once()).outcome is PollOutcome.OK
        assert await world.store.lease.holder(uid) == "survives"


@SQLITE
async def test_a_revoked_grant_turns_the_integration_inactive_and_polling_stops(
    world: World,
) -> None:
    uid, grant = await world.integration(limits=FAST)
    await seed(world.zoho, grant, days_ago(1, 3))
    async with world.poller() as poller:
        assert only(await poller.run_once()).published == 3
        assert await world.zoho.revoke_user(grant.user["email"], grant.client["client_id"]) == 1
        later = await seed(world.zoho, grant, [datetime.now(UTC).replace(microsecond=0)] * 2)

        report = only(await poller.run_once())
        assert report.outcome is PollOutcome.TOKEN_INVALID and report.deactivated
        record = await world.store.integrations.get(uid)
        assert record is not None and record.status is IntegrationStatus.INACTIVE
        assert record.status_reason is not None and "reconnect" in record.status_reason
        events = [e for e in await world.integration_events() if e.integration_uid == uid]
        assert [e.kind for e in events] == [IntegrationEventKind.TOKEN_INVALID]
        assert events[0].occurred_at == record.status_changed_at  # the event applied
        assert await world.store.lease.holder(uid) is None and poller.held == frozenset()

        # Inactive: not polled, Zoho not called, however often the scheduler ticks.
        before = await world.zoho.counters()
        for _ in range(3):
            assert await poller.run_once() == []
        assert await world.zoho.counters() == before

        # Reconnect (new consent, new refresh token): polled again, nothing was lost.
        await store_connection(world.store, uid, await reauthorize(world.zoho, grant))
        await world.store.apply(
            [IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.RECONNECTED)]
        )
        back = only(await poller.run_once())
        # The two made while disconnected, and (the session went with the old grant)
        # the three earlier ones again, all within the overlap of the watermark.
        assert back.outcome is PollOutcome.OK and back.published == 2 + 3
    published = versions(await world.published(), uid)
    assert {c["invoice_id"] for c in later} <= {invoice_id for invoice_id, _ in published}


@SQLITE
async def test_hitting_the_per_minute_limit_backs_off_and_loses_no_invoice(
    world: World,
) -> None:
    # The sandbox allows 8 calls a (1-second) "minute"; the poller believes 100.
    uid, grant = await world.integration(limits={"per_minute": 8, "window_seconds": 1.0})
    created = await seed(world.zoho, grant, days_ago(1, 40))
    waits = metric("fiscobridge_poller_rate_limit_waits_total")
    throttled = metric("fiscobridge_poller_api_calls_total", outcome="throttled")

    started = time.monotonic()
    reports: list[PollReport] = []
    async with world.poller(zoho_per_minute=100, zoho_window=1.0) as poller:
        while not reports or reports[-1].outcome is not PollOutcome.OK:
            reports.append(only(await poller.run_once()))
            assert reports[-1].outcome in (PollOutcome.OK, PollOutcome.RATE_LIMITED)
            assert len(reports) < 10
    elapsed = time.monotonic() - started

    counts = versions(await world.published(), uid)
    assert sorted(k[0] for k in counts) == sorted(c["invoice_id"] for c in created)
    assert set(counts.values()) == {1}
    refused = (await world.zoho.counters())[f"org:{grant.organization_id}"]["throttled_44"]
    assert refused > 0
    assert metric("fiscobridge_poller_api_calls_total", outcome="throttled") - throttled == refused
    assert metric("fiscobridge_poller_rate_limit_waits_total") > waits
    assert elapsed >= 41 / 8 - 1  # 41 calls at 8 a second: the limit was honoured


@SQLITE
@pytest.mark.parametrize("failure", ["stopped producer", "topic refused"])
async def test_the_watermark_stays_when_publishing_fails(
    world: World, kafka_settings: KafkaSettings, failure: str
) -> None:
    uid, grant = await world.integration(limits=FAST)
    await seed(world.zoho, grant, days_ago(1, 10))
    broken = make_producer(kafka_settings, request_timeout_ms=1500)
    await broken.start()
    topic = None
    if failure == "stopped producer":
        await broken.stop()
    else:
        topic = f"test.missing.{uuid.uuid4().hex[:8]}"  # the broker does not create topics
    # Where the first poll reads from: the start chosen for the backfill.
    start = await world.store.watermark.get(uid)
    try:
        async with world.poller(
            producer=broken, received=topic, publish_timeout=3
        ) as poller:
            report = only(await poller.run_once())
            assert report.outcome is PollOutcome.PUBLISH_FAILED
            assert await world.store.watermark.get(uid) == start
            again = only(await poller.run_once())  # `seen` was not updated either
            assert again.outcome is PollOutcome.PUBLISH_FAILED and again.api_calls == 2 + 10
    finally:
        await broken.stop()
    assert await world.published() == []

    async with world.poller() as poller:
        report = only(await poller.run_once())
    assert report.outcome is PollOutcome.OK and report.published == 10
    moved = await world.store.watermark.get(uid)
    assert moved is not None and (start is None or moved > start)
    assert len(versions(await world.published(), uid)) == 10


@SQLITE
async def test_a_spent_daily_quota_skips_the_organization_until_its_reset(world: World) -> None:
    uid, grant = await world.integration(limits={"daily": 6})
    times = days_ago(1, 10, timedelta(hours=1))
    # Each carries its buyer's tax number: no contact is read, the quota goes to lists
    # and details alone.
    await world.zoho.create_invoices(grant.organization_id, [
        invoice_spec(tax_reg_no="12345678903", created_time=t.isoformat(),
                     last_modified_time=t.isoformat())
        for t in times
    ])  # fmt: skip

    async with world.poller() as poller:
        first = only(await poller.run_once())
        assert first.outcome is PollOutcome.DAILY_LIMIT
        assert first.published == 4  # two lists (invoices, credit notes) + four details
        watermark = await world.store.watermark.get(uid)
        assert watermark is not None and watermark < times[-1]  # progress kept, not all
        limiter = poller.sessions.limiter(grant.organization_id)
        assert limiter.day_tz == ZoneInfo("Europe/Zagreb")  # the organization's zone
        blocked = limiter.daily_blocked_until
        assert blocked is not None and blocked > datetime.now(UTC)

        before = await world.zoho.counters()
        assert await poller.run_once() == []  # not due before the reset
        record = await world.store.integrations.get(uid)
        assert record is not None
        target = target_of(record)
        assert target is not None
        due = poller.schedule.next_due(target, datetime.now(UTC))
        assert abs(due - blocked) < timedelta(seconds=5)
        # Asked directly (as for another integration of the same organization), the
        # poller still leaves Zoho alone.
        direct = await poller.poll(target)
        assert direct.outcome is PollOutcome.DAILY_LIMIT and direct.api_calls == 0
        assert await world.zoho.counters() == before
    assert len(versions(await world.published(), uid)) == 4


@SQLITE
async def test_a_grant_without_the_settings_scope_still_polls(world: World) -> None:
    _, grant = await world.integration(limits=FAST, scopes=("ZohoBooks.invoices.READ",))
    await seed(world.zoho, grant, days_ago(1, 2))
    async with world.poller() as poller:
        report = only(await poller.run_once())
        assert report.outcome is PollOutcome.OK and report.published == 2
        # Its time zone stays unknown (the quota is assumed to reset at UTC midnight),
        # and is not asked for again at every poll.
        assert poller.sessions.limiter(grant.organization_id).day_tz == UTC
        await world.zoho.create_invoice(grant.organization_id)
        again = only(await poller.run_once())
        assert again.published == 1 and again.api_calls == 2


@SQLITE
async def test_a_refreshed_access_token_is_kept_in_the_store(world: World) -> None:
    uid, grant = await world.integration(limits=FAST)
    await seed(world.zoho, grant, days_ago(1, 2))
    stored = await world.store.tokens.get(uid)
    assert stored is not None
    refreshes = metric("fiscobridge_poller_token_refreshes_total")

    await world.zoho.expire_access_tokens(grant.user["email"])
    async with world.poller() as poller:
        assert only(await poller.run_once()).outcome is PollOutcome.OK
    fresh = await world.store.tokens.get(uid)
    assert fresh is not None
    assert fresh.refresh_token == stored.refresh_token
    assert fresh.access_token != stored.access_token
    assert fresh.access_expires_at is not None and fresh.access_expires_at > datetime.now(UTC)
    assert metric("fiscobridge_poller_token_refreshes_total") == refreshes + 1

    # Another instance (or this one restarted) uses the stored token: no refresh.
    newest = (await world.zoho.create_invoice(grant.organization_id))["invoice_id"]
    async with world.poller() as poller:
        assert only(await poller.run_once()).outcome is PollOutcome.OK
    assert metric("fiscobridge_poller_token_refreshes_total") == refreshes + 1
    assert newest in {invoice_id for invoice_id, _ in versions(await world.published(), uid)}


@SQLITE
@pytest.mark.parametrize("drain_seconds", [0.2, 30.0])
async def test_sigterm_drains_and_releases_the_lease(world: World, drain_seconds: float) -> None:
    # Slow answers: the 20 details take about two seconds, five at a time.
    uid, grant = await world.integration(limits={**FAST, "latency_seconds": 0.5})
    await seed(world.zoho, grant, days_ago(1, 20))
    start = await world.store.watermark.get(uid)  # the start chosen for the backfill
    stop = asyncio.Event()
    async with world.poller(drain=drain_seconds) as poller:
        running = asyncio.create_task(poller.run(stop))
        await wait_until(lambda: uid in poller.held)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(running, timeout=20)
        assert await world.store.lease.holder(uid) is None
        published = versions(await world.published(), uid)
        watermark = await world.store.watermark.get(uid)
        if drain_seconds < 1:  # cut off while fetching: nothing published, nothing moved
            assert (len(published), watermark) == (0, start)
        else:  # allowed to finish: everything published, then the watermark moved
            assert len(published) == 20 and watermark is not None
            assert start is None or watermark > start


@SQLITE
async def test_cost_of_polling_1000_changed_invoices(world: World) -> None:
    """Zoho API calls (asserted) and time (reported) of one poll of an organization
    with 1,000 changed invoices, under Zoho's 100 calls a minute scaled down 100x in
    both the sandbox and the poller: the call count does not depend on the scale."""
    scale = 100
    window = 60.0 / scale
    uid, grant = await world.integration(
        limits={"per_minute": 100, "window_seconds": window, "daily": 100_000}
    )
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    older = [base - timedelta(days=30, minutes=i) for i in range(50)]
    changed = [base + timedelta(seconds=i) for i in range(1000)]
    await seed(world.zoho, grant, older + changed)
    # The 50 older invoices were polled before: the watermark is an hour before the rest.
    await world.store.lease.acquire(uid, "setup", timedelta(seconds=5))
    assert await world.store.watermark.advance(uid, base - timedelta(hours=1), holder="setup")
    await world.store.lease.release(uid, "setup")
    await world.zoho.reset_usage(grant.organization_id)

    async with world.poller(zoho_per_minute=100, zoho_window=window) as poller:
        started = time.monotonic()
        report = only(await poller.run_once())
        elapsed = time.monotonic() - started
        refused = poller.sessions.limiter(grant.organization_id).throttled_count.get(44, 0)

    assert report.outcome is PollOutcome.OK and report.published == 1000
    # The organization once (its time zone), five full pages of 200 (the filter leaves
    # the older invoices out), one of credit notes, then one detail call per invoice and
    # one for their buyer's contact (they carry no tax number; one contact, read once).
    assert report.api_calls == 1 + 5 + 1 + 1000 + 1 + refused
    windows_waited = (report.api_calls - 1) // 100
    assert elapsed >= windows_waited * window  # the limit was honoured
    print(
        f"\npoll of 1000 changed invoices: {report.api_calls} Zoho API calls "
        f"({refused} refused with 44); {elapsed:.2f} s with a {window} s window "
        f"-> {windows_waited} full windows waited; at Zoho's 100/min about "
        f"{elapsed * scale / 60:.1f} min"
    )


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
