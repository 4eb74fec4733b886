"""portal: the Client Portal web app (with /healthz /readyz /metrics) and the projector."""

from __future__ import annotations

import asyncio
import logging

import httpx
import uvicorn

from runtime.health import store_ok
from runtime.kafka.clients import producer as make_producer
from runtime.ops import QuietServer
from runtime.settings import KafkaSettings
from runtime.store.store import Store
from runtime.vault import Vault
from schemas.events import IntegrationEvent
from services.fiscalizer.settings import FiscalizerSettings
from services.portal.projector import Projector, publish_and_apply
from services.portal.settings import PortalSettings
from services.portal.web.app import create_app
from services.portal.web.context import Portal

log = logging.getLogger("fiscobridge.portal")


async def main(stop: asyncio.Event) -> None:
    settings = PortalSettings()
    kafka = KafkaSettings()
    store = Store.open(vault=Vault.from_env(allow_dev_keyfile=True))
    await store.require_schema()
    await store.verify_secrets()  # a wrong master key fails here, not on a user's first page
    projector = Projector(store, kafka, group_id=settings.projector_group_id,
                          linger=settings.projector_linger_seconds)
    producer = make_producer(kafka)
    await producer.start()
    http = httpx.AsyncClient(timeout=settings.zoho_timeout_seconds)

    async def publish(event: IntegrationEvent) -> object:
        return await publish_and_apply(producer, store, event)

    async def ready() -> dict[str, bool]:
        return {"kafka": projector.ready, "store": await store_ok(store)}

    portal = Portal(settings, store, publish, http,
                    monthly_limit=FiscalizerSettings().monthly_limit, ready=ready)
    server = QuietServer(
        uvicorn.Config(create_app(portal), host=settings.host, port=settings.port,
                       log_level="warning", access_log=False, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    projecting = asyncio.create_task(projector.run(stop))
    stopping = asyncio.create_task(stop.wait())
    log.info("portal listening", extra={"host": settings.host, "port": settings.port})
    try:
        await asyncio.wait([serving, projecting, stopping], return_when=asyncio.FIRST_COMPLETED)
        # Whichever ended first (a signal, or a crash), the other one stops too; uvicorn
        # finishes the requests in flight, the projector commits what it applied.
        stop.set()
        server.should_exit = True
        await asyncio.gather(serving, projecting)
    finally:
        stopping.cancel()
        await producer.stop()
        await http.aclose()
        await store.close()
