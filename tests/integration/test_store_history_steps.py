"""An invoice's history on both databases: received (the earliest delivery out of draft,
kept by a rebuild), signed (once per signature, at the signed request's own moment),
retried, fiscalized, edited after fiscalization (only when what the fiscal record states
changed), and the storno's steps on the invoice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from lxml import etree

from fiscal.hr_cis.document import RacunFields, TaxRowText, build_request
from runtime.store import Store
from runtime.store.journal import HistoryStep
from runtime.store.projection import signed_at
from schemas.events import Channel, InvoiceReceived, InvoiceRef, InvoiceState, InvoiceStatus
from schemas.invoice import SourceStatus
from tests.factories import make_invoice

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)  # 09:00 in Zagreb
UID = "int-h"


def _request(message_id: str, sent_at: str) -> str:
    fields = RacunFields(
        oib="69435151530", in_vat_system=True, issued_at="10.03.2026T09:00:00",
        sequence_mark="P", invoice_number="7", premises_code="POSL1", device_code="1",
        vat=(TaxRowText("25.00", "100.00", "25.00"),), total="125.00", payment_code="K",
        operator_oib="69435151530", protection_code="a" * 32, subsequent_delivery=False,
    )
    return etree.tostring(build_request(fields, message_id=message_id, sent_at=sent_at),
                          encoding="unicode")


def _ref(source: str = "inv-1", *, total: str = "125.00", customer: str = "Alfa obrt",
         version: str = "v1") -> InvoiceRef:
    return InvoiceRef(source_id=source, number="INV-7", version=version, customer=customer,
                      total=Decimal(total), issued_at=T0)


def _outcome(state: InvoiceState, at: datetime, *, attempt: int, message_id: str,
             sent_at: str, ref: InvoiceRef | None = None, **kw: object) -> InvoiceStatus:
    return InvoiceStatus(
        integration_uid=UID, occurred_at=at, invoice=ref or _ref(), state=state,
        attempt=attempt, message_id=message_id, signed_request=_request(message_id, sent_at),
        fiscal_number="7/POSL1/1", **kw,
    )


def _duplicate(at: datetime, ref: InvoiceRef) -> InvoiceStatus:
    return InvoiceStatus(integration_uid=UID, occurred_at=at, invoice=ref,
                         state=InvoiceState.DUPLICATE, reason_code="already_fiscalized",
                         message="Invoice INV-7 is already fiscalized.")


def _received(at: datetime, status: SourceStatus = SourceStatus.SENT) -> InvoiceReceived:
    invoice = make_invoice(source_id="inv-1", number="INV-7", status=status)
    return InvoiceReceived(integration_uid=UID, invoice=invoice, channel=Channel.WEBHOOK,
                           occurred_at=at)


def test_signed_at_reads_the_header_not_the_invoice_time() -> None:
    document = _request("m-1", "10.03.2026T09:00:07")
    assert signed_at(document) == T0 + timedelta(seconds=7)  # 09:00:07 in Zagreb
    assert signed_at("<Racun><DatVrijeme>10.03.2026T09:00:00</DatVrijeme></Racun>") is None
    assert signed_at(None) is None


async def test_every_step_with_its_own_moment(store: Store) -> None:
    retry = _outcome(InvoiceState.RETRYING, T0 + timedelta(seconds=3), attempt=1,
                     message_id="m-1", sent_at="10.03.2026T09:00:01",
                     reason_code="s006", message="CIS unavailable")
    done = _outcome(InvoiceState.FISCALIZED, T0 + timedelta(minutes=1, seconds=2), attempt=2,
                    message_id="m-2", sent_at="10.03.2026T09:01:00", reason_code="ok",
                    message="Fiscalized; JIR j-1.", receipt_id="j-1")
    # The write-back's own edit and a payment: a new version, nothing fiscal changed.
    same = _duplicate(T0 + timedelta(minutes=2), _ref(version="v2"))
    edited = _duplicate(T0 + timedelta(minutes=3), _ref(version="v3", total="150.00",
                                                         customer="Beta d.o.o."))
    storno = _outcome(InvoiceState.FISCALIZED, T0 + timedelta(minutes=4, seconds=1),
                      attempt=1, message_id="m-3", sent_at="10.03.2026T09:04:00",
                      ref=_ref("inv-1:storno", total="-125.00"), reason_code="ok",
                      message="Fiscalized; JIR j-2.", receipt_id="j-2")
    # In one batch and again (replayed): the steps are the same.
    for _ in range(2):
        await store.apply([retry, done, retry, same, edited, storno])
    # Deliveries: a draft (not counted), two of the issued invoice out of order.
    await store.record_received([_received(T0 - timedelta(minutes=9), SourceStatus.DRAFT)])
    await store.record_received([_received(T0 + timedelta(seconds=20))])
    await store.record_received([_received(T0 + timedelta(milliseconds=300)),
                                 _received(T0 + timedelta(seconds=40))])

    history = await store.journal.history(UID, "inv-1")
    steps = [(h.state, h.occurred_at, h.storno) for h in history]
    assert steps == [
        (HistoryStep.RECEIVED, T0 + timedelta(milliseconds=300), False),
        (HistoryStep.SIGNED, T0 + timedelta(seconds=1), False),
        (InvoiceState.RETRYING, T0 + timedelta(seconds=3), False),
        (HistoryStep.SIGNED, T0 + timedelta(minutes=1), False),
        (InvoiceState.FISCALIZED, T0 + timedelta(minutes=1, seconds=2), False),
        (InvoiceState.DUPLICATE, T0 + timedelta(minutes=2), False),
        (HistoryStep.EDITED, T0 + timedelta(minutes=3), False),
        (HistoryStep.SIGNED, T0 + timedelta(minutes=4), True),
        (InvoiceState.FISCALIZED, T0 + timedelta(minutes=4, seconds=1), True),
    ]
    edit = history[6]
    assert "total 125.00 -> 150.00 EUR" in edit.message
    assert "customer Alfa obrt -> Beta d.o.o." in edit.message
    assert "credit note" in edit.message
    assert history[0].reason_code == "webhook"
    assert [h.attempt for h in history if h.state is HistoryStep.SIGNED] == [1, 2, 1]
    # The journal row still shows the fiscalized invoice.
    entry = await store.journal.get(UID, "inv-1")
    assert entry is not None and entry.state is InvoiceState.FISCALIZED
    assert entry.total == Decimal("125.00")

    # A rebuild replays the status topic: the derived steps come back from it, and the
    # receipt, whose topic is not replayed, stays.
    await store.drop_projection()
    await store.apply([retry, done, same, edited, storno])
    assert [(h.state, h.occurred_at) for h in await store.journal.history(UID, "inv-1")] == [
        (s, at) for s, at, _ in steps
    ]
