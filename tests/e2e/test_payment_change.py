"""A fiscalized invoice whose payment method or buyer OIB changes (issue 15, item 3):
the same day, promijeniPodatkeRacuna through the whole pipeline (fiscalizer signs the
change, reporter sends it to the CIS sandbox, the status stream and the store's history
show it, the invoice stays fiscalized with its JIR) and only once however often the
same data arrive again; after the day of issue, nothing is sent and the bookkeeper is
told to issue a credit note and a new invoice. A change that arrives while the invoice is
still being fiscalized (CIS down, retrying) is held and sent once it is fiscalized."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from runtime.kafka.clients import producer as make_producer
from sandbox.load import StatusWatcher
from schemas.events import Channel, InvoiceReceived, InvoiceState, InvoiceStatus
from schemas.invoice import Customer, Invoice, Payment, PaymentMethod
from schemas.topics import INVOICES_RECEIVED
from tests.e2e.conftest import Pipeline
from tests.factories import make_invoice

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

BUYER_OIB = "98765432198"
_sources = itertools.count(470000000000000000 + int(time.time()) % 10**6 * 100)


def cash_invoice(issued_at: datetime) -> Invoice:
    invoice = make_invoice(source_id=str(next(_sources)), issued_at=issued_at,
                           last_modified_at=issued_at)
    return invoice.model_copy(update={
        "payments": (Payment(mode="cash", method=PaymentMethod.CASH, amount=invoice.total),)})


def paid_by_card(invoice: Invoice, minutes: int = 1) -> Invoice:
    """The same invoice edited in Zoho: the payment recorded by card, for a business."""
    return invoice.model_copy(update={
        "customer": Customer(name="Firma d.o.o.", tax_id=f"HR{BUYER_OIB}", country="HR"),
        "payments": (Payment(mode="creditcard", method=PaymentMethod.CARD,
                             amount=invoice.total),),
        "last_modified_at": invoice.last_modified_at + timedelta(minutes=minutes),
    })


async def deliver(pipeline: Pipeline, uid: str, invoice: Invoice,
                  occurred_at: datetime | None = None) -> None:
    event = InvoiceReceived(integration_uid=uid, invoice=invoice, channel=Channel.WEBHOOK,
                            occurred_at=occurred_at or datetime.now(UTC))
    producer = make_producer(pipeline.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(INVOICES_RECEIVED.name, event.to_json(), key=event.key)
    finally:
        await producer.stop()


async def statuses(watcher: StatusWatcher, uid: str, source_id: str, count: int,
                   timeout: float = 60) -> list[InvoiceStatus]:
    """The invoice's statuses once there are at least `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        mine = [s for s in watcher.outcomes.all
                if (s.integration_uid, s.invoice.source_id) == (uid, source_id)]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        await asyncio.sleep(0.1)


async def first_status(
    watcher: StatusWatcher, uid: str, source_id: str, after: int,
    wanted: Callable[[InvoiceStatus], bool], timeout: float = 60,
) -> tuple[InvoiceStatus, int]:
    """The invoice's first status after its first `after` that is `wanted`, and how many
    statuses it has then."""
    deadline = time.monotonic() + timeout
    while True:
        mine = await statuses(watcher, uid, source_id, 0, timeout=0)
        found = [s for s in mine[after:] if wanted(s)]
        if found:
            return found[0], len(mine)
        if time.monotonic() > deadline:
            raise AssertionError(f"no such status within {timeout}s: {mine[after:]}")
        await asyncio.sleep(0.1)


async def deliver_after_fiscalized(
    pipeline: Pipeline, watcher: StatusWatcher, uid: str, invoice: Invoice,
) -> tuple[InvoiceStatus, int]:
    """Deliver `invoice` once after the earlier fiscalization. The outcome reaches the
    fiscalizer on the status stream a moment after the watcher: until then the delivery
    is a duplicate of an invoice being fiscalized (already_signed), held and judged when
    the outcome arrives. Either way, the first other status, and how many statuses the
    invoice has then."""
    seen = len(await statuses(watcher, uid, invoice.source_id, 0, timeout=0))
    await deliver(pipeline, uid, invoice)
    return await first_status(watcher, uid, invoice.source_id, seen,
                              lambda s: s.reason_code != "already_signed")


