"""The tax-authority seam: what the pipeline needs from an authority, and nothing of how.

The services depend on these Protocols only; `fiscal/authorities.py` maps an
authority's name (the integration's `authority`, the signed event's `profile`) to its
implementation. Pure: no I/O, no HTTP client (the reporter owns the transport and
sends the `Request` a channel describes).

Each method below says how the two authorities fill it:
- **hr-cis** (Croatia's CIS, `fiscal/hr_cis/authority.py`): SOAP over TLS; FiscoBridge
  numbers the invoice, computes the ZKI and signs the RacunZahtjev with the business's
  certificate; CIS answers with a signed RacunOdgovor carrying the JIR.
- **taxcore-vsdc** (TaxCore V-SDC, `../shared/design/taxcore-vsdc.md`): JSON over mutual
  TLS with the business's client certificate and PAC; the *server* numbers and signs,
  so preparing is building the JSON invoice and the receipt (fiscal number,
  verification URL, QR) comes from the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import StrEnum
from typing import Any, Protocol

from schemas.errors import CodedError
from schemas.events import FiscalNumber, InvoiceStatus, SubmissionKind
from schemas.invoice import Invoice

__all__ = ["Answer", "Authority", "Change", "ChangeTooLate", "Channel", "CredentialsError",
           "Deadline", "InvoiceRejected", "Numbering", "Request", "Submission", "SubmissionKind",
           "Verdict"]


class InvoiceRejected(CodedError, ValueError):
    """The invoice's data cannot become a valid message to the authority; retrying will
    not help.

    `code` is stable (e.g. "no_invoice_number_digits", "unsupported_currency");
    `str()` tells a person what to change in the accounting system.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


class CredentialsError(CodedError, ValueError):
    """The integration's credentials (certificate, password, PAC) cannot be used now:
    the invoice waits (blocked) until a person replaces them."""

    code = "credentials_error"


@dataclass(frozen=True)
class Numbering:
    """The sequence FiscoBridge draws an invoice's fiscal number from (per premises, or
    per premises and device), counted per calendar year in `zone`."""

    premises: str
    device: str
    per_device: bool
    zone: tzinfo


@dataclass(frozen=True)
class Submission:
    """A prepared (and, where the client signs, signed) submission, ready to send."""

    kind: SubmissionKind
    message_id: str  # CIS IdPoruke; V-SDC RequestId
    protection_code: str  # CIS ZKI; V-SDC "" (the server signs)
    document: bytes  # CIS the signed RacunZahtjev; V-SDC the JSON invoice


@dataclass(frozen=True)
class Change:
    """A signed change of a fiscalized invoice's payment method and/or buyer, and the data
    it sets (`data`, opaque to the pipeline, e.g. CIS "K|12345678903"): kept with the
    invoice, so that the same data arriving again is not sent a second time."""

    submission: Submission
    data: str


@dataclass(frozen=True)
class ChangeTooLate:
    """The data changed, but the authority no longer takes a change (CIS: after the day
    of issue); `reason` tells the bookkeeper what to do instead."""

    reason: str
    code: str = "change_too_late"


