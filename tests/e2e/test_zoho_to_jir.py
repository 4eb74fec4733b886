"""Zoho Books in, JIR out: invoices created in the Zoho sandbox reach `fiscalized` through
a running `fiscobridge run poller` (webhooks off), and with webhooks on the poller's
repeats of what the webhooks delivered change nothing. Counted in the CIS sandbox's
ledger, the statuses on the topic and the store."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.oauth import AccessTokenProvider
from connectors.zoho.ratelimit import RateLimiter
from fiscobridge.provision import DemoIntegration, demo_integration
from fiscobridge.stack import free_port, port_variable
from runtime.kafka.clients import producer as make_producer
from runtime.settings import KafkaSettings
from runtime.store import IntegrationStatus, OrganizationTaken
from runtime.store.rebuild import publish_and_apply
from runtime.supervisor import Child
from sandbox.load import StatusWatcher
from schemas.events import (
    Channel,
    IntegrationEvent,
    IntegrationEventKind,
    InvoiceReceived,
    InvoiceState,
    InvoiceStatus,
)
from schemas.invoice import DocumentKind
from schemas.topics import INVOICES_RECEIVED
from tests.e2e.conftest import TRIAL_LIMIT, Pipeline, cli
from tests.e2e.zoho_helpers import (
    ZohoGrant,
    poller_env,
    read_topic,
    store_connection,
    zoho_grant,
)
from tests.fixtures.zoho import ZohoSandboxHandle, invoice_spec

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

ZAGREB = ZoneInfo("Europe/Zagreb")
INVOICES = 25
HISTORY = 12


@dataclass
class ZohoPipeline:
    pipeline: Pipeline
    zoho: ZohoSandboxHandle
    client: dict[str, Any]

    async def integration(
        self, grant: ZohoGrant | None = None, *, tier: str = "scale",
        account: str = "zoho@fiscobridge.example",
    ) -> tuple[DemoIntegration, ZohoGrant]:
        """A Zoho-connected integration with a sandbox certificate, made active."""
        grant = grant or await zoho_grant(self.zoho, self.client)

        async def connect(uid: str) -> None:
            await store_connection(self.pipeline.store, uid, grant)

        made = await demo_integration(
            self.pipeline.store, self.pipeline.kafka, self.pipeline.stack.home / "sandbox-ca",
            tier=tier, account=account, connect=connect,
        )
        # The customer maps the fiscal data onto the invoice and the credit note custom
        # fields of the organization, as the portal's settings do.
        books = self.books(grant)
        fields = {f["api_name"]: f["customfield_id"] for f in await books.invoice_custom_fields()}
        notes = {f["api_name"]: f["customfield_id"]
                 for f in await books.credit_note_custom_fields()}
        roles = (("fiscal_number", "cf_fiskalni_broj"), ("zki", "cf_zki"), ("jir", "cf_jir"),
                 ("qr_url", "cf_qr_url"))
        await self.pipeline.store.integrations.set_writeback_fields(made.uid, {
            **{role: fields[api] for role, api in roles},
            **{f"creditnote.{role}": notes[api] for role, api in roles},
        })
        return made, grant

    def books(self, grant: ZohoGrant) -> ZohoBooksClient:
        provider = AccessTokenProvider(self.zoho.oauth(self.client), grant.tokens,
                                       grant.accounts_server)
        return ZohoBooksClient(self.zoho.http, grant.tokens.api_domain, grant.organization_id,
                               provider, RateLimiter(per_minute=100_000))

    async def written_back(
        self, grant: ZohoGrant, statuses: list[InvoiceStatus], timeout: float = 60.0
    ) -> None:
        """Each fiscalized invoice carries its fiscal number, ZKI, JIR and QR URL in the
        sandbox (its admin view of what was written onto the invoice), and each credit
        note its storno's, in the credit note's own fields."""
        deadline = time.monotonic() + timeout
        for status in statuses:
            jir = status.receipt_id
            assert jir and status.fiscal_number and status.protection_code
            assert status.invoice.issued_at is not None and status.invoice.total is not None
            datv = status.invoice.issued_at.astimezone(ZAGREB).strftime("%Y%m%d_%H%M")
            cents = int(status.invoice.total * 100)
            expected = {
                "cf_fiskalni_broj": status.fiscal_number, "cf_zki": status.protection_code,
                "cf_jir": jir,
                "cf_qr_url": f"https://porezna.gov.hr/rn?jir={jir}&datv={datv}&izn={cents}",
            }
            while True:
                if status.invoice.kind is DocumentKind.CREDIT_NOTE:
                    shown = await self.zoho.show_credit_note(grant.organization_id,
                                                             status.invoice.source_id)
                else:
                    shown = await self.zoho.show_invoice(grant.organization_id,
                                                         status.invoice.source_id)
                if shown["written_back"] == expected:
                    break
                assert time.monotonic() < deadline, (status.invoice.source_id, shown)
                await asyncio.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def zoho_pipeline(
    pipeline: Pipeline, zoho_sandbox: ZohoSandboxHandle
) -> AsyncIterator[ZohoPipeline]:
    """The module's pipeline plus a poller process, configured as an operator would."""
    stack = pipeline.stack
    client = await zoho_sandbox.oauth_client()
    stack.ports["poller"] = free_port()
    env = {
        **stack.env,
        port_variable("poller"): str(stack.ports["poller"]),
        "FISCOBRIDGE_POLLER_INTERVAL_SCALE": "1",
        "FISCOBRIDGE_POLLER_INTERVAL_TRIAL": "1",
        # Polls every second to keep the test short; budgets are tested in integration.
        "FISCOBRIDGE_POLLER_ZOHO_BUDGET": "false",
        "FISCOBRIDGE_POLLER_TICK": "0.2",
        **poller_env(zoho_sandbox, client),
    }
    poller = Child(
        "poller", [sys.executable, "-m", "fiscobridge", "run", "poller"], env,
        stack.home / "logs" / "poller.log",
    )
    await poller.start()
    stack.children["poller"] = poller  # stopped (SIGTERM) with the rest of the stack
    await stack.wait_ready("poller")
    # The stack's write-back stage knows no Zoho client: this one talks to the sandbox,
    # configured as the poller is.
    stack.kill("writeback", signal.SIGTERM)
    assert await stack.wait_exit("writeback") == 0
    writeback = Child(
        "writeback", [sys.executable, "-m", "fiscobridge", "run", "writeback"],
        {**stack.env, port_variable("writeback"): str(stack.ports["writeback"]),
         **poller_env(zoho_sandbox, client)},
        stack.home / "logs" / "writeback.log",
    )
    await writeback.start()
    stack.children["writeback"] = writeback
    await stack.wait_ready("writeback")
    yield ZohoPipeline(pipeline, zoho_sandbox, client)


