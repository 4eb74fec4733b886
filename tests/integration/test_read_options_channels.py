"""Both channels read an invoice alike: the integration's stored read options and the
buyer's contact, through the poller and through ingest, against the real Zoho sandbox
(its webhooks too), the real broker and the store; and ingest's accepted webhooks
stretch the poller's interval."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn

from runtime.ops import QuietServer
from runtime.settings import ZohoClientSettings
from schemas.events import Channel
from services.ingest.app import create_app
from services.ingest.directory import WebhookDirectory
from services.ingest.service import store_loader
from services.ingest.settings import IngestSettings
from services.ingest.zoho import ZohoContacts
from services.poller.outcome import PollOutcome
from tests.integration.test_poller_zoho import FAST, SQLITE, World, only, world  # noqa: F401

pytestmark = pytest.mark.kafka

CUSTOMER = "460000000044001"  # invoice_spec's customer_id


@asynccontextmanager
async def ingest_for(w: World) -> AsyncIterator[str]:
    """ingest on a real HTTP server, wired as services/ingest/service.py wires it."""
    settings = IngestSettings(_env_file=None)
    client = ZohoClientSettings(
        _env_file=None, client_id=w.client["client_id"],
        client_secret=w.client["client_secret"], accounts_servers=w.zoho.accounts_servers,
    )
    http = httpx.AsyncClient(timeout=10)

    async def publish(key: bytes, value: bytes) -> None:
        await w.producer.send_and_wait(w.received, value, key=key)

    async def ready() -> dict[str, bool]:
        return {}

    async def webhook_seen(uid: str) -> None:
        await w.store.integrations.webhook_seen(uid, datetime.now(UTC))

    contacts = ZohoContacts(w.store, http, settings, client)
    app = create_app(settings, WebhookDirectory(store_loader(w.store), 30, 5), publish, ready,
                     contacts=contacts, webhook_seen=webhook_seen)
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


@SQLITE
async def test_poll_and_webhook_map_one_invoice_alike_and_webhooks_stretch_polling(
    world: World,  # noqa: F811
) -> None:
    uid, grant = await world.integration(limits=FAST)
    quiet_uid, _ = await world.integration(limits=FAST)
    org = grant.organization_id
    # The OIB is only in the contact's custom field; the invoice carries neither it nor
    # a tax number, so both channels must read the contact.
    await world.zoho.put_contact(org, CUSTOMER, custom_fields={"cf_oib": "12345678903"},
                                 vat_reg_no="HR99999999994")  # fmt: skip
    await world.store.integrations.set_zoho_read_options(
        uid, {"buyer_tax_field": "cf_oib", "default_payment_method": "bank_transfer"}
    )
    secret = await world.store.integrations.webhook_secret(uid)

    async with ingest_for(world) as url:
        await world.zoho.set_webhook(org, f"{url}/webhook/zoho/{uid}", secret)
        created = await world.zoho.create_invoice(org)
        await world.zoho.drain_webhooks()
        mine = [d for d in await world.zoho.deliveries() if d["organization_id"] == org]
        assert [d["outcome"] for d in mine] == ["202"], mine

        record = await world.store.integrations.get(uid)
        assert record is not None and record.webhook_seen_at is not None
        async with world.poller() as poller:
            reports = {r.uid: r for r in await poller.run_once()}
            assert reports[uid].outcome is PollOutcome.OK and reports[uid].published == 1
            assert reports[uid].stretch == 2  # a webhook since the last interval
            assert reports[quiet_uid].stretch == 1
            # Webhooks keep arriving: the interval keeps doubling.
            await world.zoho.edit_invoice(org, created["invoice_id"], reference_number="R-1")
            await world.zoho.drain_webhooks()
            await asyncio.sleep(0.05)
            second = {r.uid: r for r in await poller.run_once()}
            assert second[uid].stretch == 4

    events = [e for e in await world.published() if e.integration_uid == uid]
    by_channel = {(e.channel, e.invoice.version): e.invoice for e in events}
    version = next(e.invoice.version for e in events if e.channel is Channel.POLL)
    polled = by_channel[(Channel.POLL, version)]
    hooked = by_channel[(Channel.WEBHOOK, version)]
    assert (polled.customer.tax_id, polled.customer.tax_id_source) == (
        "12345678903", "contact.custom_field:cf_oib")
    assert hooked.customer == polled.customer
    assert hooked.payment_method.value == polled.payment_method.value == "bank_transfer"
    assert hooked.model_dump() == polled.model_dump()


@SQLITE
async def test_invalid_stored_options_stop_both_channels_with_a_reason(
    world: World,  # noqa: F811
) -> None:
    uid, grant = await world.integration(limits=FAST)
    await world.store.integrations.set_zoho_read_options(uid, {"buyer_tax_field": "oib"})
    secret = await world.store.integrations.webhook_secret(uid)
    async with ingest_for(world) as url:
        await world.zoho.set_webhook(grant.organization_id, f"{url}/webhook/zoho/{uid}", secret,
                                     max_attempts=1)  # fmt: skip
        await world.zoho.create_invoice(grant.organization_id)
        await world.zoho.drain_webhooks()
        async with world.poller() as poller:
            report = only(await poller.run_once())
    assert report.outcome is PollOutcome.NOT_CONFIGURED
    assert report.error is not None and "buyer_tax_field" in report.error
    assert [e for e in await world.published() if e.integration_uid == uid] == []
    mine = [d for d in await world.zoho.deliveries()
            if d["organization_id"] == grant.organization_id]  # fmt: skip
    assert [d["outcome"] for d in mine] == ["503"]
    assert (await world.store.integrations.get(uid)).webhook_seen_at is None  # type: ignore[union-attr]
