"""`fiscobridge replay` — re-deliver a range of a topic, for recovery.

    fiscobridge replay invoices.received --from 2026-12-01T08:00 --to 2026-12-01T09:00
    fiscobridge replay invoices.received.dlq --integration <uid> --dry-run
    fiscobridge replay invoices.status --partition 3 --from-offset 100 --to-offset 200

A topic is replayed into itself; a dead-letter topic (`<topic>.dlq`) into its source.
The range is read up to the end offsets found when the command starts, so what it
writes is never read again by the same run. Each record keeps its key (the integration
uid, so it lands on the same partition) and its headers, and gains a
`fiscobridge.replay` header naming where it was read from; the dead-letter headers
(why it failed) are dropped, since the record goes back to be processed, not parked.

Safe to run twice: the consumers are idempotent. The fiscalizer answers a second
delivery of an invoice it signed with a `duplicate` status, the projector applies an
event once by its id. `invoices.signed` itself is refused (the reporter remembers what
it reported only for a while, so a replayed signature could reach CIS twice): replay
`invoices.received` instead, and the fiscalizer re-signs only what was never reported.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import click
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from runtime.kafka.dlq import ERROR_MESSAGE, ERROR_TYPE, SOURCE
from runtime.settings import KafkaSettings
from schemas.topics import INVOICES_SIGNED, PRIMARY

REPLAY = "fiscobridge.replay"  # header: "<topic>/<partition>/<offset> <UTC instant>"
DLQ_SUFFIX = ".dlq"
# Dead-letter headers: why the record failed, not part of the record.
DLQ_HEADERS = frozenset({ERROR_TYPE, ERROR_MESSAGE, SOURCE})
# Replaying these could report an invoice to the tax authority a second time.
REFUSED = frozenset({INVOICES_SIGNED.name})


def target_of(topic: str) -> str:
    """Where records of `topic` are re-delivered: a dead-letter topic into its source,
    any other topic into itself. Unknown topics are refused (KeyError)."""
    source = topic.removesuffix(DLQ_SUFFIX)
    known = {t.name for t in PRIMARY}
    if source not in known:
        raise KeyError(f"unknown topic {topic!r}; known: {sorted(known)} and their .dlq")
    return source


_RELATIVE = re.compile(r"^(\d+)([smhd])$")


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (no zone: UTC) or a duration ago: `90s`, `30m`, `2h`, `7d`."""
    hit = _RELATIVE.match(text.strip())
    if hit:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[hit.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: int(hit.group(1))})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: ISO 8601 or a duration ago (30m, 2h, 7d)") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Selection:
    topic: str
    partitions: tuple[int, ...] = ()  # empty: all
    since: datetime | None = None
    until: datetime | None = None  # exclusive
    from_offset: int | None = None
    to_offset: int | None = None  # exclusive
    integration: str | None = None
    # Per partition, a first offset on top of the rest (dlq redrive: the handled mark).
    floors: Mapping[int, int] = field(default_factory=dict)

    def wants(self, record: ConsumerRecord) -> bool:
        return self.integration is None or record.key == self.integration.encode()


@dataclass
class Tally:
    """What a run read and (unless dry) sent: by integration and event type."""

    scanned: int = 0
    matched: int = 0
    sent: int = 0
    by_integration: Counter[str] = field(default_factory=Counter)
    by_type: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    # Per partition: the [start, end) range read, and the first offset in it left unsent.
    ranges: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    unsent: dict[TopicPartition, int] = field(default_factory=dict)

    def sent_through(self, tp: TopicPartition) -> int:
        """The offset below which everything read from `tp` was sent."""
        return self.unsent.get(tp, self.ranges[tp][1])

    def lines(self) -> list[str]:
        out = [f"scanned {self.scanned}, selected {self.matched}, sent {self.sent}"]
        if self.by_integration:
            out.append("by integration:")
            out += [f"  {uid:<40} {n}" for uid, n in self.by_integration.most_common()]
        if self.by_type:
            out.append("by event type:")
            out += [f"  {kind:<40} {n}" for kind, n in self.by_type.most_common()]
        if self.by_error:
            out.append("by error (dead letters):")
            out += [f"  {kind:<40} {n}" for kind, n in self.by_error.most_common()]
        return out


def event_type(topic: str, value: bytes | None) -> str:
    """The topic's event class, with the status's state or the integration event's kind."""
    base = target_of(topic)
    name = next((t.value.__name__ for t in PRIMARY if t.name == base and t.value), base)
    try:
        body = json.loads(value or b"")
    except ValueError:
        return f"{name} (unreadable)"
    detail = body.get("state") or body.get("kind") if isinstance(body, dict) else None
    return f"{name}:{detail}" if detail else name


