"""Metrics shared by every Kafka-consuming service.

Names follow `fiscobridge_<what>_<unit>`; no per-invoice labels (unbounded series).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer
from prometheus_client import Gauge

CONSUMER_LAG = Gauge(
    "fiscobridge_consumer_lag_messages",
    "Records between the consumer's position and the partition's end",
    ["group", "topic", "partition"],
)


async def track_lag(consumer: AIOKafkaConsumer, group: str, every: float = 5.0) -> None:
    """Update the lag gauge until cancelled."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                with contextlib.suppress(Exception):  # position is unknown mid-rebalance
                    position = await consumer.position(tp)
                    if high is not None:
                        CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(
                            max(0, high - position)
                        )
            await asyncio.sleep(every)
