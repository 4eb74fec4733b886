"""Getting the store ready before services start (`fiscobridge dev`)."""

from __future__ import annotations

import asyncio
from collections import Counter

from runtime.settings import StoreSettings
from runtime.store.store import Store
from runtime.vault import Vault


def prepare_embedded_store(settings: StoreSettings | None = None) -> Counter[str]:
    """Migrate the store to this code's schema and check the master key reads it.

    On the embedded default (no FISCOBRIDGE_DATABASE_URL) a missing master key falls
    back to the development key file, created here once so that the services started
    next all find the same key. Returns the number of stored secrets per key id.
    """
    settings = settings or StoreSettings()
    return asyncio.run(_prepare(settings))


async def _prepare(settings: StoreSettings) -> Counter[str]:
    vault = Vault.from_env(settings, allow_dev_keyfile=not settings.database_url)
    store = Store.open(settings.url(), vault=vault)
    try:
        await store.migrate()
        return await store.verify_secrets()
    finally:
        await store.close()
