"""ingest on a real HTTP server, a real broker and the store: 202 only after the ack,
503 (and nothing published) when the broker is gone, secrets read once per TTL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from connectors.zoho.webhook import signature_of
from runtime.kafka.admin import ensure_topics
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.kafka.clients import producer as make_producer
from runtime.kafka.local import LocalKafka
from runtime.ops import QuietServer
from runtime.settings import KafkaSettings
from sandbox.load import zoho_invoice
from schemas.events import Channel, InvoiceReceived
from schemas.topics import INVOICES_RECEIVED, registry
from services.ingest.app import create_app
from services.ingest.directory import WebhookDirectory, WebhookTarget
from services.ingest.settings import IngestSettings

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "s3cretS3cretS3cretS3cretS3cret12"


class Ingest:
    def __init__(self, url: str, loads: list[str]) -> None:
        self.url = url
        self.loads = loads


@pytest.fixture
async def ingest(broker: LocalKafka) -> AsyncIterator[Ingest]:
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, partitions=3)
    assert (await ensure_topics(kafka, registry(3))).ok
    loads: list[str] = []

    async def load(uid: str) -> WebhookTarget | None:
        loads.append(uid)
        return WebhookTarget(uid, "active", SecretStr(SECRET)) if uid == "acme" else None

    producer = make_producer(kafka, request_timeout_ms=3000)
    await producer.start()

    async def publish(key: bytes, value: bytes) -> None:
        await producer.send_and_wait(INVOICES_RECEIVED.name, value, key=key)

    async def ready() -> dict[str, bool]:
        return {"kafka": True}

    settings = IngestSettings(publish_timeout=3)
    app = create_app(settings, WebhookDirectory(load, 30, 5), publish, ready)
    server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                        lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Ingest(f"http://127.0.0.1:{port}", loads)
    finally:
        server.should_exit = True
        await task
        await producer.stop()


async def _received(bootstrap: str) -> list[InvoiceReceived]:
    consumer = make_consumer(KafkaSettings(bootstrap_servers=bootstrap), group_id=None)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, INVOICES_RECEIVED.name)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [InvoiceReceived.from_json(r.value) for r in records]
        return out
    finally:
        await consumer.stop()


def _signed(payload: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"X-Zoho-Webhook-Signature": signature_of(SECRET, body),
                  "Content-Type": "application/json"}


async def test_accepted_only_once_on_the_broker_and_503_without_it(
    ingest: Ingest, broker: LocalKafka
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        body, headers = _signed(zoho_invoice(7))
        response = await http.post(f"{ingest.url}/webhook/zoho/acme", content=body,
                                   headers=headers)
        assert response.status_code == 202
        event_id = response.json()["event_id"]
        (event,) = await _received(broker.bootstrap)
        assert event.event_id == event_id and event.channel is Channel.WEBHOOK
        assert event.invoice.source_id == response.json()["invoice_id"]

        await asyncio.to_thread(broker.stop)
        body, headers = _signed(zoho_invoice(8))
        response = await http.post(f"{ingest.url}/webhook/zoho/acme", content=body,
                                   headers=headers)
        assert response.status_code == 503
        assert response.json()["error"] == "broker_unavailable"
    await asyncio.to_thread(broker.start)
    # The refused webhook was never acknowledged, so Zoho sends it again. Its first
    # send may still sit in the producer's buffer and arrive now: a duplicate the
    # fiscalizer ignores, never a loss.
    after = await _received(broker.bootstrap)
    assert [e.event_id for e in after].count(event_id) == 1
    assert {e.invoice.number for e in after} <= {"INV-000007", "INV-000008"}


async def test_the_secret_is_read_once_per_ttl_not_per_request(ingest: Ingest) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for n in range(5):
            body, headers = _signed(zoho_invoice(100 + n))
            assert (await http.post(f"{ingest.url}/webhook/zoho/acme", content=body,
                                    headers=headers)).status_code == 202
        for _ in range(3):
            assert (await http.post(f"{ingest.url}/webhook/zoho/nobody", content=b"{}",
                                    headers={"X-Zoho-Webhook-Signature": "x"})).status_code == 404
    assert ingest.loads == ["acme", "nobody"]


async def test_ops_endpoints_are_served_beside_the_webhook(ingest: Ingest) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{ingest.url}/healthz")).json() == {"status": "ok"}
        assert (await http.get(f"{ingest.url}/readyz")).status_code == 200
        metrics = (await http.get(f"{ingest.url}/metrics")).text
        assert "fiscobridge_ingest_webhooks_total" in metrics
