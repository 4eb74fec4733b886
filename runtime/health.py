"""Readiness probes for the parts a service depends on."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text

from runtime.store.store import Store


async def kafka_ok(client: AIOKafkaProducer | AIOKafkaConsumer, timeout: float = 3.0) -> bool:
    try:
        # aiokafka keeps its network client as `client` on producers, `_client` on consumers.
        network = client.client if isinstance(client, AIOKafkaProducer) else client._client
        await asyncio.wait_for(network.fetch_all_metadata(), timeout)
    except Exception:
        return False
    return True


async def store_ok(store: Store, timeout: float = 3.0) -> bool:
    async def ping() -> None:
        async with store.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    try:
        await asyncio.wait_for(ping(), timeout)
    except Exception:
        return False
    return True
