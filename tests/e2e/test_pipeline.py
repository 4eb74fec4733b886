"""Webhook in, JIR out: counted in the CIS sandbox's ledger, the statuses on the topic,
and the store. Nothing lost, nothing reported twice."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter

import httpx
import pytest

from connectors.zoho.webhook import parse_webhook, signature_of
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.kafka.clients import producer as make_producer
from runtime.store.rebuild import publish_and_apply
from sandbox.load import StatusWatcher, drive, send_webhook, zoho_invoice
from sandbox.poster import WebhookPoster
from schemas.events import (
    Channel,
    IntegrationEvent,
    IntegrationEventKind,
    InvoiceReceived,
    InvoiceState,
    InvoiceStatus,
)
from schemas.topics import INVOICES_RECEIVED
from services.reporter.settings import ReporterSettings
from tests.e2e.conftest import TRIAL_LIMIT, Pipeline

REPORTER_CONCURRENCY = ReporterSettings().concurrency

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


def _ledger_keys(entries: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(e["oib"], e["br_ozn_rac"]) for e in entries]


def _numbers_run_from_one(entries: list[dict[str, object]]) -> None:
    """Per business (one premises each here): fiscal numbers 1, 2, ... n, none skipped,
    none used twice (the CIS sandbox's ledger is the witness)."""
    by_oib: dict[object, list[int]] = {}
    for e in entries:
        by_oib.setdefault(e["oib"], []).append(int(str(e["br_ozn_rac"])))
    for oib, numbers in by_oib.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), oib


def _fiscalized(statuses: list[InvoiceStatus], uids: set[str]) -> Counter[tuple[str, str]]:
    return Counter(
        (s.integration_uid, s.invoice.source_id)
        for s in statuses
        if s.integration_uid in uids and s.state is InvoiceState.FISCALIZED
    )


async def test_a_thousand_webhooks_for_three_integrations(pipeline: Pipeline) -> None:
    made = [await pipeline.integration() for _ in range(3)]
    report = await drive(
        pipeline.kafka, pipeline.stack.ingest_url, [(m.uid, m.webhook_secret) for m in made],
        1000, concurrency=32, timeout=300,
    )
    assert report.accepted == 1000, report.refused
    assert report.states == {"fiscalized": 1000}
    fiscalized = _fiscalized(report.statuses, {m.uid for m in made})
    assert len(fiscalized) == 1000 and set(fiscalized.values()) == {1}
    ledger = await pipeline.ledger({m.oib for m in made})
    keys = _ledger_keys(ledger)
    assert len(keys) == 1000 and len(set(keys)) == 1000
    _numbers_run_from_one(ledger)
    # Every JIR also reached the fiscal journal through the projector.
    for m in made:
        for _ in range(100):
            counts = await pipeline.store.journal.counts(m.uid)
            mine = sum(1 for k in fiscalized if k[0] == m.uid)
            if counts.get(InvoiceState.FISCALIZED, 0) == mine:
                break
            await asyncio.sleep(0.1)
        assert counts.get(InvoiceState.FISCALIZED) == sum(1 for k in fiscalized if k[0] == m.uid)


async def test_b_duplicate_webhooks_and_polls_fiscalize_once(pipeline: Pipeline) -> None:
    made = [await pipeline.integration() for _ in range(2)]
    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start(since_ms=0)
    producer = make_producer(pipeline.kafka)
    await producer.start()
    expected = set()
    try:
        async with WebhookPoster() as http:
            for n in range(1, 101):
                m = made[n % 2]
                payload = zoho_invoice(n, run=777_000 + n % 7)
                expected.add((m.uid, payload["invoice"]["invoice_id"]))  # type: ignore[index]
                first, second = await asyncio.gather(
                    send_webhook(http, pipeline.stack.ingest_url, m.uid, m.webhook_secret, payload),
                    send_webhook(http, pipeline.stack.ingest_url, m.uid, m.webhook_secret, payload),
                )
                assert first == second == 202
                polled = InvoiceReceived(
                    integration_uid=m.uid, invoice=parse_webhook(json.dumps(payload).encode()),
                    channel=Channel.POLL,
                )
                await producer.send_and_wait(
                    INVOICES_RECEIVED.name, polled.to_json(), key=polled.key
                )
        assert await watcher.wait_for(expected, timeout=120) == set()
        await asyncio.sleep(2)  # let any second fiscalization show itself
    finally:
        await producer.stop()
        await watcher.stop()
    uids = {m.uid for m in made}
    fiscalized = _fiscalized(watcher.outcomes.all, uids)
    assert len(fiscalized) == 100 and set(fiscalized.values()) == {1}
    # The two extra deliveries of each are each said to be duplicates. A delivery read
    # again (a fiscalizer that rewinds a partition, or exits stalled, reads from its
    # commit) says so again: statuses are at least once, fiscalization exactly once.
    duplicates = Counter((s.integration_uid, s.invoice.source_id) for s in watcher.outcomes.all
                         if s.integration_uid in uids and s.state is InvoiceState.DUPLICATE)
    assert set(duplicates) == expected and min(duplicates.values()) >= 2, duplicates
    keys = _ledger_keys(await pipeline.ledger({m.oib for m in made}))
    assert len(keys) == 100 and len(set(keys)) == 100


