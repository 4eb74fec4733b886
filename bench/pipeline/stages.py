"""Where an invoice's latency goes, from the broker's own timestamps.

Every record carries the time its producer created it, so the gaps between an invoice's
InvoiceReceived, InvoiceSigned and final InvoiceStatus split webhook->final into the
fiscalizer's part (fetch, batch, sign, publish) and the reporter's (fetch, CIS round
trip, verify, publish), with no clock but the one this machine shares.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping

from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.settings import KafkaSettings
from sandbox.load import percentiles
from schemas.events import InvoiceState
from schemas.topics import INVOICES_RECEIVED, INVOICES_SIGNED, INVOICES_STATUS

Key = tuple[bytes | None, str]  # (record key: integration uid, source invoice id)


async def first_seen(
    kafka: KafkaSettings, topic: str, since_ms: int, final_only: bool = False,
    timeout: float = 60.0,
) -> dict[Key, int]:
    """Each invoice's first record on `topic` at or after `since_ms`: its timestamp.

    Reads committed records only, so a transaction left open would keep a partition's
    end out of reach: after `timeout` it answers with what it has.
    """
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            hit = found.get(tp)
            consumer.seek(tp, hit.offset if hit else ends[tp])
        seen: dict[Key, int] = {}
        pending = {tp for tp in tps if (await consumer.position(tp)) < ends[tp]}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            batch = await consumer.getmany(*pending, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    value = json.loads(record.value or b"{}")
                    if final_only and not _final(value.get("state")):
                        continue
                    seen.setdefault((record.key, value["invoice"]["source_id"]), record.timestamp)
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return seen
    finally:
        await consumer.stop()


def _final(state: str | None) -> bool:
    if state is None:
        return False
    parsed = InvoiceState(state)
    return parsed.is_final and parsed is not InvoiceState.DUPLICATE


async def stage_gaps(kafka: KafkaSettings, since_ms: int) -> dict[str, list[float]]:
    """Seconds each invoice spent between its records, by stage."""
    received = await first_seen(kafka, INVOICES_RECEIVED.name, since_ms)
    signed = await first_seen(kafka, INVOICES_SIGNED.name, since_ms)
    final = await first_seen(kafka, INVOICES_STATUS.name, since_ms, final_only=True)
    stages: dict[str, list[float]] = {"received->signed (fiscalizer)": [],
                                      "signed->final (reporter, CIS)": []}
    for key, at in received.items():
        if key in signed and key in final:
            stages["received->signed (fiscalizer)"].append((signed[key] - at) / 1000)
            stages["signed->final (reporter, CIS)"].append((final[key] - signed[key]) / 1000)
    return stages


def gap_lines(stages: Mapping[str, Iterable[float]]) -> list[str]:
    lines = []
    for name, values in stages.items():
        p = percentiles(list(values))
        lines.append(f"{name:31s} p50 {p[50] * 1000:5.0f} ms, p95 {p[95] * 1000:5.0f} ms, "
                     f"p99 {p[99] * 1000:5.0f} ms")
    return lines
