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
from decimal import Decimal

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from connectors.zoho.webhook import signature_of
from runtime.kafka.clients import consumer as make_consumer
from runtime.settings import KafkaSettings
from schemas.events import InvoiceState, InvoiceStatus
from schemas.topics import INVOICES_STATUS

ZAGREB_OFFSET = "+0100"


def zoho_invoice(n: int, *, prefix: str = "INV", status: str = "sent",
                 lines: int = 2, modified_minute: int = 0) -> dict[str, object]:
    """A Zoho Books invoice as its webhook's default payload carries it."""
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=modified_minute)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S") + "+0000"
    items, sub_total, tax_total = [], Decimal(0), Decimal(0)
    for i in range(lines):
        rate, qty = Decimal("12.50") + i, Decimal(1 + i)
        percent = Decimal(25) if i % 2 == 0 else Decimal(13)
        total = rate * qty
        items.append({
            "line_item_id": f"{n}{i:03d}", "name": f"Item {i}", "description": f"Item {i}",
            "rate": str(rate), "quantity": str(qty), "discount": 0,
            "tax_percentage": int(percent), "tax_name": f"PDV {percent}",
            "item_total": str(total),
        })
        sub_total += total
        tax_total += (total * percent / 100).quantize(Decimal("0.01"))
    return {
        "invoice": {
            "invoice_id": str(460000000000000000 + n),
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


@dataclass
class Sent:
    source_id: str
    sent_at: float
    status_code: int


async def send_webhook(
    http: httpx.AsyncClient, ingest_url: str, uid: str, secret: str, payload: dict[str, object]
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await http.post(
        f"{ingest_url}/webhook/zoho/{uid}",
        content=body,
        headers={"Content-Type": "application/json",
                 "X-Zoho-Webhook-Signature": signature_of(secret, body)},
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
        parts = consumer.partitions_for_topic(INVOICES_STATUS.name) or set()
        tps = [TopicPartition(INVOICES_STATUS.name, p) for p in sorted(parts)]
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

    async def wait_for(self, keys: Iterable[tuple[str, str]], timeout: float) -> set[tuple[str, str]]:
        """Wait until every key has a final state; returns the keys still missing."""
        wanted = set(keys)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
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
