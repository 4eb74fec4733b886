"""`fiscobridge dlq list|show|redrive` — the dead-letter topics, for an operator.

Why each record failed comes from the headers `runtime/kafka/dlq.py` adds (error type,
message, source topic/partition/offset); the record itself is the original, byte for
byte. `redrive` sends records back into their source topic once the cause is fixed,
through the same path as `fiscobridge replay <topic>.dlq`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import click
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from fiscobridge.commands.replay import (
    Selection,
    event_type,
    headers_of,
    make_selection,
    run_redelivery,
    scan,
    selection_options,
)
from runtime.kafka.dlq import (
    ERROR_MESSAGE,
    ERROR_TYPE,
    SOURCE,
    handled_marks,
    mark_handled,
    open_letters,
)
from runtime.settings import KafkaSettings
from schemas.topics import PRIMARY


def dlq_topics() -> list[str]:
    return [t.dlq for t in PRIMARY]


def _dlq_name(topic: str) -> str:
    name = topic if topic.endswith(".dlq") else f"{topic}.dlq"
    if name not in dlq_topics():
        raise click.BadParameter(f"{topic!r}: one of {dlq_topics()}", param_hint="TOPIC")
    return name


@dataclass
class Letters:
    """One dead-letter topic's partitions: first and end offsets, and handled marks."""

    starts: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]
    marks: dict[TopicPartition, int]

    @property
    def held(self) -> int:
        return sum(self.ends[tp] - self.starts[tp] for tp in self.ends)

    @property
    def open(self) -> int:
        return sum(open_letters(self.starts, self.ends, self.marks).values())

    def is_open(self, record: ConsumerRecord) -> bool:
        return record.offset >= self.marks.get(TopicPartition(record.topic, record.partition), 0)


async def _letters(kafka: KafkaSettings, topics: list[str]) -> dict[str, Letters]:
    from runtime.kafka.admin import admin_client
    from runtime.kafka.clients import consumer as make_consumer
    from runtime.kafka.clients import partitions_of, stop_consumer

    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        async with admin_client(kafka) as admin:
            marks = await handled_marks(admin)
        out = {}
        for topic in topics:
            tps = await partitions_of(consumer, topic)
            out[topic] = Letters(
                dict(await consumer.beginning_offsets(tps)), dict(await consumer.end_offsets(tps)),
                {tp: o for tp, o in marks.items() if tp.topic == topic},
            )
        return out
    finally:
        await stop_consumer(consumer)


@click.group("dlq")
def dlq() -> None:
    """Dead-letter topics: what failed, why, and sending it back."""


@dlq.command("list")
@click.option("--errors/--no-errors", default=True, show_default=True,
              help="also count the open records by error type (reads them)")
@click.option("--integration",
              help="only this integration's records: its open ones, by error type (reads them)")
def list_(errors: bool, integration: str | None) -> None:
    """Each dead-letter topic: open records (neither redriven nor acknowledged) and all
    it still holds, with the open ones' error types; with --integration, one
    integration's open records (what to tell that business, what to redrive for it)."""
    kafka = KafkaSettings()
    letters = asyncio.run(_letters(kafka, dlq_topics()))
    for topic, found in letters.items():
        by_error: dict[str, int] = {}
        if found.open and (errors or integration):

            def count(record: ConsumerRecord, into: dict[str, int] = by_error,
                      found: Letters = found) -> None:
                if found.is_open(record):
                    kind = headers_of(record).get(ERROR_TYPE, "(no error header)")
                    into[kind] = into.get(kind, 0) + 1

            floors = {tp.partition: mark for tp, mark in found.marks.items()}
            asyncio.run(scan(kafka, Selection(topic, integration=integration, floors=floors),
                             count))
        if integration:
            click.echo(f"{topic:<28} {sum(by_error.values()):>8} open of {integration}")
        else:
            click.echo(f"{topic:<28} {found.open:>8} open {found.held:>8} held")
        if errors:
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
    """Send TOPIC's dead letters back into TOPIC (once the cause is fixed).

    Only open records are sent (those neither redriven nor acknowledged before). What
    was sent is no longer counted open: the handled mark of each partition moves over
    the records sent, up to the first record left out (by --integration or
    --error-type). A record that fails again is parked again, open."""
    name = _dlq_name(topic)
    kafka = KafkaSettings()
    before = asyncio.run(_letters(kafka, [name]))[name]
    # Every record in the range reaches `keep`, so the records left out are known.
    selection = replace(
        make_selection(name, partitions, since, until, from_offset, to_offset, None),
        floors={tp.partition: mark for tp, mark in before.marks.items()},
    )

    def keep(record: ConsumerRecord) -> bool:
        return ((integration is None or record.key == integration.encode())
                and (error_type is None or headers_of(record).get(ERROR_TYPE) == error_type))

    tally = run_redelivery(selection, dry_run=dry_run, no_progress=no_progress, keep=keep)
    if dry_run:
        return
    marks = {
        tp: tally.sent_through(tp) for tp, (start, _) in tally.ranges.items()
        if max(before.marks.get(tp, 0), before.starts[tp]) >= start
    }
    asyncio.run(mark_handled(kafka, marks))
    after = asyncio.run(_letters(kafka, [name]))[name]
    click.echo(f"{name}: {after.open} open after the redrive"
               + ("" if not after.open else
                  " (left out or outside the range; `fiscobridge dlq ack` closes them)"))


@dlq.command("ack")
@click.argument("topic")
@click.option("--partition", "partitions", type=int, multiple=True,
              help="only this partition (repeatable); default all")
@click.option("--to-offset", type=int,
              help="acknowledge records before this offset; default all held now")
@click.option("--yes", is_flag=True, help="do it (without: say what would be acknowledged)")
def ack(topic: str, partitions: tuple[int, ...], to_offset: int | None, yes: bool) -> None:
    """Close TOPIC's dead letters without redriving them (dealt with another way).

    They stay readable (`dlq show`) until retention removes them; they are no longer
    counted open, so the DeadLettersWaiting alert clears."""
    name = _dlq_name(topic)
    kafka = KafkaSettings()
    found = asyncio.run(_letters(kafka, [name]))[name]
    unknown = set(partitions) - {tp.partition for tp in found.ends}
    if unknown:
        raise click.BadParameter(f"{name} has no partition {sorted(unknown)}",
                                 param_hint="--partition")
    marks = {
        tp: end if to_offset is None else min(end, to_offset)
        for tp, end in found.ends.items() if not partitions or tp.partition in partitions
    }
    closing = sum(
        max(0, mark - max(found.starts[tp], found.marks.get(tp, 0))) for tp, mark in marks.items()
    )
    if not yes:
        click.echo(f"{name}: would acknowledge {closing} open records; add --yes to do it")
        return
    asyncio.run(mark_handled(kafka, marks))
    click.echo(f"{name}: acknowledged {closing}; "
               f"{asyncio.run(_letters(kafka, [name]))[name].open} open")
