"""Drive invoices through a running FiscoBridge and watch their outcomes.

What Zoho Books would do (send signed webhooks), plus a watcher on `invoices.status`
that records when each invoice reached a final state. Used by `fiscobridge demo`,
the pipeline benchmark and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from aiokafka import AIOKafkaConsumer

from connectors.zoho.webhook import signature_of
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.settings import KafkaSettings
from sandbox.poster import WebhookPoster
from schemas.events import InvoiceState, InvoiceStatus
from schemas.topics import INVOICES_STATUS

ZAGREB_OFFSET = "+0100"


def zoho_invoice(
    n: int,
    *,
    run: int = 0,
    prefix: str = "INV",
    status: str = "sent",
    lines: int = 2,
    modified_minute: int = 0,
) -> dict[str, object]:
    """A Zoho Books invoice as its webhook's default payload carries it.

    `run` keeps ids of different runs apart (ids are 18-19 digit strings, as Zoho's).
    """
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=modified_minute)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S") + "+0000"
    items, sub_total, tax_total = [], Decimal(0), Decimal(0)
    for i in range(lines):
        rate, qty = Decimal("12.50") + i, Decimal(1 + i)
        percent = Decimal(25) if i % 2 == 0 else Decimal(13)
        total = rate * qty
        items.append(
            {
                "line_item_id": f"{n}{i:03d}",
                "name": f"Item {i}",
                "description": f"Item {i}",
                "rate": str(rate),
                "quantity": str(qty),
                "discount": 0,
                "tax_percentage": int(percent),
                "tax_name": f"PDV {percent}",
                "item_total": str(total),
            }
        )
        sub_total += total
        tax_total += (total * percent / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return {
        "invoice": {
            "invoice_id": str(460000000000000000 + run * 10**7 + n),
            "invoice_number": f"{prefix}-{n:06d}",
            "date": now.date().isoformat(),
            "status": status,
            "customer_id": "460000000000000001",
            "customer_name": "Demo kupac d.o.o.",
            "currency_code": "EUR",
            "is_inclusive_tax": False,
            "line_items": items,
            "sub_total": str(sub_total),
            "tax_total": str(tax_total),
            "total": str(sub_total + tax_total),
            "created_time": stamp,
            "last_modified_time": stamp,
        }
    }


async def send_webhook(
    http: WebhookPoster, ingest_url: str, uid: str, secret: str, payload: dict[str, object],
) -> int:
    """Sign `payload` and POST it as Zoho would; the HTTP status (0: no answer)."""
    return await post_webhook(http, ingest_url, Webhook.of(uid, secret, payload))


@dataclass(frozen=True)
class Webhook:
    """A webhook ready to send: body serialized and signed."""

    uid: str
    source_id: str
    body: bytes
    signature: str

    @classmethod
    def of(cls, uid: str, secret: str, payload: dict[str, object]) -> Webhook:
        body = json.dumps(payload).encode()
        source_id = str(payload["invoice"]["invoice_id"])  # type: ignore[index]
        return cls(uid, source_id, body, signature_of(secret, body))


async def post_webhook(http: WebhookPoster, ingest_url: str, webhook: Webhook) -> int:
    """POST a webhook built beforehand; the HTTP status (0: no answer)."""
    return await http.post(
        f"{ingest_url}/webhook/zoho/{webhook.uid}",
        {"Content-Type": "application/json", "X-Zoho-Webhook-Signature": webhook.signature},
        webhook.body,
    )


@dataclass
class Outcomes:
    """First final state per (integration uid, source invoice id), with the time seen."""

    final: dict[tuple[str, str], tuple[InvoiceStatus, float]] = field(default_factory=dict)
    all: list[InvoiceStatus] = field(default_factory=list)

    def count(self, state: InvoiceState) -> int:
        return sum(1 for s, _ in self.final.values() if s.state is state)


class StatusWatcher:
    """Reads `invoices.status` from a point in time, without a consumer group."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.outcomes = Outcomes()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, since_ms: int | None = None) -> None:
        consumer = make_consumer(self.kafka, group_id=None)
        await consumer.start()
        tps = await partitions_of(consumer, INVOICES_STATUS.name)
        consumer.assign(tps)
        if since_ms is None:
            await consumer.seek_to_end(*tps)
        else:
            found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit else ends[tp])
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    status = InvoiceStatus.from_json(record.value)
                    self.outcomes.all.append(status)
                    key = (status.integration_uid, status.invoice.source_id)
                    if status.state.is_final and status.state is not InvoiceState.DUPLICATE:
                        self.outcomes.final.setdefault(key, (status, now))

    async def wait_for(
        self, keys: Iterable[tuple[str, str]], timeout: float
    ) -> set[tuple[str, str]]:
        """Wait until every key has a final state; returns the keys still missing."""
        wanted = set(keys)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Counting first: the set difference over thousands of keys, ten times a
            # second, was a tenth of the benchmark driver's CPU.
            if len(self.outcomes.final) >= len(wanted):
                missing = wanted - self.outcomes.final.keys()
                if not missing:
                    return set()
            await asyncio.sleep(0.1)
        return wanted - self.outcomes.final.keys()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()


