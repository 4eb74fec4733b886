"""promijeniPodatkeRacuna through the authority seam, against the CIS sandbox: hr-cis
judges and signs the change (`prepare_change`), its channel sends it with the change's
SOAPAction and reads PromijeniPodatkeRacunaOdgovor; the sandbox's ledger is the witness."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from fiscal.authority import Answer, Change, ChangeTooLate, Submission, SubmissionKind, Verdict
from fiscal.hr_cis.authority import HrCisAuthority, HrCisChannel
from fiscal.hr_cis.certificate import CertificateExpired, FiscalCertificate
from fiscal.hr_cis.formats import ZAGREB
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import PROMIJENI_PODATKE_ACTION, RACUNI_ACTION, AnswerVerifier, CisSigner
from schemas.events import InvoiceRef, InvoiceState, InvoiceStatus
from schemas.invoice import Customer, Invoice, Payment, PaymentMethod
from services.fiscalizer.rules import (
    Entry,
    Hold,
    Phase,
    Trigger,
    held_change,
    on_received,
    on_status,
)
from tests.factories import fiscal_number, make_invoice
from tests.fixtures.cis import CisSandboxHandle

BUYER_OIB = "98765432198"
_sources = itertools.count(490000000000000000)
_numbers = itertools.count(1)


@pytest.fixture
def cis(clean_cis_sandbox: CisSandboxHandle) -> CisSandboxHandle:
    return clean_cis_sandbox


@pytest.fixture(scope="module")
def channel(cis_sandbox: CisSandboxHandle) -> HrCisChannel:
    verifier = AnswerVerifier(CisSigner.pinned(cis_sandbox.service_certificate))
    return HrCisAuthority().channel(cis_sandbox.url, verifier)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def authority() -> HrCisAuthority:
    return HrCisAuthority(HrCisProfile())


def paid(mode: str, method: PaymentMethod, *, buyer: str | None = None,
         issued_at: datetime | None = None, source_id: str | None = None) -> Invoice:
    invoice = make_invoice(source_id=source_id or str(next(_sources)),
                           issued_at=issued_at or datetime.now(UTC))
    customer = invoice.customer if buyer is None else Customer(
        name="Firma d.o.o.", tax_id=f"HR{buyer}", country="HR")
    return invoice.model_copy(update={
        "customer": customer,
        "payments": (Payment(mode=mode, method=method, amount=invoice.total),),
    })


def unusable() -> FiscalCertificate:
    raise CertificateExpired("the certificate expired")


def card(invoice: Invoice, buyer: str | None = BUYER_OIB) -> Invoice:
    return paid("creditcard", PaymentMethod.CARD, buyer=buyer, issued_at=invoice.issued_at,
                source_id=invoice.source_id)


def send(http: httpx.Client, channel: HrCisChannel, submission: Submission) -> Answer:
    request = channel.request(submission)
    response = http.post(channel.endpoint + request.path, content=request.body,
                         headers=dict(request.headers))
    return channel.read(submission, response.status_code, response.content)


def fiscalize(
    http: httpx.Client, channel: HrCisChannel, authority: HrCisAuthority, invoice: Invoice,
    settings: FiscalSettings, certificate: FiscalCertificate,
) -> str:
    year = invoice.issued_at.astimezone(ZAGREB).year
    submission = authority.prepare(invoice, settings, certificate,
                                   number=fiscal_number(next(_numbers), year=year),
                                   subsequent_delivery=False, now=datetime.now(UTC))
    assert dict(channel.request(submission).headers)["SOAPAction"] == RACUNI_ACTION
    answer = send(http, channel, submission)
    assert answer.verdict is Verdict.ACCEPTED, answer
    return submission.document.decode()


def test_a_same_day_change_is_signed_sent_and_taken_then_not_sent_again(
    cis: CisSandboxHandle, http: httpx.Client, channel: HrCisChannel,
    authority: HrCisAuthority, fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    cash = paid("cash", PaymentMethod.CASH)
    document = fiscalize(http, channel, authority, cash, fiscal_settings, demo_certificate)
    now = datetime.now(UTC)
    # The same invoice, as fiscalized: nothing to change, and nothing signed (the
    # certificate is not even loaded: an expired one makes no difference to a duplicate).
    assert authority.prepare_change(document, None, cash, fiscal_settings, unusable,
                                    now=now) is None

    change = authority.prepare_change(document, None, card(cash), fiscal_settings,
                                      lambda: demo_certificate, now=now)
    assert isinstance(change, Change) and change.data == f"K|{BUYER_OIB}"
    submission = change.submission
    assert submission.kind is SubmissionKind.CHANGE
    request = channel.request(submission)
    assert dict(request.headers)["SOAPAction"] == PROMIJENI_PODATKE_ACTION
    answer = send(http, channel, submission)
    assert (answer.verdict, answer.code, answer.receipt_id) == (Verdict.ACCEPTED, "p005", None)
    assert "payment method G (cash) to K (card)" in answer.message
    assert f"buyer OIB none to {BUYER_OIB}" in answer.message
    (entry,) = cis.ledger()
    assert [(c["payment"], c["buyer_oib"]) for c in entry["changes"]] == [("K", BUYER_OIB)]

    # The same data again, judged against the change in force: nothing to send.
    assert authority.prepare_change(document, change.data, card(cash), fiscal_settings,
                                    unusable, now=now) is None
    # Back to cash without a buyer: a new change, built from the invoice as fiscalized.
    back = authority.prepare_change(document, change.data, cash, fiscal_settings,
                                    lambda: demo_certificate, now=now)
    assert isinstance(back, Change) and back.data == "G|"
    assert send(http, channel, back.submission).verdict is Verdict.ACCEPTED
    (entry,) = cis.ledger()
    assert [(c["payment"], c["buyer_oib"]) for c in entry["changes"]] == \
        [("K", BUYER_OIB), ("G", None)]


def test_an_invoice_issued_yesterday_is_too_late_and_nothing_is_signed(
    cis: CisSandboxHandle, http: httpx.Client, channel: HrCisChannel,
    authority: HrCisAuthority, fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    cash = paid("cash", PaymentMethod.CASH, issued_at=yesterday)
    document = fiscalize(http, channel, authority, cash, fiscal_settings, demo_certificate)
    late = authority.prepare_change(document, None, card(cash, buyer=None), fiscal_settings,
                                    lambda: demo_certificate, now=datetime.now(UTC))
    assert isinstance(late, ChangeTooLate) and late.code == "change_too_late"
    assert "G to K" in late.reason and "credit note" in late.reason
    assert "changes" not in cis.ledger()[0]


def test_a_change_of_an_invoice_cis_never_fiscalized_is_refused_s012(
    cis: CisSandboxHandle, http: httpx.Client, channel: HrCisChannel,
    authority: HrCisAuthority, fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    cash = paid("cash", PaymentMethod.CASH)
    never_sent = authority.prepare(cash, fiscal_settings, demo_certificate,
                                   number=fiscal_number(999), subsequent_delivery=False,
                                   now=datetime.now(UTC)).document.decode()
    change = authority.prepare_change(never_sent, None, card(cash), fiscal_settings,
                                      lambda: demo_certificate, now=datetime.now(UTC))
    assert isinstance(change, Change)
    answer = send(http, channel, change.submission)
    assert (answer.verdict, answer.code) == (Verdict.REJECTED, "s012")
    assert "JIR" in answer.action and cis.ledger() == []


def judged_at_outcome(
    authority: HrCisAuthority, fiscalized: Invoice, document: str, newer: Invoice,
    settings: FiscalSettings, credentials: Callable[[], FiscalCertificate],
) -> Change | ChangeTooLate | None:
    """`newer` delivered while `fiscalized` was still being fiscalized (held by the
    fiscalizer's rules), then the outcome that CIS accepted `document`: what the
    authority makes of the held delivery, as the fiscalizer asks it then."""
    now = datetime.now(UTC)
    signed = Entry(Phase.SIGNED, fiscalized.version, 1, now)
    hold = on_received(newer, signed, integration_status="active", trigger=Trigger.ISSUED,
                       used_this_month=0, monthly_limit=None, now=now,
                       starts_at=now - timedelta(days=3))
    assert isinstance(hold, Hold)
    outcome = InvoiceStatus(
        integration_uid="u", invoice=InvoiceRef.of(fiscalized), state=InvoiceState.FISCALIZED,
        reason_code="ok", message="m", message_id="m1", attempt=1, receipt_id="jir",
        signed_request=document)
    done = on_status(outcome, hold.entry)
    assert done is not None
    check = held_change(done, integration_status="active")
    assert check is not None and check.invoice == newer
    assert check.entry.fiscalized is not None
    return authority.prepare_change(check.entry.fiscalized, check.entry.changed, check.invoice,
                                    settings, credentials, now=now)


def edited(invoice: Invoice) -> Invoice:
    return invoice.model_copy(
        update={"last_modified_at": invoice.last_modified_at + timedelta(minutes=1)})


def test_a_delivery_held_while_being_fiscalized_is_judged_at_the_outcome(
    cis: CisSandboxHandle, http: httpx.Client, channel: HrCisChannel,
    authority: HrCisAuthority, fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    cash = paid("cash", PaymentMethod.CASH)
    document = fiscalize(http, channel, authority, cash, fiscal_settings, demo_certificate)
    # Edited, but not in its payment or buyer: nothing to change, nothing signed.
    assert judged_at_outcome(authority, cash, document, edited(cash), fiscal_settings,
                             unusable) is None
    # Paid by card: the change a later delivery would have made, taken by CIS.
    change = judged_at_outcome(authority, cash, document, edited(card(cash)), fiscal_settings,
                               lambda: demo_certificate)
    assert isinstance(change, Change) and change.data == f"K|{BUYER_OIB}"
    assert send(http, channel, change.submission).verdict is Verdict.ACCEPTED
    (entry,) = cis.ledger()
    assert [(c["payment"], c["buyer_oib"]) for c in entry["changes"]] == [("K", BUYER_OIB)]


def test_a_delivery_held_past_the_day_of_issue_is_too_late(
    cis: CisSandboxHandle, http: httpx.Client, channel: HrCisChannel,
    authority: HrCisAuthority, fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    cash = paid("cash", PaymentMethod.CASH, issued_at=datetime.now(UTC) - timedelta(days=1))
    document = fiscalize(http, channel, authority, cash, fiscal_settings, demo_certificate)
    late = judged_at_outcome(authority, cash, document, edited(card(cash, buyer=None)),
                             fiscal_settings, lambda: demo_certificate)
    assert isinstance(late, ChangeTooLate) and late.code == "change_too_late"
    assert "changes" not in cis.ledger()[0]