@asynccontextmanager
async def producer_of(kafka: KafkaSettings) -> AsyncIterator[Any]:
    producer = make_producer(kafka)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def fiscalized(statuses: list[InvoiceStatus], uid: str) -> Counter[str]:
    return Counter(
        s.invoice.source_id
        for s in statuses
        if s.integration_uid == uid and s.state is InvoiceState.FISCALIZED
    )


def duplicates(statuses: list[InvoiceStatus], uid: str) -> list[InvoiceStatus]:
    return [s for s in statuses if s.integration_uid == uid and s.state is InvoiceState.DUPLICATE]


async def where_stuck(pipeline: Pipeline, watcher: StatusWatcher, uid: str,
                      missing: set[str]) -> str:
    """For a failed wait: how far the missing invoices got (delivered to the fiscalizer,
    the statuses seen) and the last lines the services logged about the integration."""
    received = Counter(
        e.invoice.source_id for e in await read_topic(
            pipeline.kafka, INVOICES_RECEIVED.name, InvoiceReceived, skip_unreadable=True)
        if e.integration_uid == uid and e.invoice.source_id in missing)
    states = Counter((s.invoice.source_id, s.state.value) for s in watcher.outcomes.all
                     if s.integration_uid == uid and s.invoice.source_id in missing)
    lines = [f"{len(missing)} missing; delivered {dict(received)}; statuses {dict(states)}"]
    for name in ("poller", "fiscalizer", "reporter"):
        log = pipeline.stack.home / "logs" / f"{name}.log"
        if log.exists():
            about = [line for line in log.read_text(errors="replace").splitlines()
                     if uid in line or "ERROR" in line or "Traceback" in line]
            lines += [f"--- {name}.log", *about[-15:]]
    return "\n".join(lines)


