"""Wire the fiscalizer to the store and run it as a faust worker."""

from __future__ import annotations

import logging

import faust
import mode
from pydantic import SecretStr

from fiscal.authorities import Authorities, split_authority
from runtime.health import store_ok
from runtime.ops import OpsServer
from runtime.settings import KafkaSettings
from runtime.store.store import Store
from runtime.vault import Vault
from services.fiscalizer.app import Fiscalizer
from services.fiscalizer.directory import IntegrationDirectory, IntegrationView
from services.fiscalizer.rules import Trigger
from services.fiscalizer.settings import FiscalizerSettings

log = logging.getLogger("fiscobridge.fiscalizer")


def build() -> tuple[Fiscalizer, Store, FiscalizerSettings]:
    settings = FiscalizerSettings()
    store = Store.open(vault=Vault.from_env(allow_dev_keyfile=True))
    authorities = Authorities()

    async def load(uid: str) -> IntegrationView | None:
        record = await store.integrations.get(uid)
        if record is None:
            return None
        pfx, password = await store.integrations.certificate(uid)
        name, fiscal = split_authority(record.fiscal_settings)
        trigger = Trigger(fiscal.pop("trigger", Trigger.ISSUED.value))
        authority = authorities.get(name)
        return IntegrationView(
            uid=uid,
            status=record.status.value,
            tier=record.tier,
            authority=authority,
            fiscal_settings=authority.validate_settings(fiscal),
            pfx=pfx,
            pfx_password=SecretStr(password),
            trigger=trigger,
            starts_at=record.starts_at,
        )

    directory = IntegrationDirectory(load, settings.integration_cache.total_seconds())
    return Fiscalizer(KafkaSettings(), settings, directory), store, settings


def run() -> None:
    fiscalizer, store, settings = build()
    app = fiscalizer.app

    async def ready() -> dict[str, bool]:
        assignment = app.consumer.assignment() if app.consumer else set()
        return {
            "kafka": bool(app.started and not app.rebalancing and assignment),
            "store": await store_ok(store),
        }

    ops = OpsServer(ready, settings.ops_host, settings.ops_port)

    class Ops(mode.Service):
        """Ops endpoints and the store, started and stopped with the worker."""

        async def on_start(self) -> None:
            await store.require_schema()
            await store.verify_secrets()  # a wrong master key fails here, not mid-batch
            await ops.start()
            log.info("fiscalizer ops endpoints up", extra={"ops_port": ops.port})

        async def on_stop(self) -> None:
            await ops.stop()
            await store.close()

    worker = faust.Worker(app, Ops(), loglevel="WARNING", override_logging=False)
    worker.execute_from_commandline()
