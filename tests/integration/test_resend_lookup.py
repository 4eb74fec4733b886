"""runtime/resend.py on a real broker: the signed message of an invoice's last attempt is
found on invoices.signed by its message id (on its integration's partition, from about
its outcome's time), and a resend request for it goes to invoices.resend."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from runtime import resend as resending
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import producer as make_producer
from runtime.settings import KafkaSettings
from runtime.store.journal import JournalRecord
from runtime.store.refetch import Document
from schemas.events import InvoiceRetry, InvoiceSigned, InvoiceState
from schemas.invoice import DocumentKind
from schemas.topics import INVOICES_RESEND, INVOICES_SIGNED
from tests.factories import make_invoice

pytestmark = [pytest.mark.kafka, pytest.mark.asyncio(loop_scope="session")]


class QueuedFake:
    """runtime.resend.RequestsRefetch, remembering what it was asked to queue."""

    def __init__(self) -> None:
        self.requested: list[tuple[str, set[Document]]] = []

    async def request(self, uid: str, documents: Iterable[Document], reason: str) -> int:
        self.requested.append((uid, set(documents)))
        return len(self.requested[-1][1])


def record(uid: str, source_id: str, message_id: str | None, state: InvoiceState,
           at: datetime) -> JournalRecord:
    return JournalRecord(
        integration_uid=uid, source_invoice_id=source_id, source_version="v1",
        invoice_number="INV-1", state=state, reason_code="s006", message="m",
        protection_code="z" * 32, fiscal_number="1/P/1", receipt_id=None,
        message_id=message_id, signed_request=None, signed_answer=None, attempts=3,
        first_seen_at=at, last_seen_at=at, fiscalized_at=None, last_event_id="e",
        last_occurred_at=at, kind="invoice", customer=None, total=Decimal("1.00"),
        issued_at=at,
    )


async def test_resend_finds_the_last_attempt_and_publishes_a_request(
    kafka_settings: KafkaSettings, kafka_topics: object,
) -> None:
    uid = f"resend-{datetime.now(UTC):%H%M%S%f}"
    invoice = make_invoice()
    producer = make_producer(kafka_settings)
    await producer.start()
    consumer = make_consumer(kafka_settings, group_id=None)
    await consumer.start()
    try:
        signed = []
        for attempt in (1, 2, 3):  # the attempts of one invoice, among another's
            event = InvoiceSigned(
                integration_uid=uid, invoice=invoice, profile="hr-cis",
                message_id=f"00000000-0000-4000-8000-00000000000{attempt}",
                protection_code="z" * 32, document="<x/>", attempt=attempt,
            )
            other = event.model_copy(update={"integration_uid": uid + "x"})
            for e in (event, other):
                await producer.send_and_wait(INVOICES_SIGNED.name, e.to_json(), key=e.key)
            signed.append(event)
        now = datetime.now(UTC)
        stuck = record(uid, invoice.source_id, signed[1].message_id, InvoiceState.FAILED, now)
        done = dataclasses.replace(stuck, source_invoice_id="other",
                                   state=InvoiceState.FISCALIZED)
        gone = dataclasses.replace(stuck, source_invoice_id="gone",
                                   message_id="00000000-0000-4000-8000-0000000000ff")
        # Refused before it was ever signed: read again from Zoho, not resent.
        blocked = dataclasses.replace(stuck, source_invoice_id="blocked", message_id=None,
                                      state=InvoiceState.BLOCKED, kind="credit_note")
        storno = dataclasses.replace(blocked, source_invoice_id="voided:storno", kind="invoice")
        queue = QueuedFake()
        outcome = await resending.resend(consumer, producer, uid,
                                         [stuck, done, gone, blocked, storno], "test",
                                         refetch=queue)
        assert outcome.sent == [invoice.source_id]
        assert set(outcome.refused) == {"other", "gone"}
        assert "fiscalized" in outcome.refused["other"]
        assert outcome.queued == ["blocked", "voided:storno"]
        # A storno is made again from its voided invoice: that is what is read again.
        assert queue.requested == [(uid, {Document("blocked", DocumentKind.CREDIT_NOTE),
                                          Document("voided", DocumentKind.INVOICE)})]
        # The request is on invoices.resend: built from attempt 2, due now.
        resend_consumer = make_consumer(kafka_settings, INVOICES_RESEND.name, group_id=None,
                                        auto_offset_reset="earliest")
        await resend_consumer.start()
        try:
            found = []
            for _ in range(20):
                batch = await resend_consumer.getmany(timeout_ms=500)
                found += [InvoiceRetry.from_json(r.value) for rs in batch.values() for r in rs
                          if r.key == uid.encode()]
                if found:
                    break
        finally:
            await resend_consumer.stop()
        assert len(found) == 1
        request = found[0]
        assert request.resend and request.attempt == 2 and request.invoice == invoice
        assert request.not_before == now or request.not_before >= now
    finally:
        await consumer.stop()
        await producer.stop()
