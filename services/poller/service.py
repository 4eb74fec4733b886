"""poller: Zoho Books -> invoices.received, the safety net under the webhooks.

`fiscobridge run poller`. Any number of instances may run against one store and
cluster: leases in the store decide which instance polls which integration.
"""

from __future__ import annotations

import asyncio
import logging

from runtime.health import kafka_ok, store_ok
from runtime.kafka.clients import producer as make_producer
from runtime.ops import OpsServer
from runtime.settings import KafkaSettings
from runtime.store.store import Store
from runtime.vault import Vault
from services.poller.poller import Poller
from services.poller.settings import PollerSettings

log = logging.getLogger("fiscobridge.poller")


async def main(stop: asyncio.Event) -> None:
    settings = PollerSettings()
    kafka = KafkaSettings()
    store = Store.open(vault=Vault.from_env(allow_dev_keyfile=True))
    try:
        await store.require_schema()
        await store.verify_secrets()  # a wrong master key fails here, not on the first poll
        producer = make_producer(kafka)
        await producer.start()
        try:
            poller = Poller(store, producer, settings)

            async def ready() -> dict[str, bool]:
                return {"kafka": await kafka_ok(producer), "store": await store_ok(store)}

            ops = OpsServer(ready, settings.ops_host, settings.ops_port)
            await ops.start()
            log.info(
                "poller started",
                extra={
                    "ops_port": ops.port,
                    "holder": poller.holder,
                    "zoho_client": poller.sessions.configured,
                },
            )
            try:
                await poller.run(stop)
            finally:
                await ops.stop()
        finally:
            await producer.stop()
    finally:
        await store.close()