def percentiles(values: list[float], points: Iterable[int] = (50, 95, 99)) -> dict[int, float]:
    if not values:
        return {p: float("nan") for p in points}
    ordered = sorted(values)
    return {p: ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] for p in points}


@dataclass
class LoadReport:
    sent: int
    accepted: int
    refused: dict[int, int]
    states: dict[str, int]
    missing: int
    seconds: float
    latencies: list[float]  # seconds, in the order the webhooks were sent
    statuses: list[InvoiceStatus] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        done = sum(self.states.values())
        return done / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        p = percentiles(self.latencies)
        return [
            f"webhooks sent      {self.sent} (accepted {self.accepted}"
            + (f", refused {self.refused}" if self.refused else "")
            + ")",
            "outcomes           "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.states.items()))
            + (f", no outcome yet {self.missing}" if self.missing else ""),
            f"throughput         {self.throughput:.1f} invoices/s over {self.seconds:.1f} s",
            f"webhook->final     p50 {p[50] * 1000:.0f} ms, p95 {p[95] * 1000:.0f} ms, "
            f"p99 {p[99] * 1000:.0f} ms",
            *self._trend(),
        ]

    def _trend(self) -> list[str]:
        """Whether the pipeline kept up: a backlog makes the last webhooks sent wait
        longer than the first; a pipeline that keeps pace gives them the same latency."""
        third = len(self.latencies) // 3
        if third < 10:
            return []
        first = percentiles(self.latencies[:third])
        last = percentiles(self.latencies[-third:])
        return [f"  by send order    p50 {first[50] * 1000:.0f} ms for the first third sent, "
                f"{last[50] * 1000:.0f} ms for the last third"]


async def drive(
    kafka: KafkaSettings,
    ingest_url: str,
    targets: list[tuple[str, str]],
    invoices: int,
    *,
    concurrency: int = 32,
    rate: float | None = None,
    timeout: float = 300.0,
    run: int | None = None,
) -> LoadReport:
    """Send `invoices` webhooks spread over `targets` ((uid, secret) pairs) and wait for
    every one to reach a final state. `rate` (per second) paces sending; None: flat out."""
    import random

    run = run if run is not None else random.randrange(1, 10**11)
    # Built and signed before the clock starts: they stand for what Zoho's servers send,
    # and those do not share this machine's CPU with the pipeline being measured.
    webhooks = [
        Webhook.of(*targets[n % len(targets)], zoho_invoice(n + 1, run=run))
        for n in range(invoices)
    ]
    watcher = StatusWatcher(kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    sent_at: dict[tuple[str, str], float] = {}
    refused: dict[int, int] = {}
    slots = asyncio.Semaphore(concurrency)
    started = time.monotonic()

    async def one(n: int, http: WebhookPoster) -> None:
        webhook = webhooks[n]
        key = (webhook.uid, webhook.source_id)
        sent_at[key] = time.monotonic()
        code = await post_webhook(http, ingest_url, webhook)
        if code != 202:
            refused[code] = refused.get(code, 0) + 1
            sent_at.pop(key, None)
        slots.release()

    async with WebhookPoster() as http:
        tasks = []
        for n in range(invoices):
            await slots.acquire()
            if rate:
                delay = started + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n, http)))
        await asyncio.gather(*tasks)
    missing = await watcher.wait_for(sent_at.keys(), timeout)
    seconds = time.monotonic() - started
    await watcher.stop()
    states: dict[str, int] = {}
    latencies = []
    for key, at in sent_at.items():
        hit = watcher.outcomes.final.get(key)
        if hit:
            states[hit[0].state.value] = states.get(hit[0].state.value, 0) + 1
            latencies.append(hit[1] - at)
    return LoadReport(invoices, len(sent_at), refused, states, len(missing), seconds, latencies,
                      watcher.outcomes.all)