async def test_c_system_errors_are_retried_as_subsequent_deliveries(pipeline: Pipeline) -> None:
    made = await pipeline.integration()
    await pipeline.faults(s006=0.3)
    try:
        report = await drive(pipeline.kafka, pipeline.stack.ingest_url,
                             [(made.uid, made.webhook_secret)], 200, timeout=180)
    finally:
        await pipeline.faults(s006=0)
    assert report.states == {"fiscalized": 200}
    retrying = [s for s in report.statuses
                if s.integration_uid == made.uid and s.state is InvoiceState.RETRYING]
    retried = {s.fiscal_number for s in retrying}
    assert retried, "with 30% s006 some invoices must have been retried"
    # A submission left unanswered (a timeout on a loaded machine) may have been recorded
    # by the authority: sent again, that invoice may be in its ledger twice, the bound of
    # at least once. An answered s006 recorded nothing, so every other invoice is there
    # exactly once: first deliveries plain, the retried ones as subsequent deliveries.
    unanswered = {s.fiscal_number for s in retrying if s.reason_code in ("timeout", "connection")}
    ledger = await pipeline.ledger({made.oib})
    keys = _ledger_keys(ledger)
    assert len(set(keys)) == 200
    by_number: dict[object, list[bool]] = {}
    for e in ledger:
        by_number.setdefault(e["invoice_number"], []).append(bool(e["nak_dost"]))
    twice = {n for n, sent in by_number.items() if len(sent) > 1}
    assert twice <= unanswered, (twice, Counter(s.reason_code for s in retrying))
    answered = {n: sent for n, sent in by_number.items() if n not in unanswered}
    assert all(sent == [n in retried] for n, sent in answered.items()), answered


async def test_d_reporter_killed_mid_stream_loses_nothing(pipeline: Pipeline) -> None:
    made = [await pipeline.integration() for _ in range(2)]
    await pipeline.faults(latency_ms=20)
    try:
        load = asyncio.create_task(drive(
            pipeline.kafka, pipeline.stack.ingest_url,
            [(m.uid, m.webhook_secret) for m in made], 600, rate=150, timeout=240,
        ))
        await asyncio.sleep(2)
        pipeline.stack.kill("reporter")
        await pipeline.stack.wait_exit("reporter")
        await asyncio.sleep(1)
        await pipeline.stack.start_service("reporter")
        await pipeline.stack.wait_ready("reporter")
        report = await load
    finally:
        await pipeline.faults(latency_ms=5)
    assert report.states == {"fiscalized": 600}, report.lines()
    ledger = await pipeline.ledger({m.oib for m in made})
    keys = _ledger_keys(ledger)
    duplicates = len(keys) - len(set(keys))
    print(f"\nreporter SIGKILL: {len(set(keys))} invoices, {duplicates} reported twice")

    assert len(set(keys)) == 600
    # Only a submission the authority accepted in the instant before the kill, whose
    # outcome was not yet on the broker, can be sent again: at most those in flight.
    assert duplicates <= REPORTER_CONCURRENCY


