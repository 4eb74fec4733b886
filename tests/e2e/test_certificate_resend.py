"""A certificate CIS does not accept, replaced, then the invoice resent: CIS answers s002
(its chain is not a fiscal CA's) and the invoice is rejected with the way out; once the
owner replaces the certificate, `fiscobridge invoices resend` delivers it signed with the
new one, as a subsequent delivery under the number it already had, and CIS records it
once."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fiscal.hr_cis.certificate import load_certificate
from fiscobridge.provision import demo_integration
from runtime.kafka.clients import producer as make_producer
from runtime.store.rebuild import publish_and_apply
from sandbox.cis.ca import TestCA
from sandbox.load import StatusWatcher, send_webhook, zoho_invoice
from sandbox.poster import WebhookPoster
from schemas.events import IntegrationEvent, IntegrationEventKind, InvoiceState, InvoiceStatus
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def _until_state(watcher: StatusWatcher, uid: str, source_id: str, state: InvoiceState,
                       timeout: float = 60) -> InvoiceStatus:
    deadline = time.monotonic() + timeout
    while True:
        found = [s for s in watcher.outcomes.all if s.integration_uid == uid
                 and s.invoice.source_id == source_id and s.state is state]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {state.value} status for {source_id}"
        await asyncio.sleep(0.2)


async def test_a_rejected_certificate_replaced_then_resent_is_fiscalized_once(
    pipeline: Pipeline, tmp_path: Path,
) -> None:
    made = await demo_integration(pipeline.store, pipeline.kafka, tmp_path / "foreign-ca")
    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000))
    try:
        payload = zoho_invoice(1, run=int(time.time()) % 100_000)
        source_id = str(payload["invoice"]["invoice_id"])  # type: ignore[index]
        async with WebhookPoster() as http:
            assert await send_webhook(http, pipeline.stack.ingest_url, made.uid,
                                      made.webhook_secret, payload) == 202
        rejected = await _until_state(watcher, made.uid, source_id, InvoiceState.REJECTED)
        assert rejected.reason_code == "s002", rejected
        assert "Replace the integration's certificate" in rejected.message
        assert "then resend the invoice" in rejected.message
        assert await pipeline.ledger({made.oib}) == []

        # The owner replaces it with one from the fiscal CA (the portal's page does this).
        password = secrets.token_urlsafe(12)
        pfx = TestCA.load_or_create(pipeline.stack.home / "sandbox-ca").issue_pfx(
            made.oib, password)
        info = await pipeline.store.integrations.replace_certificate(
            made.uid, pfx=pfx, password=password,
            certificate=load_certificate(pfx, password, expected_oib=made.oib))
        producer = make_producer(pipeline.kafka)
        await producer.start()
        try:
            await publish_and_apply(producer, pipeline.store, IntegrationEvent(
                integration_uid=made.uid, kind=IntegrationEventKind.CERTIFICATE_REPLACED,
                reason="replaced in the test",
                details={"fingerprint_sha256": info.fingerprint_sha256}))
        finally:
            await producer.stop()
        # The resend is built from the journal's record of the rejected attempt.
        for _ in range(100):
            record = await pipeline.store.journal.get(made.uid, source_id)
            if record is not None and record.state is InvoiceState.REJECTED:
                break
            await asyncio.sleep(0.1)
        resent = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "fiscobridge", "invoices", "resend", "--integration",
             made.uid, "--invoice", source_id],
            env={**os.environ, **pipeline.stack.env}, capture_output=True, text=True,
            timeout=120)
        assert resent.returncode == 0, resent.stderr
        fiscalized = await _until_state(watcher, made.uid, source_id, InvoiceState.FISCALIZED)
    finally:
        await watcher.stop()
    assert rejected.fiscal_number is not None
    assert fiscalized.fiscal_number == rejected.fiscal_number
    assert fiscalized.attempt == rejected.attempt + 1
    (entry,) = await pipeline.ledger({made.oib})
    assert entry["nak_dost"] is True
    assert str(entry["br_ozn_rac"]) == rejected.fiscal_number.split("/")[0]
