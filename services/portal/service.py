"""portal: for now the projector and the ops endpoints (the Client Portal pages come later)."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.health import store_ok
from runtime.ops import OpsServer
from runtime.settings import KafkaSettings
from runtime.store.store import Store
from services.portal.projector import GROUP_ID, Projector

log = logging.getLogger("fiscobridge.portal")


class PortalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FISCOBRIDGE_PORTAL_", env_file=".env",
                                      extra="ignore")

    ops_host: str = "127.0.0.1"
    ops_port: int = Field(default=0)
    projector_group_id: str = GROUP_ID


async def main(stop: asyncio.Event) -> None:
    settings = PortalSettings()
    store = Store.open()
    await store.require_schema()
    projector = Projector(store, KafkaSettings(), group_id=settings.projector_group_id)

    async def ready() -> dict[str, bool]:
        return {"kafka": projector.ready, "store": await store_ok(store)}

    ops = OpsServer(ready, settings.ops_host, settings.ops_port)
    await ops.start()
    log.info("portal started", extra={"ops_port": ops.port})
    try:
        await projector.run(stop)
    finally:
        await ops.stop()
        await store.close()
