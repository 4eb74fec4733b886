"""ingest's HTTP surface without a broker: what is not a webhook is answered in JSON
(`{"detail": ...}`, as the FastAPI app it was answered), the webhook route takes the
uid from the path."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from connectors.zoho.webhook import signature_of
from sandbox.load import zoho_invoice
from services.ingest.app import create_app
from services.ingest.directory import WebhookDirectory, WebhookTarget
from services.ingest.settings import IngestSettings

SECRET = "s3cretS3cretS3cretS3cretS3cret12"


@pytest.fixture
def published() -> list[bytes]:
    return []


@pytest.fixture
def http(published: list[bytes]) -> httpx.AsyncClient:
    async def load(uid: str) -> WebhookTarget | None:
        return WebhookTarget(uid, "active", SecretStr(SECRET)) if uid == "acme" else None

    async def publish(key: bytes, value: bytes) -> None:
        published.append(value)

    async def ready() -> dict[str, bool]:
        return {"kafka": True}

    app = create_app(IngestSettings(), WebhookDirectory(load, 60, 60), publish, ready)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://ingest")


async def test_a_signed_webhook_is_accepted_for_the_uid_in_its_path(
    http: httpx.AsyncClient, published: list[bytes]
) -> None:
    body = json.dumps(zoho_invoice(1)).encode()
    response = await http.post("/webhook/zoho/acme", content=body,
                               headers={"X-Zoho-Webhook-Signature": signature_of(SECRET, body)})

    assert response.status_code == 202, response.text
    assert set(response.json()) == {"event_id", "invoice_id"}
    (event,) = published
    assert json.loads(event)["integration_uid"] == "acme"


@pytest.mark.parametrize(
    ("method", "path", "status", "detail"),
    [
        ("GET", "/webhook/zoho/acme", 405, "Method Not Allowed"),
        ("POST", "/webhook/zoho/", 404, "Not Found"),
        ("GET", "/nowhere", 404, "Not Found"),
    ],
)
async def test_what_is_no_webhook_is_answered_in_json(
    http: httpx.AsyncClient, method: str, path: str, status: int, detail: str
) -> None:
    response = await http.request(method, path)

    assert response.status_code == status
    assert response.json() == {"detail": detail}


async def test_an_unknown_integration_is_a_json_404(http: httpx.AsyncClient) -> None:
    response = await http.post("/webhook/zoho/nobody", content=b"{}",
                               headers={"X-Zoho-Webhook-Signature": "x"})

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_integration"
