"""Events on the topics. Every event carries the envelope fields of `Event`.

`schema_version` is bumped only on incompatible changes; adding an optional field is
compatible because every contract ignores fields it does not know.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, StringConstraints

from schemas.invoice import Contract, DocumentKind, Invoice
from schemas.money import Amount, AwareDatetime
from schemas.tiers import Tier

IntegrationUid = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def _now() -> datetime:
    return datetime.now(UTC)


def _event_id() -> str:
    return str(uuid.uuid4())


class Event(Contract):
    SCHEMA_VERSION: ClassVar[int] = 1

    event_id: str = Field(default_factory=_event_id)
    schema_version: int = 1
    occurred_at: AwareDatetime = Field(default_factory=_now)
    integration_uid: IntegrationUid

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        return cls.model_validate_json(data)

    @property
    def key(self) -> bytes:
        """Every topic is keyed by integration uid (one business's invoices in order)."""
        return self.integration_uid.encode()


class Channel(StrEnum):
    WEBHOOK = "webhook"
    POLL = "poll"
    MANUAL = "manual"
    REPLAY = "replay"


class InvoiceReceived(Event):
    invoice: Invoice
    channel: Channel


class InvoiceRef(Contract):
    """Identifies one invoice (and the edit of it) across events."""

    source_id: str
    number: str
    version: str
    # What a person finds the invoice by, in the portal's lists and filters.
    kind: DocumentKind = DocumentKind.INVOICE
    customer: str | None = None
    total: Amount | None = Field(default=None, description="in the base currency (EUR)")
    issued_at: AwareDatetime | None = Field(
        default=None, description="the moment of issue (first seen out of draft)"
    )

    @classmethod
    def of(cls, invoice: Invoice) -> InvoiceRef:
        return cls(
            source_id=invoice.source_id, number=invoice.number, version=invoice.version,
            kind=invoice.kind, customer=invoice.customer.name,
            total=invoice.base.total if invoice.base is not None else invoice.total,
            issued_at=invoice.first_seen_issued_at or invoice.issued_at,
        )


class FiscalNumber(Contract):
    """The invoice number FiscoBridge assigned (CIS BrRac): once per invoice, from a
    sequence per integration, premises (or device) and calendar year that starts at 1
    and runs without gaps. Every later signature of the invoice reuses it."""

    number: int = Field(ge=1, description="CIS BrOznRac")
    premises: str = Field(description="CIS OznPosPr")
    device: str = Field(description="CIS OznNapUr")
    year: int = Field(description="the calendar year of the sequence (local time of issue)")
    per_device: bool = Field(
        default=False, description="numbered per device (CIS OznSlijed N), else per premises"
    )

    @property
    def text(self) -> str:
        """As printed on the invoice: 57/POSL1/1."""
        return f"{self.number}/{self.premises}/{self.device}"


class SubmissionKind(StrEnum):
    """What a signed submission asks of the tax authority; each kind has its own request
    and answer."""

    INVOICE = "invoice"  # fiscalize the invoice (CIS `racuni`; V-SDC POST /api/v3/invoices)
    # Change the payment method and/or buyer of a fiscalized invoice, the same day
    # (CIS `promijeniPodatkeRacuna`); the invoice stays fiscalized under its receipt.
    CHANGE = "change"


class InvoiceSigned(Event):
    kind: SubmissionKind = Field(
        default=SubmissionKind.INVOICE,
        description="what the signed document asks: fiscalize the invoice, or change the"
        " payment method/buyer of the fiscalized invoice",
    )
    invoice: Invoice = Field(description="kept so that a retry can re-sign without the source")
    profile: str = Field(description="tax-authority profile, e.g. 'hr-cis'")
    message_id: str = Field(description="the authority message id (CIS IdPoruke)")
    protection_code: str = Field(description="the issuer's protection code (CIS ZKI)")
    document: str = Field(description="the signed XML document, ready to submit")
    subsequent_delivery: bool = False
    attempt: int = 1
    first_attempt_at: AwareDatetime = Field(default_factory=_now)
    fiscal_number: FiscalNumber | None = None
    late: bool = Field(default=False, description="an earlier attempt's outcome was already late")

    @property
    def ref(self) -> InvoiceRef:
        return InvoiceRef.of(self.invoice)


class InvoiceRetry(Event):
    kind: SubmissionKind = Field(
        default=SubmissionKind.INVOICE, description="the kind of the submission that failed"
    )
    invoice: Invoice
    profile: str
    protection_code: str
    attempt: int = Field(description="the attempt that failed")
    first_attempt_at: AwareDatetime
    not_before: AwareDatetime = Field(description="earliest time the next attempt may be sent")
    reason_code: str
    message: str
    fiscal_number: FiscalNumber | None = Field(
        default=None, description="the number the failed attempt carried; a retry reuses it"
    )
    late: bool = Field(default=False, description="the failed attempt's outcome was late")
    resend: bool = Field(
        default=False,
        description="an operator's resend (fiscobridge invoices resend, the portal's button):"
        " signed again now as a subsequent delivery, also after a failed or rejected attempt",
    )


class InvoiceState(StrEnum):
    FISCALIZED = "fiscalized"
    REJECTED = "rejected"
    BLOCKED = "blocked"
    DUPLICATE = "duplicate"
    RETRYING = "retrying"  # transient failures: retried for as long as it takes
    FAILED = "failed"  # not retried: CIS's answer could not be trusted, a person looks
    SKIPPED = "skipped"  # not this integration's to fiscalize; the message says why

    @property
    def is_final(self) -> bool:
        return self is not InvoiceState.RETRYING


class InvoiceStatus(Event):
    invoice: InvoiceRef
    state: InvoiceState
    reason_code: str = Field(description="machine-readable, e.g. 's005' or 'license_limit'")
    message: str = Field(description="what happened and what a person can do about it")
    receipt_id: str | None = Field(default=None, description="CIS JIR when fiscalized")
    protection_code: str | None = None
    message_id: str | None = None
    attempt: int = 0
    signed_request: str | None = None
    signed_answer: str | None = None
    fiscal_number: str | None = Field(default=None, description="as printed: 57/POSL1/1")
    late: bool = Field(
        default=False,
        description="past the legal deadline for delivering it (two working days after issue)",
    )


class WriteBackState(StrEnum):
    WRITTEN_BACK = "written_back"  # the fiscal fields are on the Zoho document
    WAITING = "waiting"  # not written yet: the reason says what it waits for
    FAILED = "failed"  # Zoho refused it; the reason says what the customer must do


class WriteBackStatus(Event):
    """The write-back stage's outcome for one fiscalized invoice (invoices.writeback)."""

    source_id: str = Field(description="the invoice's source id (a storno's ends ':storno')")
    state: WriteBackState
    reason: str | None = Field(default=None, description="why waiting or failed")
    fiscal_number: str | None = Field(default=None, description="as printed: 57/POSL1/1")
    status_event_id: str = Field(description="the InvoiceStatus event this answers")


class IntegrationEventKind(StrEnum):
    CREATED = "created"
    CONNECTED = "connected"
    RECONNECTED = "reconnected"
    TOKEN_INVALID = "token_invalid"
    CERTIFICATE_REPLACED = "certificate_replaced"
    TIER_CHANGED = "tier_changed"
    SETTINGS_CHANGED = "settings_changed"
    DEACTIVATED = "deactivated"
    REMOVED = "removed"


class IntegrationEvent(Event):
    kind: IntegrationEventKind
    tier: Tier | None = None
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


EVENT_TYPES: tuple[type[Event], ...] = (
    InvoiceReceived,
    InvoiceSigned,
    InvoiceRetry,
    InvoiceStatus,
    IntegrationEvent,
    WriteBackStatus,
)