def headers_of(record: ConsumerRecord) -> dict[str, str]:
    """A record's headers as text (the last of a repeated name wins)."""
    return {k: v.decode(errors="replace") for k, v in (record.headers or ())}


def replay_headers(record: ConsumerRecord, at: datetime) -> list[tuple[str, bytes]]:
    kept = [(k, v) for k, v in (record.headers or ()) if k not in DLQ_HEADERS]
    mark = f"{record.topic}/{record.partition}/{record.offset} {at.isoformat()}"
    return [*kept, (REPLAY, mark.encode())]


async def plan(
    consumer: AIOKafkaConsumer, selection: Selection
) -> dict[TopicPartition, tuple[int, int]]:
    """[start, end) offsets per selected partition; end is at most the current end."""
    from runtime.kafka.clients import partitions_of

    tps = await partitions_of(consumer, selection.topic)
    if selection.partitions:
        unknown = set(selection.partitions) - {tp.partition for tp in tps}
        if unknown:
            raise click.BadParameter(f"{selection.topic} has no partition {sorted(unknown)}")
        tps = [tp for tp in tps if tp.partition in selection.partitions]
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    starts = dict(begins)
    stops = dict(ends)
    if selection.since is not None:
        found = await consumer.offsets_for_times(
            {tp: int(selection.since.timestamp() * 1000) for tp in tps})
        for tp in tps:  # nothing at or after `since`: nothing to read there
            starts[tp] = max(starts[tp], found[tp].offset if found.get(tp) else ends[tp])
    if selection.until is not None:
        found = await consumer.offsets_for_times(
            {tp: int(selection.until.timestamp() * 1000) for tp in tps})
        for tp in tps:
            if found.get(tp):
                stops[tp] = min(stops[tp], found[tp].offset)
    if selection.from_offset is not None:
        starts = {tp: max(o, selection.from_offset) for tp, o in starts.items()}
    starts = {tp: max(o, selection.floors.get(tp.partition, o)) for tp, o in starts.items()}
    if selection.to_offset is not None:
        stops = {tp: min(o, selection.to_offset) for tp, o in stops.items()}
    return {tp: (starts[tp], stops[tp]) for tp in tps if starts[tp] < stops[tp]}


async def scan(
    kafka: KafkaSettings,
    selection: Selection,
    on_record: Callable[[ConsumerRecord], object],
    progress: Callable[[int, int], None] | None = None,
    on_plan: Callable[[dict[TopicPartition, tuple[int, int]]], object] | None = None,
) -> int:
    """Read the selection's range, calling `on_record` for each record it wants (awaiting
    it when it returns an awaitable); `progress(done, total)` counts records read,
    `on_plan` gets the ranges before they are read. Returns the number read."""
    from runtime.kafka.clients import consumer as make_consumer
    from runtime.kafka.clients import stop_consumer

    consumer = make_consumer(kafka, group_id=None, fetch_min_bytes=1, fetch_max_wait_ms=100)
    await consumer.start()
    try:
        ranges = await plan(consumer, selection)
        total = sum(end - start for start, end in ranges.values())
        if on_plan:
            on_plan(ranges)
        if progress:
            progress(0, total)
        if not ranges:
            return 0
        consumer.assign(list(ranges))
        for tp, (start, _) in ranges.items():
            consumer.seek(tp, start)
        open_ = set(ranges)
        done = 0
        while open_:
            batch = await consumer.getmany(*open_, timeout_ms=1000, max_records=2000)
            for tp, records in batch.items():
                end = ranges[tp][1]
                for record in records:
                    if record.offset >= end:
                        break
                    done += 1
                    if selection.wants(record):
                        result = on_record(record)
                        if asyncio.iscoroutine(result):
                            await result
            for tp in list(open_):
                # A compacted or transactional range may end on an offset with no record.
                if await consumer.position(tp) >= ranges[tp][1]:
                    open_.discard(tp)
                    consumer.pause(tp)
            if progress:
                progress(done, total)
        return done
    finally:
        await stop_consumer(consumer)