def changes(ledger: list[dict[str, object]]) -> list[tuple[object, object]]:
    """The changes the CIS sandbox recorded for the business's one invoice."""
    (entry,) = ledger
    recorded: list[dict[str, object]] = entry.get("changes", [])  # type: ignore[assignment]
    return [(c["payment"], c["buyer_oib"]) for c in recorded]


async def test_a_payment_changed_the_same_day_is_changed_at_cis_once(pipeline: Pipeline) -> None:
    made = await pipeline.integration()
    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        cash = cash_invoice(datetime.now(UTC))
        await deliver(pipeline, made.uid, cash)
        (fiscalized,) = await statuses(watcher, made.uid, cash.source_id, 1)
        assert fiscalized.state is InvoiceState.FISCALIZED, fiscalized.message
        jir, number = fiscalized.receipt_id, fiscalized.fiscal_number
        assert jir and number

        card = paid_by_card(cash)
        changed, seen = await deliver_after_fiscalized(pipeline, watcher, made.uid, card)
        assert (changed.state, changed.reason_code) == (InvoiceState.FISCALIZED, "changed"), \
            changed.message
        assert "payment method G (cash) to K (card)" in changed.message
        assert f"buyer OIB none to {BUYER_OIB}" in changed.message
        assert changed.receipt_id is None and changed.fiscal_number == number
        assert changed.signed_request and "PromijeniPodatkeRacunaZahtjev" in changed.signed_request
        assert changes(await pipeline.ledger({made.oib})) == [("K", BUYER_OIB)]

        # The same data again (a redelivery, a poll, a replay): a duplicate, no second change.
        await deliver(pipeline, made.uid, card)
        await deliver(pipeline, made.uid, paid_by_card(cash, minutes=2))
        later = (await statuses(watcher, made.uid, cash.source_id, seen + 2))[seen:]
        assert [(s.state, s.reason_code) for s in later] == \
            [(InvoiceState.DUPLICATE, "already_fiscalized")] * 2, later
        await asyncio.sleep(2)  # let any second change show itself
        assert changes(await pipeline.ledger({made.oib})) == [("K", BUYER_OIB)]
        assert len(await statuses(watcher, made.uid, cash.source_id, 0, timeout=0)) == seen + 2

        # The store keeps the invoice fiscalized with its JIR; the change is in its history.
        for _ in range(100):
            history = await pipeline.store.journal.history(made.uid, cash.source_id)
            if any(h.reason_code == "changed" for h in history):
                break
            await asyncio.sleep(0.1)
        assert [h.message for h in history if h.reason_code == "changed"] == [changed.message]
        record = await pipeline.store.journal.get(made.uid, cash.source_id)
        assert record is not None and record.state is InvoiceState.FISCALIZED
        assert (record.receipt_id, record.reason_code) == (jir, fiscalized.reason_code)
    finally:
        await watcher.stop()


