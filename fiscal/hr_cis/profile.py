"""The Croatian CIS profile: a canonical invoice in, a signed RacunZahtjev out."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from fiscal.hr_cis import formats
from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.change import AsSent, DataChange, build_change
from fiscal.hr_cis.document import RacunFields, TaxRowText, build_request
from fiscal.hr_cis.record import Row, fiscal_record, out_of_scope
from fiscal.hr_cis.rejection import InvoiceRejected
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.signing import RequestSigner
from fiscal.hr_cis.zki import ZkiHash, configured_zki_hash, protection_code, zki_input
from schemas.events import FiscalNumber
from schemas.invoice import Invoice

__all__ = ["HrCisProfile", "InvoiceRejected", "SignedInvoice"]

_SIGNERS_PER_THREAD = 256


@dataclass(frozen=True)
class SignedInvoice:
    message_id: str
    protection_code: str
    document: bytes  # the signed RacunZahtjev element, UTF-8, no SOAP envelope


def _texts(rows: tuple[Row, ...]) -> tuple[TaxRowText, ...]:
    return tuple(
        TaxRowText(rate=formats.rate_text(row.rate), base=formats.amount_text(row.base),
                   amount=formats.amount_text(row.amount))
        for row in rows
    )


def _amount(value: Decimal | None) -> str | None:
    return None if value is None else formats.amount_text(value)


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

    def out_of_scope(self, invoice: Invoice, settings: FiscalSettings) -> str | None:
        """Why the invoice is not the CIS's at all (a B2B invoice paid by transfer is an
        e-invoice); None when it is. InvoiceRejected when that cannot be told."""
        return out_of_scope(invoice, settings)

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
        record = fiscal_record(invoice, settings)

        # The number FiscoBridge assigned, never the accounting system's (hr-fiscal-record:
        # a sequence from 1 each year, without gaps), with the premises and device it was
        # assigned under, even if the settings changed since.
        premises, device = number.premises, number.device
        total = formats.amount_text(record.total)
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
            vat=_texts(record.vat),
            total=total,
            payment_code=record.payment_code,
            operator_oib=settings.operator_oib,
            protection_code=code,
            subsequent_delivery=subsequent_delivery,
            buyer_oib=record.buyer_oib,
            pnp=_texts(record.pnp),
            exempt=_amount(record.exempt),
            margin=_amount(record.margin),
            not_subject=_amount(record.not_subject),
            fees=tuple((name, formats.amount_text(amount)) for name, amount in record.fees),
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

    def sign_change(
        self,
        sent: AsSent,
        change: DataChange,
        settings: FiscalSettings,
        certificate: FiscalCertificate,
        *,
        now: datetime,
    ) -> SignedInvoice:
        """The signed PromijeniPodatkeRacunaZahtjev that sets `change` on the invoice
        fiscalized as `sent` (its `protection_code` is the invoice's ZKI, unchanged).

        A CertificateError when the certificate is not valid now or not the business's.
        """
        sent_at = _aware(now)
        certificate.check(expected_oib=settings.oib, now=sent_at)
        message_id = str(uuid.uuid4())
        root = build_change(sent, change, message_id=message_id, sent_at=sent_at)
        return SignedInvoice(
            message_id=message_id,
            protection_code=sent.protection_code,
            document=self._signer(certificate).sign(root),
        )
