"""A Zoho invoice the mapping refuses is shown blocked with the mapping's reason, by poll
and by webhook, and clears once the corrected version maps — against the Zoho sandbox
(its webhooks too), the real broker and the store's projection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn

from runtime.ops import QuietServer
from runtime.settings import ZohoClientSettings
from runtime.store import Outcome
from schemas.events import (
    Channel,
    InvoiceReceived,
    InvoiceRef,
    InvoiceState,
    InvoiceStatus,
)
from services.ingest.app import create_app
from services.ingest.directory import WebhookDirectory
from services.ingest.service import store_loader
from services.ingest.settings import IngestSettings
from services.ingest.zoho import ZohoContacts
from services.poller.outcome import PollOutcome
from services.poller.poller import Poller
from tests.e2e.zoho_helpers import poller_settings, read_topic
from tests.fixtures.kafka import MakeTopic
from tests.integration.test_poller_zoho import FAST, SQLITE, World, only, world  # noqa: F401

pytestmark = pytest.mark.kafka

# Zoho's arithmetic, and the mapping's refusal of it: an entity discount before tax that
# exceeds the lines' total (invoice_spec's lines come to 10.09) cannot add up to a
# fiscal record; a USD invoice left at exchange rate 1 has no euro amounts.
TOO_MUCH_DISCOUNT: dict[str, Any] = {"discount": "50.00", "is_discount_before_tax": True}
NO_EXCHANGE_RATE: dict[str, Any] = {"currency_code": "USD", "exchange_rate": "1"}


@asynccontextmanager
async def poller_for(w: World, status_topic: str) -> AsyncIterator[Poller]:
    poller = Poller(w.store, w.producer, poller_settings(w.zoho, w.client),
                    received_topic=w.received, events_topic=w.events,
                    status_topic=status_topic)  # fmt: skip
    try:
        yield poller
    finally:
        await poller.drain()


@asynccontextmanager
async def ingest_for(w: World, status_topic: str) -> AsyncIterator[str]:
    """ingest on a real HTTP server, wired as services/ingest/service.py wires it."""
    settings = IngestSettings(_env_file=None)
    client = ZohoClientSettings(
        _env_file=None, client_id=w.client["client_id"],
        client_secret=w.client["client_secret"], accounts_servers=w.zoho.accounts_servers,
    )
    http = httpx.AsyncClient(timeout=10)

    async def publish(key: bytes, value: bytes) -> None:
        await w.producer.send_and_wait(w.received, value, key=key)

    async def publish_status(key: bytes, value: bytes) -> None:
        await w.producer.send_and_wait(status_topic, value, key=key)

    async def ready() -> dict[str, bool]:
        return {}

    app = create_app(settings, WebhookDirectory(store_loader(w.store), 30, 5), publish, ready,
                     contacts=ZohoContacts(w.store, http, settings, client),
                     publish_status=publish_status)  # fmt: skip
    server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                        lifespan="off"))  # fmt: skip
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        await http.aclose()


async def statuses(w: World, topic: str, uid: str) -> list[InvoiceStatus]:
    events: list[InvoiceStatus] = await read_topic(w.kafka, topic, InvoiceStatus)
    return [e for e in events if e.integration_uid == uid]


async def received(w: World, uid: str) -> list[InvoiceReceived]:
    return [e for e in await w.published() if e.integration_uid == uid]


def fiscalized(event: InvoiceReceived) -> InvoiceStatus:
    """The outcome the reporter publishes once CIS answers with a JIR (its fields)."""
    return InvoiceStatus(
        integration_uid=event.integration_uid, invoice=InvoiceRef.of(event.invoice),
        state=InvoiceState.FISCALIZED, reason_code="ok", message="Fiscalized.",
        receipt_id="jir-1", protection_code="a" * 32, message_id="m-1", attempt=1,
        fiscal_number="1/POSL1/1",
    )


async def assert_clears_and_never_comes_back(
    w: World, uid: str, blocked: InvoiceStatus, corrected: InvoiceReceived
) -> None:
    """The corrected version's fiscalized outcome replaces the block; the block of the
    older version arriving again later (a late webhook, a replay) does not return."""
    assert corrected.invoice.source_id == blocked.invoice.source_id
    assert corrected.invoice.version > blocked.invoice.version
    assert await w.store.apply([fiscalized(corrected)]) == {Outcome.APPLIED: 1}
    late = blocked.model_copy(update={"event_id": "late-" + blocked.event_id,
                                      "occurred_at": datetime.now(UTC) + timedelta(minutes=1)})
    assert await w.store.apply([late]) == {Outcome.STALE: 1}
    row = await w.store.journal.get(uid, blocked.invoice.source_id)
    assert row is not None
    assert (row.state, row.source_version, row.receipt_id) == (
        InvoiceState.FISCALIZED, corrected.invoice.version, "jir-1")
    steps = [h.state for h in await w.store.journal.history(uid, blocked.invoice.source_id)]
    assert steps.count(InvoiceState.BLOCKED) == 2 and InvoiceState.FISCALIZED in steps


@SQLITE
async def test_a_polled_invoice_that_cannot_add_up_is_blocked_until_corrected(
    world: World, make_topic: MakeTopic  # noqa: F811
) -> None:
    uid, grant = await world.integration(limits=FAST)
    org = grant.organization_id
    status_topic = await make_topic(partitions=3)
    bad = await world.zoho.create_invoice(org, **TOO_MUCH_DISCOUNT)

    async with poller_for(world, status_topic) as poller:
        first = only(await poller.run_once())
        assert (first.outcome, first.published, first.rejected, first.blocked) == (
            PollOutcome.OK, 0, 1, 1), first
        (blocked,) = await statuses(world, status_topic, uid)
        assert (blocked.state, blocked.reason_code) == (InvoiceState.BLOCKED, "invalid_amount")
        assert blocked.invoice.source_id == bad["invoice_id"]
        assert blocked.invoice.number == bad["invoice_number"]
        assert blocked.invoice.total == Decimal("-48.94")  # Zoho's own total, in euros; not mapped
        assert await world.store.apply([blocked]) == {Outcome.APPLIED: 1}
        row = await world.store.journal.get(uid, bad["invoice_id"])
        assert row is not None
        assert (row.state, row.reason_code, row.invoice_number) == (
            InvoiceState.BLOCKED, "invalid_amount", bad["invoice_number"])
        assert "exceeds its lines' total" in row.message and "Correct the invoice" in row.message

        # Nothing more until it changes: the blocked version is not published again.
        again = only(await poller.run_once())
        assert (again.published, again.blocked) == (0, 0), again

        await asyncio.sleep(1.1)  # Zoho stamps whole seconds
        await world.zoho.edit_invoice(org, bad["invoice_id"], discount="1.00")
        fixed = only(await poller.run_once())
        assert (fixed.published, fixed.blocked) == (1, 0), fixed

    assert len(await statuses(world, status_topic, uid)) == 1
    (corrected,) = await received(world, uid)
    assert corrected.channel is Channel.POLL
    await assert_clears_and_never_comes_back(world, uid, blocked, corrected)


@SQLITE
async def test_a_webhook_invoice_that_cannot_add_up_is_blocked_and_answered_200(
    world: World, make_topic: MakeTopic  # noqa: F811
) -> None:
    uid, grant = await world.integration(limits=FAST)
    org = grant.organization_id
    status_topic = await make_topic(partitions=3)
    secret = await world.store.integrations.webhook_secret(uid)

    async with ingest_for(world, status_topic) as url:
        await world.zoho.set_webhook(org, f"{url}/webhook/zoho/{uid}", secret)
        bad = await world.zoho.create_invoice(org, **NO_EXCHANGE_RATE)
        await world.zoho.drain_webhooks()
        mine = [d for d in await world.zoho.deliveries() if d["organization_id"] == org]
        # Answered 2xx: Zoho does not retry a document retrying cannot fix.
        assert [d["outcome"] for d in mine] == ["200"], mine
        assert await received(world, uid) == []
        (blocked,) = await statuses(world, status_topic, uid)
        assert (blocked.state, blocked.reason_code) == (
            InvoiceState.BLOCKED, "exchange_rate_missing")
        assert blocked.invoice.source_id == bad["invoice_id"]
        assert blocked.invoice.total is None  # no honest euro amount for a USD invoice
        assert await world.store.apply([blocked]) == {Outcome.APPLIED: 1}
        row = await world.store.journal.get(uid, bad["invoice_id"])
        assert row is not None
        assert (row.state, row.reason_code, row.total) == (
            InvoiceState.BLOCKED, "exchange_rate_missing", None)
        assert "set the invoice's exchange rate in Zoho Books" in row.message

        await asyncio.sleep(1.1)
        await world.zoho.edit_invoice(org, bad["invoice_id"], exchange_rate="0.9")
        await world.zoho.drain_webhooks()
        mine = [d for d in await world.zoho.deliveries() if d["organization_id"] == org]
        assert [d["outcome"] for d in mine] == ["200", "202"], mine

    (corrected,) = await received(world, uid)
    assert corrected.channel is Channel.WEBHOOK
    await assert_clears_and_never_comes_back(world, uid, blocked, corrected)
