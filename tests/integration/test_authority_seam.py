"""A second tax authority served through the seam (fiscal/authority.py) alone.

A V-SDC-shaped fake (tests/fake_authority.py: JSON, the server numbers and signs) is
registered next to hr-cis. The real Fiscalizer's decision path prepares its invoices
(no fiscal number drawn, nothing signed), the real Reporter submits them over HTTP to
the fake's stand-in server on a broker of the test's own and publishes the outcome,
and the write-back renders the receipt fields from the server's answer. None of those
services names the fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import SecretStr

import services.writeback.stage as stage
from fiscal.authorities import Authorities
from runtime.kafka.admin import ensure_topics
from runtime.kafka.local import LocalKafka
from runtime.settings import KafkaSettings
from schemas.events import Channel, InvoiceReceived, InvoiceSigned, InvoiceState, InvoiceStatus
from schemas.invoice import Customer
from schemas.topics import INVOICES_SIGNED, INVOICES_STATUS, registry
from services.fiscalizer.app import Fiscalizer
from services.fiscalizer.directory import IntegrationDirectory, IntegrationView
from services.fiscalizer.settings import FiscalizerSettings
from services.reporter.service import Reporter
from services.reporter.settings import ReporterSettings
from services.reporter.submit import Submitter
from tests.factories import make_invoice
from tests.fake_authority import NAME, FakeVsdcAuthority, FakeVsdcServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

UID = "vsdc-shop"


def view(authority: FakeVsdcAuthority, *, password: str = "secret",
         currency: str = "EUR") -> IntegrationView:
    return IntegrationView(
        uid=UID, status="active", tier="scale", authority=authority,
        fiscal_settings=authority.validate_settings({"pac": "PAC123", "currency": currency}),
        pfx=b"client-certificate", pfx_password=SecretStr(password),
        starts_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


class Integrations(dict[str, IntegrationView]):
    """The store as the fiscalizer's directory reads it (a cache of 0 s: read each time)."""

    async def load(self, uid: str) -> IntegrationView | None:
        return self.get(uid)


INTEGRATIONS = Integrations()


@pytest.fixture
def fiscalizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fiscalizer:
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    settings = FiscalizerSettings(app_id=f"seam-{uuid.uuid4().hex[:8]}", store="memory://")
    return Fiscalizer(KafkaSettings(), settings, IntegrationDirectory(INTEGRATIONS.load, 0))


async def decide(fiscalizer: Fiscalizer, integration: IntegrationView,
                 **invoice: object) -> tuple[str, bytes | None]:
    """The fiscalizer's decision on one received invoice: the topic and the value."""
    INTEGRATIONS[UID] = integration
    event = InvoiceReceived(integration_uid=UID, channel=Channel.WEBHOOK,
                            invoice=make_invoice(**invoice))
    outputs = await fiscalizer._on_received(event.to_json(), fiscalizer._pending.batch())
    assert len(outputs) == 1
    return outputs[0].topic, outputs[0].value


async def test_the_fiscalizer_prepares_for_an_authority_that_signs_on_its_server(
    fiscalizer: Fiscalizer,
) -> None:
    authority = FakeVsdcAuthority()

    topic, value = await decide(fiscalizer, view(authority), number="POS-1")

    assert topic == INVOICES_SIGNED.name and value is not None, value
    signed = InvoiceSigned.from_json(value)
    assert signed.profile == NAME and signed.protection_code == ""
    assert signed.fiscal_number is None  # the server numbers it
    assert json.loads(signed.document)["invoiceNumber"] == "POS-1"


async def test_the_authoritys_refusals_are_the_fiscalizers_statuses(
    fiscalizer: Fiscalizer,
) -> None:
    authority = FakeVsdcAuthority()

    topic, value = await decide(fiscalizer, view(authority, currency="FJD"))
    assert topic == INVOICES_STATUS.name and value is not None
    rejected = InvoiceStatus.from_json(value)
    assert rejected.state is InvoiceState.REJECTED
    assert rejected.reason_code == "unsupported_currency"

    topic, value = await decide(fiscalizer, view(authority, password="expired"),
                                source_id="other-invoice")
    assert topic == INVOICES_STATUS.name and value is not None
    blocked = InvoiceStatus.from_json(value)
    assert blocked.state is InvoiceState.BLOCKED and blocked.reason_code == "certificate_expired"


@pytest.fixture
async def own_kafka(broker: LocalKafka) -> AsyncIterator[KafkaSettings]:
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, partitions=1)
    wanted = {INVOICES_SIGNED.name, INVOICES_STATUS.name, INVOICES_SIGNED.dlq}
    assert (await ensure_topics(kafka, [t for t in registry(1) if t.name in wanted])).ok
    yield kafka


async def _statuses(kafka: KafkaSettings, count: int) -> list[InvoiceStatus]:
    consumer = AIOKafkaConsumer(INVOICES_STATUS.name, bootstrap_servers=kafka.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        found: list[InvoiceStatus] = []
        async with asyncio.timeout(60):
            while len(found) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [InvoiceStatus.from_json(r.value) for r in records]
        return found
    finally:
        await consumer.stop()


async def test_the_reporter_and_the_write_back_serve_it_through_the_seam(
    fiscalizer: Fiscalizer, own_kafka: KafkaSettings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    authority = FakeVsdcAuthority()
    accepted = InvoiceSigned.from_json((await decide(fiscalizer, view(authority),
                                                     number="POS-7"))[1] or b"")
    too_long = InvoiceSigned.from_json((await decide(
        fiscalizer, view(authority), source_id="buyer-too-long",
        customer=Customer(name="Buyer", tax_id="1" * 25)))[1] or b"")
    authorities = Authorities()
    authorities.register(NAME, FakeVsdcAuthority)

    with FakeVsdcServer().running() as server:
        producer = AIOKafkaProducer(bootstrap_servers=own_kafka.bootstrap_servers)
        await producer.start()
        try:
            for signed in (accepted, too_long):
                await producer.send_and_wait(INVOICES_SIGNED.name, signed.to_json(),
                                             key=signed.key)
        finally:
            await producer.stop()
        settings = ReporterSettings(group_id=f"seam-{uuid.uuid4().hex[:8]}")
        stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=10) as client:
            channel = authorities.get(NAME).channel(server.url, None)
            reporter = Reporter(own_kafka, settings, Submitter([client], {NAME: channel}),
                                authorities)
            run = asyncio.create_task(reporter.run(stop))
            try:
                statuses = await _statuses(own_kafka, 2)
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(run, 30)

    by_invoice = {s.invoice.source_id: s for s in statuses}
    fiscalized = by_invoice[accepted.invoice.source_id]
    assert fiscalized.state is InvoiceState.FISCALIZED, fiscalized.message
    assert fiscalized.receipt_id == "ABCD1234-ABCD1234-1"
    rejected = by_invoice[too_long.invoice.source_id]
    assert rejected.state is InvoiceState.REJECTED and rejected.reason_code == "2801"
    assert "buyerId: 2801" in rejected.message
    # The two submissions are concurrent: find the accepted one's request by its number.
    [headers] = [h for h, b in server.received if b["invoiceNumber"] == "POS-7"]
    assert headers["PAC"] == "PAC123" and len(server.received) == 2

    # The write-back renders the receipt from the server's answer, not the CIS's QR URL.
    monkeypatch.setattr(stage, "_AUTHORITIES", authorities)
    assert stage.values_of(fiscalized, NAME) == {
        "fiscal_number": "ABCD1234-ABCD1234-1", "qr_url": "https://vsdc.example/v/?vl=fake1"}
