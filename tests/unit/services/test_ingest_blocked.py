"""ingest and a document the mapping refuses: a blocked status published, then 200; no
status when there is nothing to show (the old 400); a broker that does not ack, 503."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.zoho.webhook import signature_of
from schemas.events import InvoiceState, InvoiceStatus
from services.ingest.app import create_app
from services.ingest.directory import WebhookDirectory, WebhookTarget
from services.ingest.settings import IngestSettings

SECRET = "s3cretS3cretS3cretS3cretS3cret12"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zoho"
START = datetime(2026, 1, 1, tzinfo=UTC)


def body(**overrides: Any) -> bytes:
    """A webhook of a recorded invoice whose total does not add up."""
    document = json.loads((FIXTURES / "recorded_hr_total_mismatch.json").read_text())
    record = document.get("invoice", document)
    record.update(overrides)
    return json.dumps({"invoice": record}).encode()


class Broker:
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.status: list[tuple[bytes, bytes]] = []
        self.down = False

    async def publish(self, key: bytes, value: bytes) -> None:
        self.received.append(value)

    async def publish_status(self, key: bytes, value: bytes) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.status.append((key, value))


def client(broker: Broker, starts_at: datetime | None = START, *,
           statuses: bool = True, paid_only: bool = False) -> httpx.AsyncClient:
    async def load(uid: str) -> WebhookTarget | None:
        return WebhookTarget(uid, "active", SecretStr(SECRET), starts_at=starts_at,
                             paid_only=paid_only)

    async def ready() -> dict[str, bool]:
        return {}

    app = create_app(IngestSettings(_env_file=None), WebhookDirectory(load, 60, 60),
                     broker.publish, ready,
                     publish_status=broker.publish_status if statuses else None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest")


async def post(http: httpx.AsyncClient, content: bytes) -> httpx.Response:
    return await http.post("/webhook/zoho/acme", content=content,
                           headers={"X-Zoho-Webhook-Signature": signature_of(SECRET, content)})


async def test_a_document_that_does_not_add_up_is_published_blocked_and_answered_200() -> None:
    broker = Broker()
    response = await post(client(broker), body())
    assert response.status_code == 200, response.text
    assert broker.received == []
    ((key, value),) = broker.status
    status = InvoiceStatus.from_json(value)
    assert key == b"acme" and status.integration_uid == "acme"
    assert (status.state, status.reason_code) == (InvoiceState.BLOCKED, "total_mismatch")
    assert status.invoice.number == "RN-2026-0457"
    assert response.json() == {
        "event_id": status.event_id, "invoice_id": status.invoice.source_id,
        "state": "blocked", "reason_code": "total_mismatch", "message": status.message,
    }


async def test_no_ack_for_the_blocked_status_is_a_503_zoho_retries() -> None:
    broker = Broker()
    broker.down = True
    response = await post(client(broker), body())
    assert response.status_code == 503
    assert response.json()["error"] == "broker_unavailable"


@pytest.mark.parametrize(
    ("starts_at", "overrides", "statuses"),
    [
        (START, {"status": "draft"}, True),  # not issued: nothing to fiscalize yet
        (datetime(2027, 1, 1, tzinfo=UTC), {}, True),  # created before the start
        (None, {}, True),  # no start: its documents cannot be told from older ones
        (START, {"invoice_number": ""}, True),  # cannot be identified
        (START, {}, False),  # no status topic wired
    ],
)
async def test_nothing_to_show_is_refused_as_before(
    starts_at: datetime | None, overrides: dict[str, Any], statuses: bool
) -> None:
    broker = Broker()
    response = await post(client(broker, starts_at, statuses=statuses), body(**overrides))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed_payload"
    assert (broker.received, broker.status) == ([], [])


@pytest.mark.parametrize(("status", "answer"), [("sent", 400), ("paid", 200)])
async def test_an_integration_fiscalizing_paid_invoices_is_shown_blocks_once_due(
    status: str, answer: int
) -> None:
    broker = Broker()
    response = await post(client(broker, paid_only=True), body(status=status))
    assert response.status_code == answer, response.text
    assert len(broker.status) == (answer == 200)
