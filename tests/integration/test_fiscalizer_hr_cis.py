"""The real Fiscalizer's decision path for Croatian invoices, run in-process (no broker:
its outputs are read as they would be sent, its table writes staged as a batch stages
them). What hr-fiscal-record.md asks of it:

- a business with an OIB paying by transfer is an e-invoice: `skipped` with the reason
  code `e_invoice`, nothing signed and no number drawn (W5);
- BrOznRac runs from 1 per premises (OznSlijed P) or per premises and device (N) (N3);
- a new calendar year in Zagreb time starts again at 1 (N4);
- DatVrijeme is the moment FiscoBridge first saw the invoice out of draft (the event's
  `occurred_at`), in Croatian time: never Zoho's `created_time`, never midnight of the
  invoice's date (D1).
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from pydantic import SecretStr

from fiscal.hr_cis.authority import HrCisAuthority
from fiscal.hr_cis.settings import FiscalSettings, TaxTreatment
from fiscal.hr_cis.soap import F73_NS
from runtime.settings import KafkaSettings
from schemas.events import (
    Channel,
    InvoiceReceived,
    InvoiceRef,
    InvoiceRetry,
    InvoiceSigned,
    InvoiceState,
    InvoiceStatus,
)
from schemas.invoice import (
    Customer,
    Invoice,
    Payment,
    PaymentMethod,
    SourceStatus,
    TaxLine,
    UntaxedLine,
)
from schemas.topics import INVOICES_SIGNED, INVOICES_STATUS
from services.fiscalizer.app import Fiscalizer
from services.fiscalizer.directory import IntegrationDirectory, IntegrationView
from services.fiscalizer.pending import Batch, Pending
from services.fiscalizer.rules import Trigger
from services.fiscalizer.settings import FiscalizerSettings
from tests.factories import ZAGREB, make_invoice, make_line
from tests.fixtures.certs import Pfx

pytestmark = pytest.mark.asyncio(loop_scope="session")

TNS = f"{{{F73_NS}}}"
BUYER_OIB = "98765432198"
_sources = itertools.count(470000000000000000)
D_TOTAL = make_invoice().total


class Integrations(dict[str, IntegrationView]):
    async def load(self, uid: str) -> IntegrationView | None:
        return self.get(uid)


class Run:
    """One fiscalizer and one batch: each decision is committed as `_process` commits an
    event, so the next one sees its entry and the numbers it drew."""

    def __init__(self, fiscalizer: Fiscalizer, integrations: Integrations, pfx: Pfx) -> None:
        self.fiscalizer, self.integrations, self.pfx = fiscalizer, integrations, pfx
        self.batch: Batch = fiscalizer._pending.batch()

    def integration(self, uid: str, settings: FiscalSettings,
                    trigger: Trigger = Trigger.ISSUED) -> str:
        authority = HrCisAuthority()
        self.integrations[uid] = IntegrationView(
            uid=uid, status="active", tier="scale", authority=authority, trigger=trigger,
            fiscal_settings=authority.validate_settings(settings.model_dump(mode="json")),
            pfx=self.pfx.data, pfx_password=SecretStr(self.pfx.password),
            starts_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
        return uid

    async def received(self, uid: str, invoice: Invoice,
                       seen: datetime | None = None) -> tuple[str, bytes]:
        event = InvoiceReceived(integration_uid=uid, channel=Channel.WEBHOOK, invoice=invoice,
                                **({"occurred_at": seen} if seen else {}))
        outputs = await self.fiscalizer._on_received(event.to_json(), self.batch)
        self.batch.commit_event(None)
        assert len(outputs) == 1 and outputs[0].value is not None, outputs
        return outputs[0].topic, outputs[0].value

    async def signed(self, uid: str, invoice: Invoice,
                     seen: datetime | None = None) -> InvoiceSigned:
        topic, value = await self.received(uid, invoice, seen)
        assert topic == INVOICES_SIGNED.name, InvoiceStatus.from_json(value).message
        return InvoiceSigned.from_json(value)


@pytest.fixture(name="run")
def run_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_pfx: Pfx) -> Run:
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    integrations = Integrations()
    settings = FiscalizerSettings(app_id=f"hr-{uuid.uuid4().hex[:8]}", store="memory://")
    fiscalizer = Fiscalizer(KafkaSettings(), settings, IntegrationDirectory(integrations.load, 0))
    # Not started, the consumer holds no partitions (faust raises instead of saying so):
    # the numbers drawn come from the staged sequence counters alone.
    monkeypatch.setattr(fiscalizer.app.consumer, "assignment", frozenset)
    return Run(fiscalizer, integrations, demo_pfx)


def invoice(**fields: object) -> Invoice:
    return make_invoice(source_id=str(next(_sources)), **fields)


def racun(signed: InvoiceSigned) -> etree._Element:
    found = etree.fromstring(signed.document.encode()).find(f"{TNS}Racun")
    assert found is not None
    return found


def number_of(signed: InvoiceSigned) -> tuple[str, str, str, str]:
    """(OznSlijed, BrOznRac, OznPosPr, OznNapUr) as signed."""
    doc = racun(signed)

    def text(path: str) -> str:
        return doc.findtext(path) or ""

    return (text(f"{TNS}OznSlijed"), text(f"{TNS}BrRac/{TNS}BrOznRac"),
            text(f"{TNS}BrRac/{TNS}OznPosPr"), text(f"{TNS}BrRac/{TNS}OznNapUr"))


# --- W5: e-invoice ---------------------------------------------------------------------


async def test_a_business_paying_by_transfer_is_skipped_as_an_e_invoice_and_draws_no_number(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    uid = run.integration("hr-shop", fiscal_settings)
    transfer = invoice(
        customer=Customer(name="Firma d.o.o.", tax_id=f"HR{BUYER_OIB}", country="HR"),
        payments=(Payment(mode="banktransfer", method=PaymentMethod.BANK_TRANSFER,
                          amount=D_TOTAL),),
    )
    topic, value = await run.received(uid, transfer)
    assert topic == INVOICES_STATUS.name
    status = InvoiceStatus.from_json(value)
    assert (status.state, status.reason_code) == (InvoiceState.SKIPPED, "e_invoice")
    assert "e-invoice" in status.message and BUYER_OIB in status.message
    assert status.fiscal_number is None
    # Nothing was drawn for it: the next invoice is number 1.
    first = await run.signed(uid, invoice())
    assert number_of(first)[1] == "1"


# --- N3: per premises (P) and per device (N) -------------------------------------------


async def test_numbers_run_per_premises_with_p_and_per_device_with_n(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    def at(premises: str, device: str, mark: str) -> FiscalSettings:
        return fiscal_settings.model_copy(update={
            "premises_code": premises, "device_code": device, "sequence_mark": mark})

    registers = {
        "p-a1": at("POSL1", "1", "P"), "p-a2": at("POSL1", "2", "P"),
        "p-b1": at("POSL2", "1", "P"),
        "n-c1": at("POSL3", "1", "N"), "n-c2": at("POSL3", "2", "N"),
    }
    # One integration whose register (premises, device, mark) changes between invoices.
    drawn: list[tuple[str, tuple[str, str, str, str]]] = []
    for name in ("p-a1", "p-a2", "p-b1", "p-a1", "n-c1", "n-c2", "n-c1", "p-b1", "n-c2",
                 "n-c1"):
        run.integration("shop", registers[name])
        drawn.append((name, number_of(await run.signed("shop", invoice()))))

    assert drawn == [
        ("p-a1", ("P", "1", "POSL1", "1")),
        ("p-a2", ("P", "2", "POSL1", "2")),  # P: devices of one premises share it
        ("p-b1", ("P", "1", "POSL2", "1")),  # another premises starts at 1
        ("p-a1", ("P", "3", "POSL1", "1")),
        ("n-c1", ("N", "1", "POSL3", "1")),
        ("n-c2", ("N", "1", "POSL3", "2")),  # N: each device its own sequence
        ("n-c1", ("N", "2", "POSL3", "1")),
        ("p-b1", ("P", "2", "POSL2", "1")),
        ("n-c2", ("N", "2", "POSL3", "2")),
        ("n-c1", ("N", "3", "POSL3", "1")),
    ]


async def test_two_integrations_never_share_a_sequence(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    run.integration("shop-a", fiscal_settings)
    run.integration("shop-b", fiscal_settings)
    numbers = [number_of(await run.signed(uid, invoice()))[1]
               for uid in ("shop-a", "shop-b", "shop-a", "shop-b", "shop-b")]
    assert numbers == ["1", "1", "2", "2", "3"]


# --- N4: the year in Zagreb time ---------------------------------------------------------


async def test_a_new_year_in_zagreb_starts_again_at_one(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    uid = run.integration("hr-shop", fiscal_settings)
    last_second = datetime(2026, 12, 31, 23, 59, 59, tzinfo=ZAGREB)
    new_year = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)  # 1 Jan 2027 00:00:00 in Zagreb
    assert new_year.astimezone(ZAGREB) == datetime(2027, 1, 1, tzinfo=ZAGREB)
    old = [await run.signed(uid, invoice(), datetime(2026, 12, 31, 10, tzinfo=ZAGREB)),
           await run.signed(uid, invoice(), last_second)]
    new = [await run.signed(uid, invoice(), new_year),
           await run.signed(uid, invoice(), datetime(2027, 1, 1, 9, tzinfo=ZAGREB))]

    assert [s.fiscal_number.number for s in (*old, *new) if s.fiscal_number] == [1, 2, 1, 2]
    assert [s.fiscal_number.year for s in (*old, *new) if s.fiscal_number] == \
        [2026, 2026, 2027, 2027]
    assert [racun(s).findtext(f"{TNS}DatVrijeme") for s in (old[1], new[0])] == \
        ["31.12.2026T23:59:59", "01.01.2027T00:00:00"]
    assert [number_of(s)[1] for s in (*old, *new)] == ["1", "2", "1", "2"]


# --- D1: DatVrijeme ---------------------------------------------------------------------


async def test_dat_vrijeme_is_when_fiscobridge_first_saw_it_out_of_draft(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    uid = run.integration("hr-shop", fiscal_settings)
    # Zoho: created as a draft at 09:30:15 on the 25th (created_time, the invoice's date);
    # it left draft, and FiscoBridge saw it, at 14:05:07 UTC, 15:05:07 in Zagreb.
    draft_time = datetime(2026, 11, 25, 9, 30, 15, tzinfo=ZAGREB)
    seen = datetime(2026, 11, 25, 14, 5, 7, tzinfo=UTC)
    first = invoice(issued_at=draft_time, created_at=draft_time)
    signed = await run.signed(uid, first, seen)
    assert racun(signed).findtext(f"{TNS}DatVrijeme") == "25.11.2026T15:05:07"
    assert signed.invoice.first_seen_issued_at == seen
    # Dated another day in Zoho (the mapping's midnight of the date): the same rule.
    dated = invoice(issued_at=datetime(2026, 11, 20, tzinfo=ZAGREB), created_at=draft_time)
    signed = await run.signed(uid, dated, seen)
    assert racun(signed).findtext(f"{TNS}DatVrijeme") == "25.11.2026T15:05:07"

    # The same invoice delivered again later (a poll) is a duplicate: the moment stays.
    topic, value = await run.received(uid, first, datetime(2026, 11, 25, 16, tzinfo=UTC))
    assert topic == INVOICES_STATUS.name
    assert InvoiceStatus.from_json(value).state is InvoiceState.DUPLICATE


async def test_dat_vrijeme_is_when_it_left_draft_also_when_only_paid_invoices_are_fiscalized(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    """An integration that fiscalizes paid invoices only: seen sent on the 25th, paid on
    the 27th; signed on the 27th with the moment it left draft, as a subsequent delivery
    (NakDost: it was issued without a JIR)."""
    uid = run.integration("hr-paid", fiscal_settings, trigger=Trigger.PAID)
    sent = invoice(status=SourceStatus.SENT)
    seen = datetime(2026, 11, 25, 14, 5, 7, tzinfo=UTC)
    for at in (seen, datetime(2026, 11, 26, 8, tzinfo=UTC)):  # unpaid, twice: nothing out
        event = InvoiceReceived(integration_uid=uid, channel=Channel.POLL, invoice=sent,
                                occurred_at=at)
        assert await run.fiscalizer._on_received(event.to_json(), run.batch) == []
        run.batch.commit_event(None)
    paid = sent.model_copy(update={"status": SourceStatus.PAID})
    signed = await run.signed(uid, paid, datetime(2026, 11, 27, 10, tzinfo=UTC))
    assert racun(signed).findtext(f"{TNS}DatVrijeme") == "25.11.2026T15:05:07"
    assert (signed.attempt, signed.subsequent_delivery) == (1, True)
    assert racun(signed).findtext(f"{TNS}NakDost") == "true"


async def test_refused_before_signing_then_let_through_keeps_when_it_was_first_seen(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    """Blocked (the integration inactive) or rejected by the fiscal record (an amount
    without VAT the tax mapping does not name) when first seen out of draft: it was
    issued then all the same. Once let through (reconnected, the mapping set), the same
    version read again (runtime/store/refetch.py) is signed with that first moment, as a
    subsequent delivery (NakDost), not as an invoice issued now."""
    uid = run.integration("hr-held", fiscal_settings)
    first_seen = datetime(2026, 11, 25, 14, 5, 7, tzinfo=UTC)
    later = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)

    inactive = invoice()
    run.integrations[uid] = replace(run.integrations[uid], status="inactive")
    _, value = await run.received(uid, inactive, first_seen)
    assert InvoiceStatus.from_json(value).reason_code == "integration_inactive"
    run.integrations[uid] = replace(run.integrations[uid], status="active")
    signed = await run.signed(uid, inactive, later)
    assert racun(signed).findtext(f"{TNS}DatVrijeme") == "25.11.2026T15:05:07"
    assert signed.subsequent_delivery and racun(signed).findtext(f"{TNS}NakDost") == "true"

    untaxed = invoice(
        lines=(make_line("Kava", "1", "100.00", "25"), make_line("Tečaj", "1", "40.00", "0")),
        taxes=(TaxLine(rate=Decimal(25), base=Decimal("100.00"), amount=Decimal("25.00"),
                       tax_id="4600001"),),
        untaxed=(UntaxedLine(base=Decimal("40.00"), tax_id="4600009", name="PDV 0"),),
        subtotal=Decimal("140.00"), tax_total=Decimal("25.00"),
    )
    _, value = await run.received(uid, untaxed, first_seen)
    assert InvoiceStatus.from_json(value).reason_code == "untaxed_amount_unmapped"
    mapped = fiscal_settings.model_copy(
        update={"tax_mapping": {"4600009": TaxTreatment(category="exempt")}})
    run.integration(uid, mapped)
    signed = await run.signed(uid, untaxed, later)
    assert racun(signed).findtext(f"{TNS}DatVrijeme") == "25.11.2026T15:05:07"
    assert racun(signed).findtext(f"{TNS}IznosOslobPdv") == "40.00"
    assert signed.subsequent_delivery


async def test_a_document_the_mapping_blocked_keeps_when_the_poller_first_saw_it(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    """Shown blocked by the poller (Zoho's document could not be mapped): the fiscalizer
    notes that moment from the status, and the corrected version is signed with it."""
    uid = run.integration("hr-mapped", fiscal_settings)
    document = invoice()
    shown = datetime(2026, 11, 25, 14, 5, 7, tzinfo=UTC)
    blocked = InvoiceStatus(integration_uid=uid, invoice=InvoiceRef.of(document),
                            state=InvoiceState.BLOCKED, reason_code="totals_mismatch",
                            message="cannot be fiscalized as it is", occurred_at=shown)
    assert await run.fiscalizer._on_status(blocked.to_json(), run.batch) == []
    run.batch.commit_event(None)
    corrected = document.model_copy(
        update={"last_modified_at": datetime(2026, 11, 26, 7, tzinfo=UTC)})
    signed = await run.signed(uid, corrected, datetime(2026, 11, 26, 8, tzinfo=UTC))
    assert racun(signed).findtext(f"{TNS}DatVrijeme") == "25.11.2026T15:05:07"
    assert signed.subsequent_delivery
    # A status of an integration this fiscalizer does not know notes nothing.
    stranger = blocked.model_copy(update={"integration_uid": "nobody"})
    assert await run.fiscalizer._on_status(stranger.to_json(), run.batch) == []
    assert run.fiscalizer._entry(run.batch, "nobody", document.source_id) is None


# --- N1: signed once, through a crash ---------------------------------------------------


async def test_a_delivery_read_again_after_a_crash_sends_the_same_signature(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    """Killed after a batch's signature left but before the rest of its writes reached
    the changelog: only the durable writes (the number and the signature made under it)
    survive, and the delivery is read again. It sends that same message again (one
    signature: same message id, same document), and the sequence goes on from it."""
    uid = run.integration("hr-crash", fiscal_settings)
    first_invoice = invoice()
    first = await run.signed(uid, first_invoice)
    survived = run.batch.take_durable()
    assert survived, "the number must reach the changelog before its signature leaves"

    # The restart: a new worker whose tables hold only what survived.
    run.fiscalizer._pending = Pending()
    run.fiscalizer._highest, run.fiscalizer._highest_for = {}, None
    run.batch = run.fiscalizer._pending.batch()
    for _, table, key, value in survived:
        run.batch.set(table, key, value)
    run.batch.commit_event(None)

    topic, again = await run.received(uid, first_invoice)
    assert topic == INVOICES_SIGNED.name
    assert again == first.to_json()
    assert number_of(await run.signed(uid, invoice()))[1] == "2"
    # Sent again once: from now on the invoice is being fiscalized, a duplicate.
    topic, value = await run.received(uid, first_invoice)
    assert (topic, InvoiceStatus.from_json(value).state) == \
        (INVOICES_STATUS.name, InvoiceState.DUPLICATE)


async def test_a_retry_read_again_after_a_crash_sends_the_same_signature(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    """Killed after a retry's signature left but before its entry reached the changelog:
    the retry read again sends that same message (same message id), never a second
    signature the reporter would take for another submission and report again."""
    uid = run.integration("hr-retry-crash", fiscal_settings)
    first = await run.signed(uid, invoice())
    source_id = first.invoice.source_id
    settled = run.fiscalizer._entry(run.batch, uid, source_id)
    retry = InvoiceRetry(
        integration_uid=uid, invoice=first.invoice, profile=first.profile,
        protection_code=first.protection_code, attempt=1,
        first_attempt_at=first.first_attempt_at, not_before=datetime.now(UTC),
        reason_code="s006", message="system error", fiscal_number=first.fiscal_number)
    [signed] = await run.fiscalizer._on_retry(retry.to_json(), run.batch)
    run.batch.commit_event(None)
    resigned = InvoiceSigned.from_json(signed.value or b"")
    assert (resigned.attempt, resigned.subsequent_delivery) == (2, True)
    survived = run.batch.take_durable()
    assert survived, "a retry's signature must reach the changelog before it leaves"

    # The restart: the first signature's writes had settled, the retry's durable ones alone.
    run.fiscalizer._pending = Pending()
    run.batch = run.fiscalizer._pending.batch()
    run.batch.set(run.fiscalizer.states, f"{uid}:{source_id}", settled.to_json()
                  if settled else None)
    for _, table, key, value in survived:
        run.batch.set(table, key, value)
    run.batch.commit_event(None)

    [again] = await run.fiscalizer._on_retry(retry.to_json(), run.batch)
    run.batch.commit_event(None)
    assert (again.topic, again.value) == (INVOICES_SIGNED.name, signed.value)
    # Sent again once: the retry read once more is stale.
    assert await run.fiscalizer._on_retry(retry.to_json(), run.batch) == []


async def test_a_crash_amid_the_durable_writes_leaves_no_gap_in_the_numbers(
    run: Run, fiscal_settings: FiscalSettings,
) -> None:
    """The durable writes reach the changelog in order, and a crash may keep any prefix
    of them. Whichever it keeps, the invoice read again and the next one hold numbers 1
    and 2: none skipped (a counter that survived without the entry holding its number
    would skip one), none given twice."""
    uid = run.integration("hr-crash-prefix", fiscal_settings)
    first_invoice = invoice()
    await run.signed(uid, first_invoice)
    durable = run.batch.take_durable()
    assert len(durable) == 2, durable
    states = run.fiscalizer.states
    for kept in range(len(durable) + 1):
        # The restart: a new worker whose table holds only the writes that survived.
        run.fiscalizer._pending = Pending()
        run.fiscalizer._highest, run.fiscalizer._highest_for = {}, None
        run.batch = run.fiscalizer._pending.batch()
        states.data.clear()
        for _, table, key, value in durable[:kept]:
            table.data[key] = value  # type: ignore[attr-defined]
        topic, again = await run.received(uid, first_invoice)
        assert topic == INVOICES_SIGNED.name, (kept, InvoiceStatus.from_json(again).message)
        numbers = [number_of(InvoiceSigned.from_json(again))[1],
                   number_of(await run.signed(uid, invoice()))[1]]
        assert numbers == ["1", "2"], (kept, [key for _, _, key, _ in durable[:kept]])