async def test_a_change_after_the_day_of_issue_is_too_late_and_nothing_is_sent(
    pipeline: Pipeline,
) -> None:
    made = await pipeline.integration()
    now = datetime.now(UTC)
    await pipeline.store.integrations.choose_start(made.uid, now - timedelta(days=3), now=now)
    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        yesterday = now - timedelta(days=1)
        cash = cash_invoice(yesterday).model_copy(update={"first_seen_issued_at": yesterday})
        await deliver(pipeline, made.uid, cash, occurred_at=yesterday)
        (fiscalized,) = await statuses(watcher, made.uid, cash.source_id, 1)
        assert fiscalized.state is InvoiceState.FISCALIZED, fiscalized.message

        too_late, seen = await deliver_after_fiscalized(pipeline, watcher, made.uid,
                                                        paid_by_card(cash))
        assert (too_late.state, too_late.reason_code) == (InvoiceState.REJECTED,
                                                          "change_too_late")
        assert "payment method (G to K)" in too_late.message
        assert "credit note" in too_late.message and too_late.message_id is None
        await asyncio.sleep(2)  # nothing was signed: no change reaches the CIS sandbox
        (entry,) = await pipeline.ledger({made.oib})
        assert "changes" not in entry
        assert len(await statuses(watcher, made.uid, cash.source_id, 0, timeout=0)) == seen
        for _ in range(100):
            history = await pipeline.store.journal.history(made.uid, cash.source_id)
            if any(h.reason_code == "change_too_late" for h in history):
                break
            await asyncio.sleep(0.1)
        assert any(h.reason_code == "change_too_late" for h in history)
        record = await pipeline.store.journal.get(made.uid, cash.source_id)
        assert record is not None and record.state is InvoiceState.FISCALIZED
        assert record.receipt_id == fiscalized.receipt_id
    finally:
        await watcher.stop()


async def test_a_card_payment_arriving_while_cis_is_down_is_changed_once_fiscalized(
    pipeline: Pipeline,
) -> None:
    made = await pipeline.integration()
    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        await pipeline.faults(outage_seconds=10)  # HTTP 503: the reporter retries
        cash = cash_invoice(datetime.now(UTC))
        await deliver(pipeline, made.uid, cash)
        await first_status(watcher, made.uid, cash.source_id, 0,
                           lambda s: s.state is InvoiceState.RETRYING)

        # Paid by card while the cash invoice is still retrying: being fiscalized, so a
        # duplicate as before, and the only delivery of the new data there is.
        card = paid_by_card(cash)
        await deliver(pipeline, made.uid, card)
        held, _ = await first_status(watcher, made.uid, cash.source_id, 0,
                                     lambda s: s.state is InvoiceState.DUPLICATE)
        assert held.reason_code == "already_signed", held.message
        assert (await pipeline.ledger({made.oib})) == []  # CIS is still down

        # Once CIS is back: fiscalized as paid in cash, then changed to card by itself.
        changed, seen = await first_status(watcher, made.uid, cash.source_id, 0,
                                           lambda s: s.reason_code == "changed", timeout=90)
        assert changed.state is InvoiceState.FISCALIZED, changed.message
        assert "payment method G (cash) to K (card)" in changed.message
        assert f"buyer OIB none to {BUYER_OIB}" in changed.message
        mine = await statuses(watcher, made.uid, cash.source_id, 0, timeout=0)
        fiscalized = [s for s in mine if s.state is InvoiceState.FISCALIZED]
        assert [s.reason_code == "changed" for s in fiscalized] == [False, True], mine
        assert fiscalized[0].receipt_id and changed.fiscal_number == fiscalized[0].fiscal_number
        (entry,) = await pipeline.ledger({made.oib})
        assert entry["jir"] == fiscalized[0].receipt_id
        assert changes([entry]) == [("K", BUYER_OIB)]

        # The new data again (a poll's copy): judged against the change sent, a duplicate.
        await deliver(pipeline, made.uid, card)
        again, _ = await first_status(watcher, made.uid, cash.source_id, seen,
                                      lambda s: True)
        assert (again.state, again.reason_code) == (InvoiceState.DUPLICATE,
                                                    "already_fiscalized"), again.message
        await asyncio.sleep(2)  # let any second change show itself
        (entry,) = await pipeline.ledger({made.oib})
        assert changes([entry]) == [("K", BUYER_OIB)]
        assert len(await statuses(watcher, made.uid, cash.source_id, 0, timeout=0)) == seen + 1
    finally:
        await pipeline.faults(outage_seconds=0.001)  # CIS is back for the module's others
        await watcher.stop()