@dataclass(frozen=True)
class Request:
    """What the transport sends: `path` is joined to the channel's endpoint."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # the receipt is in `receipt_id`
    REJECTED = "rejected"  # permanent: a person must change something first
    TRANSIENT = "transient"  # no usable answer; the same invoice may be sent again
    UNVERIFIED = "unverified"  # an answer that cannot be trusted: fiscalized or not, unknown


@dataclass(frozen=True)
class Answer:
    """The authority's answer, verified and classified.

    `code` is the reason (stable: "ok", the authority's error code, "timeout",
    "http_503"); `message` the detail for people; `action` what a person does next
    (rejected and unverified answers); `document` the answer as received, kept in the
    journal.
    """

    verdict: Verdict
    code: str
    message: str
    action: str = ""
    receipt_id: str | None = None
    document: bytes | None = None

    @classmethod
    def transient(cls, code: str, message: str) -> Answer:
        return cls(Verdict.TRANSIENT, code, message)


class Deadline(Protocol):
    """When a delivery retried after a failure becomes late."""

    def due_by(self, issued_at: datetime) -> datetime: ...

    def late(self, issued_at: datetime, now: datetime) -> bool: ...


class Channel(Protocol):
    """The reporter's side of an authority, configured with its endpoint and trust.

    - `request`: hr-cis wraps the signed RacunZahtjev in a SOAP envelope (POST,
      SOAPAction `racuni`), a CHANGE's PromijeniPodatkeRacunaZahtjev likewise (SOAPAction
      `promijeniPodatkeRacuna`); V-SDC posts the JSON to /api/v3/invoices with the PAC
      header (the transport presents the integration's client certificate), and has no
      CHANGE.
    - `read`: hr-cis verifies the RacunOdgovor's signature against the configured CIS
      signer and classifies its error codes (s006 transient, the others rejected); for a
      CHANGE the PromijeniPodatkeRacunaOdgovor: p005 accepted (no receipt id: the
      invoice keeps its JIR), s011/s012/s013 rejected; V-SDC reads the JSON receipt
      (HTTP 200) or the modelState error codes (HTTP 400), TLS having authenticated the
      server.
    """

    endpoint: str

    def request(self, submission: Submission) -> Request: ...

    def read(self, submission: Submission, status_code: int, body: bytes) -> Answer: ...


class Authority(Protocol):
    """What the pipeline needs from a tax authority.

    - `validate_settings`: hr-cis validates OIB, premises, device, sequence mark, VAT
      system (FiscalSettings); V-SDC the PAC and the tax-label mapping (TIN, country and
      V-SDC URL come from the certificate).
    - `credentials`: hr-cis loads (and caches) the PKCS#12 fiscal certificate, checked
      against the OIB; V-SDC loads the client certificate for mutual TLS.
    - `out_of_scope`: hr-cis says a B2B invoice paid by transfer is an e-invoice, not
      the CIS's; V-SDC: every sale and refund is in scope (None).
    - `numbering`: hr-cis gives the premises/device sequence FiscoBridge numbers from;
      V-SDC None (the server's counter is the fiscal number).
    - `prepare`: hr-cis builds the RacunZahtjev, computes the ZKI and signs it; V-SDC
      builds the JSON invoice and signs nothing (the server does).
    - `receipt_fields`: the values written back to the accounting system, by role
      (fiscal_number, zki, jir, qr_url): hr-cis builds the porezna.gov.hr QR URL from
      the JIR, moment of issue and total; V-SDC takes invoiceNumber and verificationUrl
      from the signed answer. Also asked for a status without a receipt id (signed, not
      yet accepted, retried): hr-cis renders what the customer may print meanwhile
      (fiscal number, ZKI, the QR URL with `zki=` instead of `jir=`, no jir); V-SDC
      returns nothing (the server numbers and signs: before its answer there is
      nothing to print), and nothing is written.
    - `channel`: the reporter's side (`Channel`), given its endpoint and trust.
    - `late_deadline`: hr-cis two working days after issue for a subsequent delivery;
      V-SDC none documented (a deadline that never passes).
    - `prepare_change`: whether a fiscalized invoice that arrives again changed in what
      the authority lets one change afterwards, judged against `fiscalized` (the signed
      document the authority accepted, as the outcome carried it) and `changed` (the
      `Change.data` last sent for it, None if none). hr-cis: the payment method
      (NacinPlac) and buyer OIB, by `promijeniPodatkeRacuna`, only on the day of issue
      in Croatian time (a `Change`, signed), after it `ChangeTooLate` (a credit note and a
      new invoice instead); None when neither changed. V-SDC: no such message (a receipt
      is corrected by a refund and a new sale), so always None.
    """

    name: str

    def validate_settings(self, raw: Mapping[str, Any]) -> Any: ...

    def credentials(self, pfx: bytes, password: str, settings: Any) -> Any: ...

    def out_of_scope(self, invoice: Invoice, settings: Any) -> str | None: ...

    def numbering(self, settings: Any) -> Numbering | None: ...

    def prepare(
        self, invoice: Invoice, settings: Any, credentials: Any, *,
        number: FiscalNumber | None, subsequent_delivery: bool, now: datetime,
        kind: SubmissionKind = SubmissionKind.INVOICE,
    ) -> Submission:
        """Raises InvoiceRejected (the invoice's fault) or CredentialsError (the
        credentials are not usable now)."""
        ...

    def prepare_change(
        self, fiscalized: str, changed: str | None, invoice: Invoice, settings: Any,
        credentials: Callable[[], Any], *, now: datetime,
    ) -> Change | ChangeTooLate | None:
        """`credentials` is called only to sign a change: an invoice that did not change
        is a duplicate whatever its certificate. Raises InvoiceRejected (the new data
        cannot be sent, e.g. an invalid buyer OIB) or CredentialsError."""
        ...

    def receipt_fields(self, status: InvoiceStatus) -> dict[str, str]: ...

    def channel(self, endpoint: str, trust: Any) -> Channel: ...

    def late_deadline(
        self, working_days: int, holidays: Iterable[date], fixed_seconds: float | None
    ) -> Deadline: ...
