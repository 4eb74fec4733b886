"""portal: the Client Portal web app (with /healthz /readyz /metrics) and the projector."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import uvicorn

from runtime import metrics
from runtime import resend as resending
from runtime.groups import ConsumerGroups
from runtime.health import store_ok
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import producer as make_producer
from runtime.licensing import TierSettings
from runtime.ops import QuietServer
from runtime.settings import KafkaSettings
from runtime.store.rebuild import publish_and_apply
from runtime.store.store import Store
from runtime.vault import Vault
from schemas.events import IntegrationEvent, InvoiceState
from schemas.topics import PRIMARY
from services.portal.projector import Projector
from services.portal.settings import PortalSettings
from services.portal.web.app import create_app
from services.portal.web.context import Portal

log = logging.getLogger("fiscobridge.portal")


def consumer_groups(settings: PortalSettings) -> list[str]:
    """The pipeline's consumer groups, whose lag the portal reports for all of them."""
    groups = ConsumerGroups()
    return [groups.fiscalizer, groups.reporter, settings.projector_group_id]


async def main(stop: asyncio.Event) -> None:
    settings = PortalSettings()
    kafka = KafkaSettings()
    store = Store.open(vault=Vault.from_env(allow_dev_keyfile=True))
    await store.require_schema()
    await store.verify_secrets()  # a wrong master key fails here, not on a user's first page
    projector = Projector(store, kafka, group_id=settings.projector_group_id,
                          linger=settings.projector_linger.total_seconds())
    producer = make_producer(kafka)
    await producer.start()
    http = httpx.AsyncClient(timeout=settings.zoho_timeout.total_seconds())

    async def publish(event: IntegrationEvent) -> object:
        return await publish_and_apply(producer, store, event)

    async def ready() -> dict[str, bool]:
        return {"kafka": projector.ready, "store": await store_ok(store)}

    tiers = TierSettings()
    portal = Portal(settings, store, publish, http, monthly_limit=tiers.monthly_limit,
                    ready=ready, tiers=tiers)

    async def resend(uid: str, records: list[Any], who: str) -> resending.Outcome:
        # A consumer of its own per request: it is assigned one partition and seeks.
        lookup = make_consumer(kafka, group_id=None)
        await lookup.start()
        try:
            return await resending.resend(lookup, producer, uid, records, who,
                                          refetch=store.refetch)
        finally:
            await lookup.stop()

    portal.resend = resend
    server = QuietServer(
        uvicorn.Config(create_app(portal), host=settings.host, port=settings.port,
                       log_level="warning", access_log=False, lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    projecting = asyncio.create_task(projector.run(stop))
    stopping = asyncio.create_task(stop.wait())
    # The projector counts each integration's outcomes (alerts read them from the start).
    metrics.INTEGRATION_INVOICES.declare(*(state.value for state in InvoiceState))
    # The system-wide gauges (group lag, dead letters, integrations, invoices by state,
    # licence use) for the dashboard and alerts; it never ends the portal.
    watching = asyncio.create_task(metrics.watch_system(
        store, kafka, groups=consumer_groups(settings), dlq_topics=[t.dlq for t in PRIMARY],
        monthly_limit=tiers.monthly_limit,
    ))
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
        watching.cancel()
        await producer.stop()
        await http.aclose()
        await store.close()
