"""Bounded fiscalizer state, on the real pipeline: a fiscalized invoice's entry is deleted
once past the retention (tombstoned in the changelog, so a restart does not bring it
back), while the fiscal-number sequences are kept: the same invoices delivered again
after the retention are new to the fiscalizer and draw the next numbers, never the
ones already used."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from aiokafka import TopicPartition

from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from sandbox.load import drive
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

RETENTION_SECONDS = 3.0


async def _changelog(pipeline: Pipeline, since: dict[TopicPartition, int], topic: str,
                     ) -> list[tuple[str, bytes | None]]:
    """(key, value) of the changelog's records after `since`, up to its end now."""
    consumer = make_consumer(pipeline.kafka, group_id=None)
    await consumer.start()
    out: list[tuple[str, bytes | None]] = []
    try:
        ends = await consumer.end_offsets(list(since))
        todo = {tp: end for tp, end in ends.items() if end > since[tp]}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, since[tp])
        while todo:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out += [(json.loads(r.key), r.value) for r in records if r.offset < todo[tp]]
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
    finally:
        await consumer.stop()
    return out


async def _ends(pipeline: Pipeline, topic: str) -> dict[TopicPartition, int]:
    consumer = make_consumer(pipeline.kafka, group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(await partitions_of(consumer, topic))
    finally:
        await consumer.stop()


async def _restart_fiscalizer(pipeline: Pipeline, **env: str | None) -> None:
    for name, value in env.items():
        if value is None:
            pipeline.stack.extra_env.pop(name, None)
        else:
            pipeline.stack.extra_env[name] = value
    pipeline.stack.kill("fiscalizer", signal.SIGTERM)
    assert await pipeline.stack.wait_exit("fiscalizer", timeout=90) == 0
    await pipeline.stack.start_service("fiscalizer")
    await pipeline.stack.wait_ready("fiscalizer")


async def test_fiscalized_entries_expire_and_sequences_stay(pipeline: Pipeline) -> None:
    made = await pipeline.integration()
    app_id = pipeline.stack.extra_env["FISCOBRIDGE_FISCALIZER_APP_ID"]
    changelog = f"{app_id}-invoice-state-changelog"
    first = await drive(pipeline.kafka, pipeline.stack.ingest_url,
                        [(made.uid, made.webhook_secret)], 20, timeout=120, run=4242)
    assert first.states == {"fiscalized": 20}, first.lines()
    since = await _ends(pipeline, changelog)
    settings = {"FISCOBRIDGE_FISCALIZER_STATE_RETENTION_DAYS": str(RETENTION_SECONDS / 86400),
                "FISCOBRIDGE_FISCALIZER_STATE_SWEEP": "1"}
    await _restart_fiscalizer(pipeline, **settings)
    try:
        entries = {f"{made.uid}:{s.invoice.source_id}" for s in first.statuses
                   if s.integration_uid == made.uid}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tombstones = {k for k, v in await _changelog(pipeline, since, changelog)
                          if v is None}
            if entries <= tombstones:
                break
            await asyncio.sleep(1)
        assert entries <= tombstones, f"{len(entries - tombstones)} entries never deleted"
        assert not {k for k in tombstones if not k.startswith(f"{made.uid}:")
                    and made.uid in k}, "a sequence of the integration was deleted"
        # A restart reads the tombstones: the entries stay gone. Delivered again, the
        # invoices are new and draw numbers 21..40 from the sequence that was kept. (The
        # reporter, restarted, no longer remembers them either, as 90 days on: what it
        # remembers of fiscalized invoices is bounded and lives in the process.)
        await _restart_fiscalizer(pipeline)
        pipeline.stack.kill("reporter", signal.SIGTERM)
        assert await pipeline.stack.wait_exit("reporter", timeout=90) == 0
        await pipeline.stack.start_service("reporter")
        await pipeline.stack.wait_ready("reporter")
        again = await drive(pipeline.kafka, pipeline.stack.ingest_url,
                            [(made.uid, made.webhook_secret)], 20, timeout=120, run=4242)
    finally:
        await _restart_fiscalizer(pipeline, **dict.fromkeys(settings))
    assert again.states == {"fiscalized": 20}, again.lines()
    ledger = await pipeline.ledger({made.oib})
    assert sorted(int(str(e["br_ozn_rac"])) for e in ledger) == list(range(1, 41))
