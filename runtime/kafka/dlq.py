"""Dead letters: a record a consumer cannot process goes to `<topic>.dlq`, never dropped.

The original key and value are kept byte for byte; why and where it failed travels in
headers, so the replay tool can send it back once the cause is fixed.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaProducer

ERROR_TYPE = "fiscobridge.error.type"
ERROR_MESSAGE = "fiscobridge.error.message"
SOURCE = "fiscobridge.source"  # topic/partition/offset


def headers_for(
    topic: str, partition: int, offset: int, error: BaseException
) -> list[tuple[str, bytes]]:
    return [
        (ERROR_TYPE, type(error).__name__.encode()),
        (ERROR_MESSAGE, str(error)[:4000].encode()),
        (SOURCE, f"{topic}/{partition}/{offset}".encode()),
    ]


async def send_to_dlq(producer: AIOKafkaProducer, record: Any, error: BaseException) -> None:
    """`record` is an aiokafka ConsumerRecord; waits for the broker's ack."""
    await producer.send_and_wait(
        f"{record.topic}.dlq",
        record.value,
        key=record.key,
        headers=[*(record.headers or ()), *headers_for(record.topic, record.partition,
                                                       record.offset, error)],
    )
