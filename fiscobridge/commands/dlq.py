"""`fiscobridge dlq list|show|redrive` — the dead-letter topics, for an operator.

Why each record failed comes from the headers `runtime/kafka/dlq.py` adds (error type,
message, source topic/partition/offset); the record itself is the original, byte for
byte. `redrive` sends records back into their source topic once the cause is fixed,
through the same path as `fiscobridge replay <topic>.dlq`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import click
from aiokafka.structs import ConsumerRecord

from fiscobridge.commands.replay import (
    Selection,
    event_type,
    headers_of,
    make_selection,
    plan,
    run_redelivery,
    scan,
    selection_options,
)
from runtime.kafka.dlq import ERROR_MESSAGE, ERROR_TYPE, SOURCE
from runtime.settings import KafkaSettings
from schemas.topics import PRIMARY


def dlq_topics() -> list[str]:
    return [t.dlq for t in PRIMARY]


def _dlq_name(topic: str) -> str:
    name = topic if topic.endswith(".dlq") else f"{topic}.dlq"
    if name not in dlq_topics():
        raise click.BadParameter(f"{topic!r}: one of {dlq_topics()}", param_hint="TOPIC")
    return name


async def _sizes(kafka: KafkaSettings) -> dict[str, tuple[int, int]]:
    """Per dead-letter topic: records held now, and records ever written."""
    from runtime.kafka.clients import consumer as make_consumer
    from runtime.kafka.clients import stop_consumer

    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        out = {}
        for topic in dlq_topics():
            ranges = await plan(consumer, Selection(topic))
            held = sum(end - start for start, end in ranges.values())
            ends = await consumer.end_offsets(list(ranges)) if ranges else {}
            out[topic] = (held, sum(ends.values()))
        return out
    finally:
        await stop_consumer(consumer)


@click.group("dlq")
def dlq() -> None:
    """Dead-letter topics: what failed, why, and sending it back."""


@dlq.command("list")
@click.option("--errors/--no-errors", default=True, show_default=True,
              help="also count the held records by error type (reads them)")
def list_(errors: bool) -> None:
    """Each dead-letter topic with the records it holds (and their error types)."""
    kafka = KafkaSettings()
    sizes = asyncio.run(_sizes(kafka))
    for topic, (held, _) in sizes.items():
        click.echo(f"{topic:<28} {held:>8} held")
        if errors and held:
            by_error: dict[str, int] = {}

            def count(record: ConsumerRecord, into: dict[str, int] = by_error) -> None:
                kind = headers_of(record).get(ERROR_TYPE, "(no error header)")
                into[kind] = into.get(kind, 0) + 1

            asyncio.run(scan(kafka, Selection(topic), count))
            for kind, n in sorted(by_error.items(), key=lambda kv: -kv[1]):
                click.echo(f"  {kind:<40} {n}")


def describe(record: ConsumerRecord) -> dict[str, object]:
    headers = headers_of(record)
    return {
        "dlq": f"{record.topic}/{record.partition}/{record.offset}",
        "parked_at": datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
        "integration": (record.key or b"").decode(errors="replace"),
        "event_type": event_type(record.topic, record.value),
        "error_type": headers.get(ERROR_TYPE),
        "error": headers.get(ERROR_MESSAGE),
        "source": headers.get(SOURCE),
        "headers": {k: v for k, v in headers.items()
                    if k not in (ERROR_TYPE, ERROR_MESSAGE, SOURCE)},
    }


@dlq.command("show")
@click.argument("topic")
@click.option("--partition", "partitions", type=int, multiple=True)
@click.option("--integration", help="only records of this integration uid")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--value", "with_value", is_flag=True, help="print each record's value too")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
def show(topic: str, partitions: tuple[int, ...], integration: str | None, limit: int,
         with_value: bool, as_json: bool) -> None:
    """The records held in TOPIC's dead-letter topic and why each failed."""
    name = _dlq_name(topic)
    found: list[dict[str, object]] = []

    def one(record: ConsumerRecord) -> None:
        if len(found) < limit:
            item = describe(record)
            if with_value:
                item["value"] = (record.value or b"").decode(errors="replace")
            found.append(item)

    asyncio.run(scan(KafkaSettings(), Selection(name, partitions, integration=integration), one))
    for item in found:
        if as_json:
            click.echo(json.dumps(item))
            continue
        click.echo(f"{item['dlq']}  {item['parked_at']}  integration {item['integration']}")
        click.echo(f"  {item['event_type']} from {item['source']}")
        click.echo(f"  failed: {item['error_type']}: {item['error']}")
        if item["headers"]:
            click.echo(f"  headers: {item['headers']}")
        if with_value:
            click.echo(f"  value: {item['value']}")
    if not found:
        click.echo(f"{name}: nothing held" + (f" for {integration}" if integration else ""))


@dlq.command("redrive")
@click.argument("topic")
@selection_options
@click.option("--error-type", help="only records that failed with this error type")
def redrive(topic: str, partitions: tuple[int, ...], since: str | None, until: str | None,
            from_offset: int | None, to_offset: int | None, integration: str | None,
            dry_run: bool, no_progress: bool, error_type: str | None) -> None:
    """Send TOPIC's dead letters back into TOPIC (once the cause is fixed)."""
    name = _dlq_name(topic)
    selection = make_selection(name, partitions, since, until, from_offset, to_offset,
                               integration)

    def keep(record: ConsumerRecord) -> bool:
        return error_type is None or headers_of(record).get(ERROR_TYPE) == error_type

    run_redelivery(selection, dry_run=dry_run, no_progress=no_progress, keep=keep)
