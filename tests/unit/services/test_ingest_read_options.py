"""ingest maps with the integration's read options and the buyer's contact, and records
accepted webhooks for the poller at most once per period (its HTTP surface, in process)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.zoho.errors import RateLimited
from connectors.zoho.webhook import signature_of
from schemas.events import InvoiceReceived
from services.ingest.app import create_app
from services.ingest.directory import WebhookDirectory, WebhookTarget
from services.ingest.settings import IngestSettings

SECRET = "s3cretS3cretS3cretS3cretS3cret12"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zoho"


def _fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class Harness:
    def __init__(self, options: Mapping[str, Any], contacts: Any = None) -> None:
        self.published: list[InvoiceReceived] = []
        self.seen: list[str] = []
        self.asked: list[str] = []

        async def load(uid: str) -> WebhookTarget | None:
            return WebhookTarget(uid, "active", SecretStr(SECRET), read_options=options,
                                 organization_id="20000000001")  # fmt: skip

        async def publish(key: bytes, value: bytes) -> None:
            self.published.append(InvoiceReceived.from_json(value))

        async def ready() -> dict[str, bool]:
            return {}

        async def webhook_seen(uid: str) -> None:
            self.seen.append(uid)

        async def read_contact(target: WebhookTarget, contact_id: str) -> Any:
            self.asked.append(contact_id)
            if isinstance(contacts, Exception):
                raise contacts
            return contacts

        app = create_app(IngestSettings(_env_file=None, webhook_seen=60),
                         WebhookDirectory(load, 60, 60), publish, ready,
                         contacts=read_contact, webhook_seen=webhook_seen)  # fmt: skip
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://i")

    async def post(self, invoice: Mapping[str, Any]) -> httpx.Response:
        body = json.dumps({"invoice": invoice}).encode()
        return await self.http.post(
            "/webhook/zoho/acme", content=body,
            headers={"X-Zoho-Webhook-Signature": signature_of(SECRET, body)},
        )


def _invoice_without_tax_number() -> dict[str, Any]:
    invoice = dict(_fixture("invoice_plain")["invoice"])
    return dict(invoice, customer_custom_field_hash={}, customer_custom_fields=[])


async def test_the_contact_is_read_when_the_invoice_carries_no_tax_number() -> None:
    contact = dict(_fixture("contact")["contact"], tax_reg_no="")
    ingest = Harness({"buyer_tax_field": "cf_oib", "default_payment_method": "card"}, contact)
    response = await ingest.post(_invoice_without_tax_number())
    assert response.status_code == 202, response.text
    [event] = ingest.published
    assert ingest.asked == [event.invoice.customer.source_id]
    assert (event.invoice.customer.tax_id, event.invoice.customer.tax_id_source) == (
        "12345678903", "contact.custom_field:cf_oib")
    assert event.invoice.payment_method.value == "card"  # the stored default

    # The invoice carries the field itself: no contact read.
    carried = dict(_invoice_without_tax_number(),
                   customer_custom_field_hash={"cf_oib": "11111111119"})  # fmt: skip
    assert (await ingest.post(carried)).status_code == 202
    assert len(ingest.asked) == 1
    assert ingest.published[-1].invoice.customer.tax_id == "11111111119"


async def test_a_contact_zoho_cannot_give_now_answers_503_and_publishes_nothing() -> None:
    refused = RateLimited(44, "too many requests", retry_at=datetime.now(UTC))
    ingest = Harness({}, refused)
    response = await ingest.post(_invoice_without_tax_number())
    assert response.status_code == 503 and response.json()["error"] == "zoho_unavailable"
    assert ingest.published == [] and ingest.seen == []


async def test_invalid_stored_options_answer_503_naming_them() -> None:
    ingest = Harness({"payment_modes": {"cash": "wire"}})
    response = await ingest.post(_invoice_without_tax_number())
    assert response.status_code == 503
    assert response.json()["error"] == "read_options_invalid"
    assert "payment mode 'cash'" in response.json()["detail"]
    assert ingest.published == []


async def test_accepted_webhooks_are_recorded_at_most_once_per_period() -> None:
    ingest = Harness({}, None)
    for _ in range(5):
        assert (await ingest.post(_invoice_without_tax_number())).status_code == 202
    for _ in range(3):  # the background write
        await asyncio.sleep(0)
    assert ingest.seen == ["acme"]
    assert len(ingest.published) == 5