async def test_d2_fiscalizer_killed_mid_stream_loses_nothing(pipeline: Pipeline) -> None:
    made = await pipeline.integration()
    since_ms = int(time.time() * 1000) - 1000
    load = asyncio.create_task(drive(
        pipeline.kafka, pipeline.stack.ingest_url, [(made.uid, made.webhook_secret)], 900,
        rate=150, timeout=240,
    ))
    # Killed once mid-stream and once again while it works through the backlog that
    # piled up meanwhile: each kill lands between a batch's outputs and its commit.
    for pause in (1.5, 3.0):
        await asyncio.sleep(pause)
        pipeline.stack.kill("fiscalizer")
        await pipeline.stack.wait_exit("fiscalizer")
        await pipeline.stack.start_service("fiscalizer")
        await pipeline.stack.wait_ready("fiscalizer")
    report = await load
    assert report.states == {"fiscalized": 900}, report.lines()
    ledger = await pipeline.ledger({made.oib})
    keys = _ledger_keys(ledger)
    print(f"\nfiscalizer SIGKILL x2: {len(set(keys))} invoices, "
          f"{len(keys) - len(set(keys))} reported twice; {report.lines()[-2:]}")

    assert len(set(keys)) == 900 and len(keys) == 900
    _numbers_run_from_one(ledger)
    # Each invoice signed once: a kill after its signature left sends that same message
    # again (its message id), never a second signature.
    signed = await pipeline.signed_since(since_ms, {made.uid})
    signatures = Counter(s.invoice.source_id for s in {s.message_id: s for s in signed}.values()
                         if s.attempt == 1)
    assert len(signatures) == 900 and set(signatures.values()) == {1}, signatures.most_common(3)


async def _received_end(pipeline: Pipeline) -> int:
    consumer = make_consumer(pipeline.kafka, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(await partitions_of(consumer, INVOICES_RECEIVED.name))
        return sum(ends.values())
    finally:
        await consumer.stop()


async def test_e_forged_malformed_oversized_publish_nothing(pipeline: Pipeline) -> None:
    live = await pipeline.integration()
    gone = await pipeline.integration()
    producer = make_producer(pipeline.kafka)
    await producer.start()
    try:
        await publish_and_apply(producer, pipeline.store, IntegrationEvent(
            integration_uid=gone.uid, kind=IntegrationEventKind.REMOVED))
    finally:
        await producer.stop()
    before = await _received_end(pipeline)
    url = f"{pipeline.stack.ingest_url}/webhook/zoho"
    body = json.dumps(zoho_invoice(1, run=999)).encode()
    malformed = b'{"invoice": {"invoice_id": "1"}}'
    huge = json.dumps({"invoice": {"notes": "x" * (1024 * 1024 + 1)}}).encode()
    cases = [
        (live.uid, body, None, 401, "missing_signature"),
        (live.uid, body, signature_of("wrong-secret-wrong-secret", body), 401, "bad_signature"),
        (live.uid, body + b" ", signature_of(live.webhook_secret, body), 401, "bad_signature"),
        (live.uid, b"not json", signature_of(live.webhook_secret, b"not json"), 400,
         "malformed_payload"),
        (live.uid, malformed, signature_of(live.webhook_secret, malformed), 400,
         "malformed_payload"),
        (live.uid, huge, signature_of(live.webhook_secret, huge), 413, "payload_too_large"),
        ("no-such-integration", body, signature_of(live.webhook_secret, body), 404,
         "unknown_integration"),
        (gone.uid, body, signature_of(gone.webhook_secret, body), 410, "integration_removed"),
    ]
    async with httpx.AsyncClient(timeout=30) as http:
        for uid, content, signature, status, error in cases:
            headers = {"Content-Type": "application/json"}
            if signature:
                headers["X-Zoho-Webhook-Signature"] = signature
            response = await http.post(f"{url}/{uid}", content=content, headers=headers)
            assert response.status_code == status, (error, response.text)
            assert response.json()["error"] == error and response.json()["detail"]
    assert await _received_end(pipeline) == before


async def test_f_over_the_licence_limit_is_blocked_not_signed(pipeline: Pipeline) -> None:
    trial = await pipeline.integration(tier="trial")
    report = await drive(pipeline.kafka, pipeline.stack.ingest_url,
                         [(trial.uid, trial.webhook_secret)], TRIAL_LIMIT + 3, concurrency=1,
                         timeout=60)
    assert report.states == {"fiscalized": TRIAL_LIMIT, "blocked": 3}
    blocked = [s for s in report.statuses if s.state is InvoiceState.BLOCKED]
    assert {s.reason_code for s in blocked} == {"license_limit"}
    assert all(s.message_id is None for s in blocked)  # never signed
    assert len(await pipeline.ledger({trial.oib})) == TRIAL_LIMIT
