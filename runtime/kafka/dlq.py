"""Dead letters: a record a consumer cannot process goes to its topic's `Topic.dlq`, never
dropped and never silently acknowledged.

The original key, value and headers are kept byte for byte; why and where it failed is
added in headers, so the replay tool can send it back once the cause is fixed. This is
the one place that decides a dead letter's topic and headers: the hand-written
consumers send it with `DeadLetters.park`, the fiscalizer hands `letter` to faust's
producer with the rest of its batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition

from schemas.topics import Topic

if TYPE_CHECKING:
    from aiokafka.admin import AIOKafkaAdminClient

    from runtime.settings import KafkaSettings

ERROR_TYPE = "fiscobridge.error.type"
ERROR_MESSAGE = "fiscobridge.error.message"
SOURCE = "fiscobridge.source"  # topic/partition/offset

Headers = Sequence[tuple[str, bytes]]

log = logging.getLogger("fiscobridge.dlq")


class SourceRecord(Protocol):
    """What a dead letter is made from: an aiokafka ConsumerRecord has all of it."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Headers | Mapping[str, bytes] | None: ...


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def _original(headers: Headers | Mapping[str, bytes] | None) -> list[tuple[str, bytes]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


class DeadLetters:
    """The dead-letter policy of a consumer of `sources`."""

    def __init__(self, sources: Iterable[Topic], producer: AIOKafkaProducer | None = None) -> None:
        self._dlq = {topic.name: topic.dlq for topic in sources}
        self.producer = producer

    def letter(self, record: SourceRecord, error: BaseException) -> DeadLetter:
        """The dead letter of `record`; a record of a topic not among the sources is a
        programming error (KeyError), never a letter to a made-up topic."""
        source = f"{record.topic}/{record.partition}/{record.offset}"
        return DeadLetter(
            self._dlq[record.topic],
            record.key,
            record.value,
            [
                *_original(record.headers),
                (ERROR_TYPE, type(error).__name__.encode()),
                (ERROR_MESSAGE, str(error)[:4000].encode()),
                (SOURCE, source.encode()),
            ],
        )

    async def park(self, record: SourceRecord, error: BaseException) -> None:
        """Send the dead letter and wait for the broker's ack, retrying while the broker is
        unavailable: the record's offset may be committed only once its letter is stored."""
        assert self.producer is not None, "DeadLetters.park needs a producer"
        letter = self.letter(record, error)
        delay = 0.1
        while True:
            try:
                await self.producer.send_and_wait(
                    letter.topic, letter.value, key=letter.key, headers=letter.headers
                )
                return
            except Exception as exc:
                log.warning("dead letter not acknowledged; retrying",
                            extra={"topic": letter.topic, "error": repr(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


# What an operator has dealt with: per dead-letter partition, the offset below which every
# letter was redriven or acknowledged, kept as this group's committed offset. Letters are
# never deleted (retention does that); "open" letters are those at or above the mark, and
# they are what the DLQ gauge and its alert count.
HANDLED_GROUP = "fiscobridge-dlq-handled"


async def handled_marks(admin: AIOKafkaAdminClient) -> dict[TopicPartition, int]:
    offsets = await admin.list_consumer_group_offsets(HANDLED_GROUP)
    return {tp: meta.offset for tp, meta in offsets.items()
            if meta is not None and meta.offset >= 0}


def open_letters(
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    marks: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Per partition, the letters held at or above its handled mark."""
    return {tp: max(0, ends[tp] - max(starts[tp], marks.get(tp, 0))) for tp in ends}


async def mark_handled(settings: KafkaSettings, marks: Mapping[TopicPartition, int]) -> None:
    """Move the handled marks forward to `marks` (never back)."""
    from runtime.kafka.clients import consumer as make_consumer
    from runtime.kafka.clients import stop_consumer

    if not marks:
        return
    consumer = make_consumer(settings, group_id=HANDLED_GROUP)
    await consumer.start()
    try:
        consumer.assign(list(marks))
        forward = {}
        for tp, offset in marks.items():
            current = await consumer.committed(tp)
            if current is None or offset > current:
                forward[tp] = offset
        if forward:
            await consumer.commit(forward)
    finally:
        await stop_consumer(consumer)
