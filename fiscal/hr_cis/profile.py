"""The Croatian CIS profile: a canonical invoice in, a signed RacunZahtjev out."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from fiscal.hr_cis import formats
from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.document import RacunFields, TaxRowText, build_request
from fiscal.hr_cis.oib import is_valid_oib
from fiscal.hr_cis.rejection import InvoiceRejected
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.signing import RequestSigner
from fiscal.hr_cis.vat import vat_breakdown
from fiscal.hr_cis.zki import ZkiHash, configured_zki_hash, protection_code, zki_input
from schemas.events import FiscalNumber
from schemas.invoice import Customer, Invoice

__all__ = ["HrCisProfile", "InvoiceRejected", "SignedInvoice"]

_SIGNERS_PER_THREAD = 256


@dataclass(frozen=True)
class SignedInvoice:
    message_id: str
    protection_code: str
    document: bytes  # the signed RacunZahtjev element, UTF-8, no SOAP envelope


def _buyer_oib(customer: Customer) -> str | None:
    """The customer's OIB when it has one; foreign tax ids are not sent."""
    if not customer.tax_id:
        return None
    candidate = customer.tax_id.replace(" ", "").upper().removeprefix("HR")
    if len(candidate) != 11 or not candidate.isascii() or not candidate.isdigit():
        return None
    if not is_valid_oib(candidate):
        raise InvoiceRejected(
            "invalid_buyer_oib",
            f"the customer {customer.name!r} has tax id {customer.tax_id!r}, which is not a"
            " valid OIB (wrong check digit); correct it in the accounting system",
        )
    return candidate


def _require_eur(invoice: Invoice) -> None:
    # Since 1 Jan 2023 the CIS takes amounts in euro only (spec v2.6, changes list).
    if invoice.currency != "EUR":
        raise InvoiceRejected(
            "unsupported_currency",
            f"invoice {invoice.number} is in {invoice.currency}; the Croatian tax authority"
            " takes invoices in EUR only, so issue it in EUR",
        )


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("`now` must be timezone-aware")
    return moment


class HrCisProfile:
    name = "hr-cis"

    def __init__(self, *, zki_hash: ZkiHash | None = None) -> None:
        """`zki_hash`: the hash of the ZKI's RSA signature, a property of the CIS
        environment (fiscal/hr_cis/zki.py); None reads FISCOBRIDGE_CIS_ZKI_HASH."""
        self.zki_hash: ZkiHash = zki_hash or configured_zki_hash()
        self._local = threading.local()

    def _signer(self, certificate: FiscalCertificate) -> RequestSigner:
        signers: OrderedDict[str, RequestSigner] | None = getattr(self._local, "signers", None)
        if signers is None:
            signers = self._local.signers = OrderedDict()
        signer = signers.get(certificate.fingerprint_sha256)
        if signer is None:
            signer = signers[certificate.fingerprint_sha256] = RequestSigner(certificate)
            if len(signers) > _SIGNERS_PER_THREAD:
                signers.popitem(last=False)
        else:
            signers.move_to_end(certificate.fingerprint_sha256)
        return signer

    def sign(
        self,
        invoice: Invoice,
        settings: FiscalSettings,
        certificate: FiscalCertificate,
        *,
        number: FiscalNumber,
        subsequent_delivery: bool = False,
        now: datetime | None = None,
    ) -> SignedInvoice:
        """Build, protect and sign the invoice's RacunZahtjev.

        Raises InvoiceRejected when the invoice cannot be reported as it is, and a
        CertificateError when the certificate is not valid now or not the business's.
        """
        sent_at = _aware(now) if now is not None else datetime.now(UTC)
        certificate.check(expected_oib=settings.oib, now=sent_at)
        # A foreign-currency invoice is reported with its EUR figures (Zoho's bcy_*).
        invoice = invoice.in_base_currency()
        _require_eur(invoice)

        # The number FiscoBridge assigned, never the accounting system's (hr-fiscal-record:
        # a sequence from 1 each year, without gaps), with the premises and device it was
        # assigned under, even if the settings changed since.
        premises, device = number.premises, number.device
        payment_code = settings.payment_code(invoice.payment_method)
        # The buyer's OIB goes only with cash and card payments (spec §2.1.1.1).
        buyer_oib = _buyer_oib(invoice.customer) if payment_code in ("G", "K") else None
        vat = tuple(
            TaxRowText(
                rate=formats.rate_text(row.rate),
                base=formats.amount_text(row.base),
                amount=formats.amount_text(row.amount),
            )
            for row in vat_breakdown(invoice, in_vat_system=settings.in_vat_system)
        )
        total = formats.amount_text(invoice.total)
        # DatVrijeme: the moment of issue, when FiscoBridge first saw the invoice out of
        # draft; the source's own issue time only for an invoice that never passed by.
        issued_at = formats.message_datetime(invoice.first_seen_issued_at or invoice.issued_at)
        code = protection_code(
            certificate.private_key,
            zki_input(
                settings.oib,
                formats.zki_datetime_of(issued_at),
                str(number.number),
                premises,
                device,
                total,
            ),
            self.zki_hash,
        )
        fields = RacunFields(
            oib=settings.oib,
            in_vat_system=settings.in_vat_system,
            issued_at=issued_at,
            sequence_mark=settings.sequence_mark,
            invoice_number=str(number.number),
            premises_code=premises,
            device_code=device,
            vat=vat,
            total=total,
            payment_code=payment_code,
            operator_oib=settings.operator_oib,
            protection_code=code,
            subsequent_delivery=subsequent_delivery,
            buyer_oib=buyer_oib,
        )
        message_id = str(uuid.uuid4())
        root = build_request(
            fields, message_id=message_id, sent_at=formats.message_datetime(sent_at)
        )
        return SignedInvoice(
            message_id=message_id,
            protection_code=code,
            document=self._signer(certificate).sign(root),
        )
