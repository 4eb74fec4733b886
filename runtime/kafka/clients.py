"""Producers and consumers configured the one way every service needs them.

Producers are idempotent with acks from all in-sync replicas, so a retried send is
never written twice and an acknowledged one survives a broker loss. Consumers commit
only when told to (after the effect of a message is published or stored), read only
committed transactional data, and start from the beginning of a partition they have
no offset for, so nothing written before a group's first start is skipped.

Keyword overrides are passed to aiokafka as they are (serializers, linger, ...).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from runtime.settings import KafkaSettings


def _common(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "request_timeout_ms": settings.request_timeout_ms,
    }


def producer(settings: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer (not started)."""
    options = {**_common(settings), "enable_idempotence": True, "acks": "all",
               "max_batch_size": settings.max_batch_size, **overrides}
    return AIOKafkaProducer(**options)


def transactional_producer(
    settings: KafkaSettings, transactional_id: str, **overrides: Any
) -> AIOKafkaProducer:
    """An idempotent producer whose writes become visible only when a transaction commits.

    `transactional_id` must be stable across restarts of the same logical writer, so a
    restarted instance fences off its predecessor's unfinished transaction.
    """
    return producer(settings, transactional_id=transactional_id, **overrides)


def consumer(
    settings: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer (not started) that commits explicitly and sees only committed records."""
    options = {
        **_common(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
        "auto_offset_reset": "earliest",
        "fetch_min_bytes": settings.fetch_min_bytes,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        **overrides,
    }
    return AIOKafkaConsumer(*topics, **options)


async def stop_consumer(client: AIOKafkaConsumer) -> None:
    """`client.stop()`, which can raise CancelledError for a group-less consumer stopped
    before its background offset task first ran (aiokafka cancels that task and awaits
    it); unless this task itself is being cancelled, that error means nothing."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def partitions_of(client: AIOKafkaConsumer, *topics: str) -> list[TopicPartition]:
    """Every partition of the topics, from fresh metadata.

    A consumer that has not subscribed knows no topic's partitions yet
    (`partitions_for_topic` answers None), and `topics()` does not fill that cache.
    """
    cluster = await client._client.fetch_all_metadata()
    found = []
    for topic in topics:
        numbers = cluster.partitions_for_topic(topic)
        if numbers is None:
            raise LookupError(f"topic {topic!r} does not exist; run `fiscobridge topics create`")
        found += [TopicPartition(topic, p) for p in sorted(numbers)]
    return found
