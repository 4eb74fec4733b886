"""Never give up on a due invoice (hr-fiscal-record.md, "Late delivery"): CIS down past
the (shortened) late-delivery deadline, the invoice is published `late` while it keeps
being retried, then fiscalized with NakDost=true once CIS is back; and an operator's
resend delivers a stuck invoice at once, and repeating it reports nothing again."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
import pytest_asyncio

from runtime import resend as resending
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import producer as make_producer
from sandbox.load import StatusWatcher, send_webhook, zoho_invoice
from sandbox.poster import WebhookPoster
from schemas.events import InvoiceState, InvoiceStatus
from tests.e2e.conftest import Pipeline, open_pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

LATE_AFTER_SECONDS = 6
# Slow enough that a resend visibly beats the next scheduled retry.
RETRY_BASE_SECONDS = 2
RETRY_CAP_SECONDS = 30


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def late_pipeline(
    kafka_bootstrap: str, kafka_topics: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    async with open_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("late-stack"), {
        "FISCOBRIDGE_REPORTER_LATE_AFTER": str(LATE_AFTER_SECONDS),
        "FISCOBRIDGE_REPORTER_RETRY_BASE": str(RETRY_BASE_SECONDS),
        "FISCOBRIDGE_REPORTER_RETRY_CAP": str(RETRY_CAP_SECONDS),
    }) as pipeline:
        yield pipeline


def mine(watcher: StatusWatcher, uid: str, source_id: str) -> list[InvoiceStatus]:
    return [s for s in watcher.outcomes.all
            if s.integration_uid == uid and s.invoice.source_id == source_id]


async def until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def issue(pipeline: Pipeline, n: int) -> tuple[str, str, str]:
    made = await pipeline.integration()
    payload = zoho_invoice(n, run=int(time.time()) % 100_000)
    async with WebhookPoster() as http:
        code = await send_webhook(http, pipeline.stack.ingest_url, made.uid,
                                  made.webhook_secret, payload)
    assert code == 202
    return made.uid, made.oib, str(payload["invoice"]["invoice_id"])  # type: ignore[index]


def resend_cli(pipeline: Pipeline, uid: str, source_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fiscobridge", "invoices", "resend", "--integration", uid,
         "--invoice", source_id],
        env={**os.environ, **pipeline.stack.env}, capture_output=True, text=True, timeout=120,
    )


async def test_late_while_cis_is_down_then_fiscalized_as_a_subsequent_delivery(
    late_pipeline: Pipeline,
) -> None:
    pipeline = late_pipeline
    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000))
    try:
        await pipeline.faults(outage_seconds=LATE_AFTER_SECONDS + 12)
        uid, oib, source_id = await issue(pipeline, 1)
        await until(lambda: any(s.late for s in mine(watcher, uid, source_id)),
                    LATE_AFTER_SECONDS + 30, "a late status")
        statuses = mine(watcher, uid, source_id)
        # Retrying all along, on time first and late after the deadline: never failed.
        assert {s.state for s in statuses} == {InvoiceState.RETRYING}
        assert not statuses[0].late and statuses[-1].late
        assert "Late" in statuses[-1].message
        await until(lambda: any(s.state is InvoiceState.FISCALIZED
                                for s in mine(watcher, uid, source_id)),
                    RETRY_CAP_SECONDS + 30, "the fiscalization")
        fiscalized = [s for s in mine(watcher, uid, source_id)
                      if s.state is InvoiceState.FISCALIZED]
        assert len(fiscalized) == 1 and fiscalized[0].late and fiscalized[0].attempt > 1
    finally:
        await watcher.stop()
    ledger = await pipeline.ledger({oib})
    assert len(ledger) == 1 and ledger[0]["nak_dost"] is True
    # Counted once as late (alert InvoicesLate).
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{pipeline.stack.ops_url('reporter')}/metrics")).text
    late = [line for line in text.splitlines()
            if line.startswith("fiscobridge_integration_invoices_total")
            and f'integration="{uid}"' in line and 'stage="late"' in line]
    assert late and float(late[0].rsplit(" ", 1)[1]) == 1.0


async def test_resend_delivers_a_stuck_invoice_now_and_never_twice(
    late_pipeline: Pipeline,
) -> None:
    pipeline = late_pipeline
    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000))
    try:
        await pipeline.faults(outage_seconds=600)
        uid, oib, source_id = await issue(pipeline, 2)
        # Attempt 5 failed: the next scheduled retry is 16-30 s away (base 2 s, doubled,
        # capped), far more than the command takes.
        await until(lambda: any(s.attempt >= 5 for s in mine(watcher, uid, source_id)),
                    120, "five failed attempts")
        stuck = mine(watcher, uid, source_id)[-1]
        assert stuck.state is InvoiceState.RETRYING
        due = re.search(r"retrying after (\S+) as a subsequent delivery", stuck.message)
        assert due is not None
        scheduled = datetime.fromisoformat(due.group(1))
        # The journal must hold that attempt (the resend is built from it).
        async def journaled() -> bool:
            record = await pipeline.store.journal.get(uid, source_id)
            return record is not None and record.message_id == stuck.message_id
        for _ in range(100):
            if await journaled():
                break
            await asyncio.sleep(0.1)
        await pipeline.faults(outage_seconds=0.001)  # CIS is back
        result = await asyncio.to_thread(resend_cli, pipeline, uid, source_id)
        assert result.returncode == 0, result.stderr
        assert f"resent {source_id}" in result.stdout
        await until(lambda: any(s.state is InvoiceState.FISCALIZED
                                for s in mine(watcher, uid, source_id)), 30, "fiscalization")
        fiscalized = next(s for s in mine(watcher, uid, source_id)
                          if s.state is InvoiceState.FISCALIZED)
        # The resend, not the scheduled retry, delivered it: before that retry was due,
        # as the attempt after the stuck one.
        assert fiscalized.attempt == stuck.attempt + 1
        assert fiscalized.occurred_at < scheduled
        # Resending a fiscalized invoice is refused by the command ...
        again = await asyncio.to_thread(resend_cli, pipeline, uid, source_id)
        assert again.returncode == 1 and "fiscalized" in again.stderr
        # ... and a resend request that still reaches the fiscalizer (a replay, or one
        # built from a journal that had not caught up) signs nothing.
        record = await pipeline.store.journal.get(uid, source_id)
        assert record is not None
        stale = [dataclasses.replace(record, state=InvoiceState.RETRYING,
                                     message_id=stuck.message_id)]
        consumer = make_consumer(pipeline.kafka, group_id=None)
        producer = make_producer(pipeline.kafka)
        await consumer.start()
        await producer.start()
        try:
            replayed = await resending.resend(consumer, producer, uid, stale, who="test",
                                              refetch=pipeline.store.refetch)
        finally:
            await producer.stop()
            await consumer.stop()
        assert replayed.sent == [source_id]
        await asyncio.sleep(RETRY_CAP_SECONDS / 3)  # the scheduled retry is due by now too
        after = mine(watcher, uid, source_id)
        assert [s.state for s in after].count(InvoiceState.FISCALIZED) == 1
        assert after[-1].state is InvoiceState.FISCALIZED
    finally:
        await watcher.stop()
    ledger = await pipeline.ledger({oib})
    assert len(ledger) == 1 and ledger[0]["nak_dost"] is True