async def redeliver(
    kafka: KafkaSettings,
    selection: Selection,
    *,
    dry_run: bool,
    into: str | None = None,
    keep: Callable[[ConsumerRecord], bool] = lambda record: True,
    progress: Callable[[int, int, Tally], None] | None = None,
) -> Tally:
    """Read the selection and, unless `dry_run`, send each kept record to `into` (by
    default the topic's target) with its key and headers and a replay header. Every
    send is acknowledged by the broker before this returns."""
    from runtime.kafka.clients import producer as make_producer

    target = into or target_of(selection.topic)
    tally = Tally()
    producer: AIOKafkaProducer | None = None
    pending: list[asyncio.Future[object]] = []
    at = datetime.now(UTC)

    async def flush() -> None:
        if pending:
            await asyncio.gather(*pending)
            tally.sent += len(pending)
            pending.clear()

    async def one(record: ConsumerRecord) -> None:
        if not keep(record):
            tally.unsent.setdefault(TopicPartition(record.topic, record.partition), record.offset)
            return
        tally.matched += 1
        tally.by_integration[(record.key or b"").decode(errors="replace")] += 1
        tally.by_type[event_type(selection.topic, record.value)] += 1
        error = headers_of(record).get(ERROR_TYPE)
        if error:
            tally.by_error[error] += 1
        if producer is not None:
            pending.append(await producer.send(
                target, record.value, key=record.key, headers=replay_headers(record, at)))
            if len(pending) >= 500:
                await flush()

    def seen(done: int, total: int) -> None:
        tally.scanned = done
        if progress:
            progress(done, total, tally)

    if not dry_run:
        producer = make_producer(kafka, linger_ms=20)
        await producer.start()
    try:
        await scan(kafka, selection, one, seen, tally.ranges.update)
        await flush()
    finally:
        if producer is not None:
            await producer.stop()
    return tally


class Bar:
    """A rich progress bar over records read, with rate and ETA."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TaskProgressColumn(), TextColumn("{task.fields[rate]:>9} rec/s"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"), disable=not enabled, transient=False,
        )
        self.task = self.progress.add_task(label, total=None, rate="-", note="")
        self.started = time.monotonic()

    def __enter__(self) -> Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, done: int, total: int, tally: Tally) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.progress.update(self.task, completed=done, total=total,
                             rate=f"{done / elapsed:,.0f}",
                             note=f"selected {tally.matched}, sent {tally.sent}")


def selection_options(f: Callable[..., object]) -> Callable[..., object]:
    """The range options `replay` and `dlq redrive` share."""
    options = [
        click.option("--partition", "partitions", type=int, multiple=True,
                     help="only this partition (repeatable); default all"),
        click.option("--from", "since", help="records appended at or after (ISO 8601, UTC "
                     "unless a zone is given, or a duration ago: 30m, 2h, 7d)"),
        click.option("--to", "until", help="records appended before (same forms)"),
        click.option("--from-offset", type=int, help="first offset, in each partition"),
        click.option("--to-offset", type=int, help="offset to stop before, in each partition"),
        click.option("--integration", help="only records keyed by this integration uid"),
        click.option("--dry-run", is_flag=True,
                     help="count what would be sent, by integration and event type"),
        click.option("--no-progress", is_flag=True, help="no progress bar"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def make_selection(topic: str, partitions: Iterable[int], since: str | None,
                   until: str | None, from_offset: int | None, to_offset: int | None,
                   integration: str | None) -> Selection:
    return Selection(
        topic, tuple(partitions),
        parse_instant(since) if since else None, parse_instant(until) if until else None,
        from_offset, to_offset, integration,
    )


def run_redelivery(selection: Selection, *, dry_run: bool, no_progress: bool,
                   keep: Callable[[ConsumerRecord], bool] = lambda record: True) -> Tally:
    kafka = KafkaSettings()
    target = target_of(selection.topic)
    label = f"{'counting' if dry_run else 'replaying'} {selection.topic}"
    label += "" if dry_run else f" -> {target}"
    with Bar(label, enabled=not no_progress) as bar:
        tally = asyncio.run(redeliver(kafka, selection, dry_run=dry_run, keep=keep,
                                      progress=bar.update))
    for line in tally.lines():
        click.echo(line)
    if dry_run:
        click.echo(f"dry run: nothing sent (would send {tally.matched} to {target})")
    return tally


@click.command("replay")
@click.argument("topic")
@selection_options
def replay(topic: str, partitions: tuple[int, ...], since: str | None, until: str | None,
           from_offset: int | None, to_offset: int | None, integration: str | None,
           dry_run: bool, no_progress: bool) -> None:
    """Re-deliver records of TOPIC (a dead-letter topic: into its source)."""
    try:
        target = target_of(topic)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="TOPIC") from exc
    if topic in REFUSED:
        raise click.UsageError(
            f"replaying {topic} could report an invoice to the tax authority twice; replay "
            "invoices.received instead (the fiscalizer re-signs only what was never reported)")
    del target
    selection = make_selection(topic, partitions, since, until, from_offset, to_offset,
                               integration)
    run_redelivery(selection, dry_run=dry_run, no_progress=no_progress)
