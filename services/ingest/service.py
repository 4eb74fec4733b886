"""Wire the ingest app to the store, the broker and an HTTP server."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import httpx
import uvicorn
from pydantic import SecretStr

from connectors.zoho.rejected import paid_only
from runtime.health import kafka_ok, store_ok
from runtime.kafka.clients import producer as make_producer
from runtime.ops import QuietServer
from runtime.settings import KafkaSettings, ZohoClientSettings
from runtime.store.store import Store
from runtime.vault import Vault
from schemas.topics import INVOICES_RECEIVED, INVOICES_STATUS
from services.ingest.app import create_app
from services.ingest.directory import Loader, WebhookDirectory, WebhookTarget
from services.ingest.settings import IngestSettings
from services.ingest.zoho import ZohoContacts

log = logging.getLogger("fiscobridge.ingest")


def store_loader(store: Store) -> Loader:
    """An integration's status and webhook secrets (the previous one too, in its grace
    period after a rotation) from the store."""

    async def load(uid: str) -> WebhookTarget | None:
        record = await store.integrations.get(uid)
        if record is None:
            return None
        secrets = await store.integrations.webhook_secrets(uid)
        return WebhookTarget(
            uid, record.status.value, SecretStr(secrets.current),
            SecretStr(secrets.previous) if secrets.previous else None, secrets.previous_until,
            read_options=dict(record.zoho_read_options),
            organization_id=record.zoho_organization_id,
            api_domain=record.zoho_api_domain,
            accounts_server=record.zoho_accounts_server,
            starts_at=record.starts_at,
            paid_only=paid_only(record.fiscal_settings),
        )

    return load


async def main(stop: asyncio.Event) -> None:
    settings = IngestSettings()
    kafka = KafkaSettings()
    store = Store.open(vault=Vault.from_env(allow_dev_keyfile=True))
    await store.require_schema()
    await store.verify_secrets()  # a wrong master key fails here, not on the first webhook

    directory = WebhookDirectory(
        store_loader(store), settings.integration_cache.total_seconds(),
        settings.unknown_cache.total_seconds(),
    )
    producer = make_producer(kafka, linger_ms=settings.publish_linger_ms)
    await producer.start()

    async def publish(key: bytes, value: bytes) -> None:
        await producer.send_and_wait(INVOICES_RECEIVED.name, value, key=key)

    async def publish_status(key: bytes, value: bytes) -> None:
        await producer.send_and_wait(INVOICES_STATUS.name, value, key=key)

    async def ready() -> dict[str, bool]:
        return {"kafka": await kafka_ok(producer), "store": await store_ok(store)}

    http = httpx.AsyncClient(timeout=settings.zoho_timeout.total_seconds())
    contacts = ZohoContacts(store, http, settings, ZohoClientSettings())

    async def webhook_seen(uid: str) -> None:
        await store.integrations.webhook_seen(
            uid, datetime.now(UTC), every=settings.webhook_seen
        )

    app = create_app(settings, directory, publish, ready, contacts=contacts,
                     webhook_seen=webhook_seen, publish_status=publish_status)
    server = QuietServer(
        uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                       access_log=False, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    log.info("ingest listening", extra={"host": settings.host, "port": settings.port})
    try:
        await asyncio.wait(
            [serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        # uvicorn stops accepting, then waits for in-flight requests (each waits for its ack).
        server.should_exit = True
        await serving
    finally:
        await producer.stop()
        await http.aclose()
        await store.close()