async def until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def test_invoices_created_in_zoho_are_fiscalized_through_the_poller(
    zoho_pipeline: ZohoPipeline,
) -> None:
    zp = zoho_pipeline
    made, grant = await zp.integration()
    watcher = StatusWatcher(zp.pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        # Webhooks off: Zoho tells nobody; only polling finds these.
        created = [
            await zp.zoho.create_invoice(grant.organization_id, customer_name=f"Kupac {n}")
            for n in range(INVOICES)
        ]
        keys = {(made.uid, c["invoice_id"]) for c in created}
        assert await watcher.wait_for(keys, timeout=120) == set()

        # Paid after fiscalization: the poller delivers the edit, nothing is reported again.
        first = created[0]["invoice_id"]
        await zp.zoho.edit_invoice(grant.organization_id, first, status="paid")
        await until(lambda: [d for d in duplicates(watcher.outcomes.all, made.uid)
                             if d.invoice.source_id == first], timeout=30)
        # The customer changed after fiscalization: the portal's history says so.
        second = created[1]["invoice_id"]
        await zp.zoho.edit_invoice(grant.organization_id, second, customer_name="Kupac novi")
        await until(lambda: [d for d in duplicates(watcher.outcomes.all, made.uid)
                             if d.invoice.source_id == second
                             and d.invoice.customer == "Kupac novi"], timeout=30)
        await asyncio.sleep(2)  # let any second fiscalization show itself
    finally:
        await watcher.stop()

    counts = fiscalized(watcher.outcomes.all, made.uid)
    assert set(counts) == {c["invoice_id"] for c in created}
    assert set(counts.values()) == {1}
    # Edits after fiscalization (the payment; each write-back is an edit in Zoho too, which
    # the poller delivers) are duplicates: never fiscalized again.
    edits = duplicates(watcher.outcomes.all, made.uid)
    assert first in {e.invoice.source_id for e in edits}
    # (A write-back's edit can come back before the fiscalizer applied the invoice's
    # fiscalized status: then it is a duplicate of the signed invoice.)
    assert {e.reason_code for e in edits} <= {"already_fiscalized", "already_signed"}
    assert all(s.receipt_id for s in watcher.outcomes.all
               if s.integration_uid == made.uid and s.state is InvoiceState.FISCALIZED)

    ledger = await zp.pipeline.ledger({made.oib})
    numbers = [entry["br_ozn_rac"] for entry in ledger]
    assert len(numbers) == INVOICES and len(set(numbers)) == INVOICES
    store = zp.pipeline.store
    for _ in range(100):
        journal = await store.journal.counts(made.uid)
        if journal.get(InvoiceState.FISCALIZED) == INVOICES:
            break
        await asyncio.sleep(0.1)
    assert journal.get(InvoiceState.FISCALIZED) == INVOICES
    assert await store.watermark.get(made.uid) is not None
    # ... and each invoice in Zoho carries its fiscal number, ZKI, JIR and QR URL.
    await zp.written_back(grant, [s for s in watcher.outcomes.all if s.integration_uid == made.uid
                                  and s.state is InvoiceState.FISCALIZED])
    outcome = await store.writebacks.get(made.uid, first)
    assert outcome is not None and outcome.state == "written_back"
    # The portal's history of the paid invoice: received, signed, fiscalized, then its
    # later deliveries; neither the payment nor the write-back's own edits change what the
    # fiscal record states, so none is an edit after fiscalization.
    for _ in range(100):
        steps = [h.state.value for h in await store.journal.history(made.uid, first)]
        if "received" in steps and "duplicate" in steps:
            break
        await asyncio.sleep(0.1)
    assert steps[0] == "received", steps
    assert steps.index("signed") < steps.index("fiscalized") < steps.index("duplicate"), steps
    assert "edited" not in steps, steps
    for _ in range(100):
        history = await store.journal.history(made.uid, second)
        if any(h.state.value == "edited" for h in history):
            break
        await asyncio.sleep(0.1)
    # Every later delivery of the changed invoice (a write-back's edit too) says so.
    edited = [h.message for h in history if h.state.value == "edited"]
    assert edited and all("customer Kupac 1 -> Kupac novi" in m for m in edited), edited


async def test_with_webhooks_on_the_pollers_repeats_are_no_ops(
    zoho_pipeline: ZohoPipeline,
) -> None:
    zp = zoho_pipeline
    made, grant = await zp.integration()
    await zp.zoho.set_webhook(
        grant.organization_id,
        f"{zp.pipeline.stack.ingest_url}/webhook/zoho/{made.uid}",
        made.webhook_secret,
    )
    watcher = StatusWatcher(zp.pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        created = await zp.zoho.create_invoices(
            grant.organization_id,
            [{"customer_name": f"Kupac {n}", "status": "sent",
              "line_items": [{"name": "Kava", "rate": "2.50", "quantity": str(n + 1),
                              "tax_percentage": "25"}]}
             for n in range(INVOICES)],
        )
        keys = {(made.uid, c["invoice_id"]) for c in created}
        assert await watcher.wait_for(keys, timeout=120) == set()
        # Every invoice arrives by webhook and by poll (in either order), and the poll
        # may see it once more after the write-back edited it in Zoho: each later
        # delivery is reported a duplicate and goes no further.
        await until(lambda: {s.invoice.source_id for s in duplicates(watcher.outcomes.all,
                                                                      made.uid)}
                    >= {k[1] for k in keys}, 90)
        await asyncio.sleep(2)
    finally:
        await watcher.stop()

    deliveries = [d for d in await zp.zoho.deliveries()
                  if d["organization_id"] == grant.organization_id]
    assert sorted(d["invoice_id"] for d in deliveries) == sorted(k[1] for k in keys)
    assert {d["outcome"] for d in deliveries} == {"202"}

    counts = fiscalized(watcher.outcomes.all, made.uid)
    assert set(counts) == {k[1] for k in keys} and set(counts.values()) == {1}
    # What reached the fiscalizer: one webhook per invoice, and at most two polls (the
    # invoice as created, and once more after the write-back edited it).
    received = [e for e in await read_topic(zp.pipeline.kafka, INVOICES_RECEIVED.name,
                                            InvoiceReceived, skip_unreadable=True)
                if e.integration_uid == made.uid]
    by_channel = {channel: Counter(e.invoice.source_id for e in received
                                   if e.channel is channel) for channel in Channel}
    assert by_channel[Channel.WEBHOOK] == Counter({k[1]: 1 for k in keys})
    assert set(by_channel[Channel.POLL]) == {k[1] for k in keys}
    assert set(by_channel[Channel.POLL].values()) <= {1, 2}, by_channel[Channel.POLL]
    # Each invoice's later deliveries went no further: reported duplicates (a delivery
    # that comes while the invoice is still being fiscalized is held and judged with its
    # outcome instead, and a fiscalizer reading a delivery again reports it once more,
    # so their number is not fixed).
    repeats = Counter(s.invoice.source_id for s in duplicates(watcher.outcomes.all, made.uid))
    assert set(repeats) == {k[1] for k in keys}
    ledger = await zp.pipeline.ledger({made.oib})
    numbers = [entry["br_ozn_rac"] for entry in ledger]
    assert len(numbers) == INVOICES and len(set(numbers)) == INVOICES


async def test_one_organization_is_fiscalized_by_one_integration_from_its_start(
    zoho_pipeline: ZohoPipeline,
) -> None:
    """The double fiscalization, replayed: an organization with a history, fiscalized by
    integration A (started early enough to take that history). A second integration for
    another OIB cannot connect the organization while A holds it. Once A is removed it
    can, and its polls and webhooks fiscalize only what was created after its start: the
    history is never reported again. The CIS sandbox's ledger is the witness."""
    zp = zoho_pipeline
    store = zp.pipeline.store
    grant = await zoho_grant(zp.zoho, zp.client)
    org = grant.organization_id
    month_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    history = await zp.zoho.create_invoices(org, [
        invoice_spec(customer_name=f"Stari kupac {n}", created_time=month_ago.isoformat(),
                     last_modified_time=month_ago.isoformat()) for n in range(HISTORY)
    ])
    old_ids = {h["invoice_id"] for h in history}
    watcher = StatusWatcher(zp.pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        first, _ = await zp.integration(grant=grant)
        now = datetime.now(UTC)
        await store.integrations.choose_start(first.uid, month_ago - timedelta(days=1), now=now)
        missing = await watcher.wait_for({(first.uid, i) for i in old_ids}, timeout=120)
        assert not missing, await where_stuck(zp.pipeline, watcher, first.uid,
                                              {i for _, i in missing})

        tried: list[str] = []

        async def connect(uid: str) -> None:
            tried.append(uid)
            await store_connection(store, uid, grant)

        with pytest.raises(OrganizationTaken) as taken:
            await demo_integration(store, zp.pipeline.kafka,
                                   zp.pipeline.stack.home / "sandbox-ca", tier="scale",
                                   account="rival@fiscobridge.example", connect=connect)
        assert taken.value.holder.uid == first.uid
        [second_uid] = tried
        second = await store.integrations.get(second_uid)
        assert second is not None and second.status is IntegrationStatus.PENDING

        async with producer_of(zp.pipeline.kafka) as producer:
            await publish_and_apply(producer, store, IntegrationEvent(
                integration_uid=first.uid, kind=IntegrationEventKind.REMOVED))
            await store_connection(store, second_uid, grant)
            await publish_and_apply(producer, store, IntegrationEvent(
                integration_uid=second_uid, kind=IntegrationEventKind.CONNECTED))
        # Webhooks now reach the second integration; an old invoice edited after its
        # start arrives that way and by poll, and is still not its to fiscalize.
        await zp.zoho.set_webhook(
            org, f"{zp.pipeline.stack.ingest_url}/webhook/zoho/{second_uid}",
            await store.integrations.webhook_secret(second_uid),
        )
        edited = sorted(old_ids)[0]
        await asyncio.sleep(1.1)  # Zoho stamps whole seconds: the new one is after the start
        await zp.zoho.edit_invoice(org, edited, status="paid")
        new = (await zp.zoho.create_invoice(org, customer_name="Novi kupac"))["invoice_id"]
        assert await watcher.wait_for({(second_uid, new), (second_uid, edited)},
                                      timeout=120) == set()
        await asyncio.sleep(3)  # two more polls: let any backfill show itself
    finally:
        await watcher.stop()

    mine = [s for s in watcher.outcomes.all if s.integration_uid == second_uid]
    assert {s.invoice.source_id for s in mine} <= {new, edited}
    assert {s.invoice.source_id for s in mine if s.state is InvoiceState.FISCALIZED} == {new}
    skipped = [s for s in mine if s.invoice.source_id == edited]
    assert skipped and {(s.state, s.reason_code) for s in skipped} == {
        (InvoiceState.SKIPPED, "before_start")}
    ledger = await zp.pipeline.ledger({first.oib, second.fiscal_settings["oib"]})
    reported = Counter(entry["oib"] for entry in ledger)
    assert reported == {first.oib: HISTORY, second.fiscal_settings["oib"]: 1}


async def test_invoices_past_the_plans_limit_are_fiscalized_once_the_plan_allows_them(
    zoho_pipeline: ZohoPipeline,
) -> None:
    """Issued invoices refused before they were signed for a cause on FiscoBridge's side
    (past the trial's monthly limit) were still issued: once the operator raises the plan
    (`fiscobridge accounts set-tier`), each is read again from Zoho, where nothing changed
    about it, and fiscalized once. The poller polls a growth integration every 5 minutes
    but reads them within its refetch gap (runtime/store/refetch.py). The CIS sandbox's
    ledger is the witness: every invoice once, numbers 1.. without a gap."""
    zp = zoho_pipeline
    store = zp.pipeline.store
    account = "trial-zoho@fiscobridge.example"
    made, grant = await zp.integration(tier="trial", account=account)
    watcher = StatusWatcher(zp.pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        await asyncio.sleep(1.1)  # Zoho stamps whole seconds: created after the start
        created = [(await zp.zoho.create_invoice(grant.organization_id,
                                                 customer_name=f"Kupac {n}"))["invoice_id"]
                   for n in range(TRIAL_LIMIT + 2)]
        keys = {(made.uid, i) for i in created}
        missing = await watcher.wait_for(keys, timeout=120)
        assert not missing, await where_stuck(zp.pipeline, watcher, made.uid,
                                              {i for _, i in missing})
        blocked = {i for (uid, i), (status, _) in watcher.outcomes.final.items()
                   if uid == made.uid and status.state is InvoiceState.BLOCKED}
        assert len(blocked) == 2 and len(fiscalized(watcher.outcomes.all, made.uid)) == \
            TRIAL_LIMIT
        assert {s.reason_code for s in watcher.outcomes.all if s.integration_uid == made.uid
                and s.state is InvoiceState.BLOCKED} == {"license_limit"}

        async def journal_shows_them_blocked() -> bool:
            rows = [await store.journal.get(made.uid, i) for i in blocked]
            return all(r is not None and r.state is InvoiceState.BLOCKED for r in rows)

        deadline = time.monotonic() + 30
        while not await journal_shows_them_blocked():
            assert time.monotonic() < deadline, "the journal never showed the blocks"
            await asyncio.sleep(0.2)
        output = await cli(zp.pipeline, "accounts", "set-tier", "--account", account,
                           "--tier", "growth", "--reason", "e2e")
        assert "Trial" in output and "Growth" in output, output
        await until(lambda: set(fiscalized(watcher.outcomes.all, made.uid)) == set(created),
                    timeout=120)
        await asyncio.sleep(3)  # let a second reading of them show itself
    finally:
        await watcher.stop()
    assert set(fiscalized(watcher.outcomes.all, made.uid).values()) == {1}
    ledger = await zp.pipeline.ledger({made.oib})
    assert len(ledger) == TRIAL_LIMIT + 2
    numbers = sorted(int(str(e["invoice_number"]).split("/")[0]) for e in ledger)
    assert numbers == list(range(1, TRIAL_LIMIT + 3))
    # The two were issued when first seen, not when let through: subsequent deliveries.
    assert sum(bool(e["nak_dost"]) for e in ledger) == 2
    assert await store.refetch.requested() == {}


async def test_every_shape_zoho_sends_is_fiscalized_with_zohos_own_total(
    zoho_pipeline: ZohoPipeline,
) -> None:
    """A tax-inclusive invoice, one with a 10 % discount before tax, one in USD and a
    credit note for the discounted one, created in the Zoho sandbox and found by the
    poller, reach CIS with Zoho's totals: in EUR (the USD one from its bcy_total) and
    negative for the credit note (a storno)."""
    zp = zoho_pipeline
    made, grant = await zp.integration()
    org = grant.organization_id
    lines = [
        {"name": "Pizza", "rate": "12.50", "quantity": "2", "tax_percentage": "25"},
        {"name": "Sok", "rate": "3.20", "quantity": "3", "tax_percentage": "13"},
    ]
    watcher = StatusWatcher(zp.pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        inclusive = await zp.zoho.create_invoice(org, line_items=lines, is_inclusive_tax=True)
        discounted = await zp.zoho.create_invoice(
            org, line_items=lines, discount="10%", is_discount_before_tax=True
        )
        usd = await zp.zoho.create_invoice(
            org, line_items=lines, currency_code="USD", exchange_rate="0.92"
        )
        note = await zp.zoho.create_credit_note(
            org,
            line_items=lines[:1],
            invoices_credited=[{"invoice_id": discounted["invoice_id"], "amount": "31.25"}],
        )
        keys = {(made.uid, d["invoice_id"]) for d in (inclusive, discounted, usd)}
        keys.add((made.uid, note["creditnote_id"]))
        assert await watcher.wait_for(keys, timeout=120) == set()
    finally:
        await watcher.stop()

    counts = fiscalized(watcher.outcomes.all, made.uid)
    assert set(counts) == {k[1] for k in keys}, [
        (s.invoice.number, s.state, s.reason_code) for s in watcher.outcomes.all
        if s.integration_uid == made.uid
    ]
    # Zoho's own figures: 34.60 gross with VAT inside; 34.60 less 3.46 plus 6.75 VAT;
    # 42.10 USD at 0.92; 25.00 plus 6.25 VAT credited.
    totals = (inclusive["total"], discounted["total"], usd["bcy_total"], note["total"])
    assert totals == (34.6, 37.89, 38.73, 31.25)
    ledger = await zp.pipeline.ledger({made.oib})
    assert sorted(str(entry["total"]) for entry in ledger) == sorted(
        ["34.60", "37.89", "38.73", "-31.25"]
    )
    # Each carries its fiscal data in Zoho: the credit note its storno's (izn negative).
    done = [s for s in watcher.outcomes.all
            if s.integration_uid == made.uid and s.state is InvoiceState.FISCALIZED]
    assert [s.invoice.total for s in done if s.invoice.kind is DocumentKind.CREDIT_NOTE] == [
        Decimal("-31.25")]
    await zp.written_back(grant, done)
    outcome = await zp.pipeline.store.writebacks.get(made.uid, note["creditnote_id"])
    assert outcome is not None and outcome.state == "written_back"

    # Voided in Zoho after it was fiscalized: its storno is fiscalized as a new invoice,
    # under a number of its own with the total negated, and commented onto the invoice.
    voided = inclusive["invoice_id"]
    watcher = StatusWatcher(zp.pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        await zp.zoho.edit_invoice(org, voided, status="void")
        assert await watcher.wait_for({(made.uid, f"{voided}:storno")}, timeout=120) == set()
    finally:
        await watcher.stop()
    [storno] = [s for s in watcher.outcomes.all if s.integration_uid == made.uid
                and s.invoice.source_id == f"{voided}:storno"
                and s.state is InvoiceState.FISCALIZED]
    assert storno.invoice.total == Decimal("-34.60") and storno.receipt_id
    assert storno.fiscal_number is not None
    after = await zp.pipeline.ledger({made.oib})
    assert sorted(str(entry["total"]) for entry in after) == sorted(
        ["34.60", "37.89", "38.73", "-31.25", "-34.60"]
    )
    numbers = [str(entry["br_ozn_rac"]) for entry in after]
    assert len(set(numbers)) == 5 and storno.fiscal_number.split("/")[0] not in [
        str(entry["br_ozn_rac"]) for entry in ledger]
    wanted = (f"{storno.fiscal_number}", f"JIR: {storno.receipt_id}", "izn=-3460")
    deadline = time.monotonic() + 60
    while True:
        comments = (await zp.zoho.show_invoice(org, voided))["comments"]
        texts = [str(c.get("description")) for c in comments]
        if any(all(w in t for w in wanted) for t in texts):
            break
        assert time.monotonic() < deadline, texts
        await asyncio.sleep(0.2)
    assert len(texts) == 1, texts  # added once
