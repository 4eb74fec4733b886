"""What the fiscalizer does with an invoice event, decided without any I/O.

The per-invoice entry (kept in a faust table) makes every input idempotent:
webhook + poll + replays deliver the same invoice many times, and only the first
one that is due gets signed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any, Literal

from schemas.events import (
    FiscalNumber,
    InvoiceRetry,
    InvoiceState,
    InvoiceStatus,
    SubmissionKind,
)
from schemas.invoice import STORNO_SUFFIX, CreditedInvoice, DocumentKind, Invoice, SourceStatus


class Phase(StrEnum):
    """Where an invoice is, as far as the fiscalizer knows."""

    # Out of draft but not due yet (the integration fiscalizes paid invoices only), or
    # refused before it was signed (blocked, rejected by the fiscal record): its moment of
    # issue is when it was first seen so (Entry.issued_at), for when it is due or let
    # through; it is then signed as a subsequent delivery.
    SEEN = "seen"
    # Signed under its number, durably with the signature (Entry.signed), which may or
    # may not have left: the next delivery, or the retry read again, sends it again.
    NUMBERED = "numbered"
    SIGNED = "signed"  # handed to the reporter (first or later attempt)
    FISCALIZED = "fiscalized"
    REJECTED = "rejected"  # permanently refused: a fixed configuration may try again
    # A permanent failure (CIS's answer could not be trusted; transient ones are retried
    # for ever): the next delivery or a resend is a subsequent delivery.
    FAILED = "failed"


@dataclass(frozen=True)
class Entry:
    phase: Phase
    version: str
    attempt: int
    first_attempt_at: datetime
    receipt_id: str | None = None
    # Decided at the first signature and part of the protection code: every later
    # signature of the invoice (retry, late delivery, replay) carries the same two.
    number: FiscalNumber | None = None
    issued_at: datetime | None = None
    # Of a fiscalized invoice: the signed document the authority accepted (what a later
    # change of payment method or buyer is judged against and repeats; None for entries
    # fiscalized before changes were supported: they are never changed), the data of the
    # last change sent (the authority's `Change.data`; the same data again is a
    # duplicate), the data in force before that change (what its retry is judged
    # against; None: as fiscalized) and that change's attempt (0: none sent).
    fiscalized: str | None = None
    changed: str | None = None
    change_base: str | None = None
    change_attempt: int = 0
    # Of an invoice not fiscalized yet: the newest delivery of it that is newer than the
    # one being fiscalized (its Invoice JSON), held until the outcome. Its payment method
    # or buyer may have changed, and Zoho may never deliver it again: once the invoice is
    # fiscalized, it is judged for a change as a later delivery would be (held_change).
    newer: dict[str, Any] | None = None
    # Of a numbered entry: the signed message (InvoiceSigned JSON) made under the number.
    # An invoice is signed once: a delivery read again after a crash sends this message
    # again, never a second signature (None: numbered before signatures were kept).
    signed: str | None = None

    def to_json(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies each field, 14x the cost per write.
        data = {
            "phase": self.phase,
            "version": self.version,
            "attempt": self.attempt,
            "first_attempt_at": self.first_attempt_at.isoformat(),
            "receipt_id": self.receipt_id,
            "number": self.number.model_dump() if self.number else None,
            "issued_at": self.issued_at.isoformat() if self.issued_at else None,
        }
        if self.fiscalized is not None:
            data["fiscalized"] = self.fiscalized
        if self.change_attempt:
            data["changed"] = self.changed
            data["change_base"] = self.change_base
            data["change_attempt"] = self.change_attempt
        if self.newer is not None:
            data["newer"] = self.newer
        if self.signed is not None:
            data["signed"] = self.signed
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(
            phase=Phase(data["phase"]),
            version=data["version"],
            attempt=int(data["attempt"]),
            first_attempt_at=datetime.fromisoformat(data["first_attempt_at"]),
            receipt_id=data.get("receipt_id"),
            number=FiscalNumber(**data["number"]) if data.get("number") else None,
            issued_at=datetime.fromisoformat(data["issued_at"]) if data.get("issued_at") else None,
            fiscalized=data.get("fiscalized"),
            changed=data.get("changed"),
            change_base=data.get("change_base"),
            change_attempt=int(data.get("change_attempt") or 0),
            newer=data.get("newer"),
            signed=data.get("signed"),
        )


class Trigger(StrEnum):
    """When an invoice becomes due for fiscalization (per integration)."""

    ISSUED = "issued"  # as soon as it leaves draft (the default)
    PAID = "paid"  # only once paid in full

    def due(self, status: SourceStatus) -> bool:
        if status in (SourceStatus.DRAFT, SourceStatus.VOID):
            return False
        return self is Trigger.ISSUED or status is SourceStatus.PAID


@dataclass(frozen=True)
class Sign:
    subsequent_delivery: bool
    attempt: int
    first_attempt_at: datetime
    counts_toward_license: bool
    number: FiscalNumber | None = None  # None: the first signature, a number is assigned
    issued_at: datetime | None = None  # None: issued when first seen out of draft
    # An earlier outcome was already past the delivery deadline: the reporter counts an
    # invoice late once, at its first late outcome.
    late: bool = False


def sequence_of(
    uid: str, sequence_mark: str, premises: str, device: str, issued_at: datetime,
    zone: tzinfo,
) -> tuple[str, int]:
    """The sequence a fiscal number is drawn from, and its year: per integration,
    premises (mark P) or premises and device (mark N), and calendar year of the moment
    of issue in the tax authority's local time (a new year starts again at 1)."""
    year = issued_at.astimezone(zone).year
    return _sequence(uid, premises, device if sequence_mark == "N" else "", year), year


def sequence_key(uid: str, number: FiscalNumber) -> str:
    """The sequence `number` was drawn from."""
    return _sequence(uid, number.premises, number.device if number.per_device else "",
                     number.year)


def _sequence(uid: str, premises: str, device: str, year: int) -> str:
    # Keys of invoice entries are "uid:source id"; a sequence's never contain ':' first.
    return f"seq|{uid}|{premises}|{device}|{year}"


@dataclass(frozen=True)
class Report:
    state: InvoiceState
    reason_code: str
    message: str


@dataclass(frozen=True)
class Storno:
    """The invoice was voided after it was fiscalized: fiscalize its storno, a new
    invoice with its own number and the amounts negated (there is no cancel in CIS)."""

    invoice: Invoice


@dataclass(frozen=True)
class Skip:
    reason: Literal["not_due", "stale_retry", "already_fiscalized", "awaiting_resend"]


@dataclass(frozen=True)
class CheckChange:
    """A fiscalized invoice arrived again: ask its authority whether the payment method or
    buyer changed (a change to send, or too late for one); `duplicate` when not."""

    entry: Entry
    duplicate: Report


@dataclass(frozen=True)
class ResignChange:
    """A change whose submission failed transiently: sign it again (a new message id),
    if it is still the invoice's latest change (`data`)."""

    entry: Entry
    attempt: int
    first_attempt_at: datetime


@dataclass(frozen=True)
class Hold:
    """A newer delivery of an invoice not fiscalized yet: write `entry` (the delivery held
    in it, Entry.newer), and otherwise it is what `then` says (a duplicate, a skip)."""

    entry: Entry
    then: Report | Skip


@dataclass(frozen=True)
class Seen:
    """First seen out of draft, not due yet: note the entry (phase SEEN) with this
    delivery's moment as the invoice's moment of issue; nothing is signed."""


@dataclass(frozen=True)
class Repeat:
    """The invoice was signed under its number (first signature, retry or resend), and
    the signature may have left before the crash that lost the rest: send that signature
    again (`entry.signed`), and write `entry` as signed (holding a delivery if newer)."""

    entry: Entry


@dataclass(frozen=True)
class HeldChange:
    """The invoice was fiscalized while a newer delivery of it was held: judge that
    delivery (`invoice`) for a change now, against `entry` (fiscalized, nothing held)."""

    entry: Entry
    invoice: Invoice


Decision = Sign | Report | Skip | Storno | CheckChange | ResignChange | Hold | Repeat | Seen



def storno_of(invoice: Invoice) -> Invoice:
    """The storno of a fiscalized invoice: every amount negated, the original named as
    the invoice it takes back; keyed apart from it (source id + ':storno')."""
    def neg(row: Any, *fields: str) -> Any:
        return row.model_copy(update={f: -getattr(row, f) for f in fields})

    base = invoice.base
    if base is not None:
        base = base.model_copy(update={
            "taxes": tuple(neg(t, "base", "amount") for t in base.taxes),
            "untaxed": tuple(neg(u, "base") for u in base.untaxed),
            "charges": tuple(neg(c, "amount") for c in base.charges),
            "subtotal": -base.subtotal, "tax_total": -base.tax_total, "total": -base.total,
        })
    return invoice.model_copy(update={
        "source_id": invoice.source_id + STORNO_SUFFIX,
        "number": f"{invoice.number} storno",
        "kind": DocumentKind.CREDIT_NOTE,
        "credited": (CreditedInvoice(source_id=invoice.source_id, number=invoice.number,
                                     amount=invoice.total),),
        "status": SourceStatus.SENT,
        "lines": tuple(neg(line, "quantity", "discount", "amount") for line in invoice.lines),
        "taxes": tuple(neg(t, "base", "amount") for t in invoice.taxes),
        "untaxed": tuple(neg(u, "base") for u in invoice.untaxed),
        "charges": tuple(neg(c, "amount") for c in invoice.charges),
        "subtotal": -invoice.subtotal, "tax_total": -invoice.tax_total, "total": -invoice.total,
        "base": base,
        "payments": (),
        "first_seen_issued_at": None,
    })


def _held_at(held: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(held["last_modified_at"])


def newest_held(entry: Entry | None, invoice: Invoice) -> dict[str, Any] | None:
    """The delivery held in `entry` if it is newer than `invoice` (what is being signed
    or delivered now), else None: a signature of the invoice as it is now, or of a later
    version, leaves nothing newer to judge."""
    if entry is None or entry.newer is None:
        return None
    return entry.newer if _held_at(entry.newer) > invoice.last_modified_at else None


def _hold(entry: Entry, invoice: Invoice) -> Entry | None:
    """`entry` holding `invoice`, if it is newer than both the version being fiscalized
    and any delivery held already; None when there is nothing new to hold."""
    if invoice.source_id.endswith(STORNO_SUFFIX):
        return None  # a storno's data are derived from its invoice
    if invoice.last_modified_at <= datetime.fromisoformat(entry.version):
        return None
    if entry.newer is not None and _held_at(entry.newer) >= invoice.last_modified_at:
        return None  # this delivery again (webhook + poll), or an older one
    return replace(entry, newer=invoice.model_dump(mode="json"))


def on_received(
    invoice: Invoice,
    entry: Entry | None,
    *,
    integration_status: str | None,
    trigger: Trigger,
    used_this_month: int,
    monthly_limit: int | None,
    now: datetime,
    starts_at: datetime | None,
) -> Decision:
    if invoice.status is SourceStatus.VOID and entry is not None \
            and entry.phase is Phase.FISCALIZED and invoice.kind is DocumentKind.INVOICE:
        return Storno(storno_of(invoice))
    if not trigger.due(invoice.status):
        if entry is None and invoice.status not in (SourceStatus.DRAFT, SourceStatus.VOID):
            return Seen()  # DatVrijeme is when it left draft, even if paid days later
        return Skip("not_due")
    if entry is not None and entry.phase is Phase.FAILED:
        # Failed: CIS's answer could not be verified, so the invoice may be fiscalized
        # already. Only an operator's resend, after checking, delivers it again; a later
        # webhook or poll must not report it a second time.
        held = _hold(entry, invoice)
        return Skip("awaiting_resend") if held is None else Hold(held, Skip("awaiting_resend"))
    if entry is not None and entry.phase in (Phase.SIGNED, Phase.FISCALIZED):
        what = "fiscalized" if entry.phase is Phase.FISCALIZED else "being fiscalized"
        message = f"Invoice {invoice.number} is already {what}"
        held = _hold(entry, invoice) if entry.phase is Phase.SIGNED else None
        if held is not None:
            message += (
                "; it was edited afterwards: once it is fiscalized, a changed payment "
                "method or buyer is sent to the tax authority (the same day only), any "
                "other edit needs a cancelling invoice and a new one"
            )
        elif entry.version != invoice.version:
            message += (
                "; it was edited afterwards, and a fiscalized invoice cannot be changed: "
                "issue a cancelling invoice and a new one instead"
            )
        duplicate = Report(InvoiceState.DUPLICATE, "already_" + entry.phase.value, message + ".")
        if held is not None:
            return Hold(held, duplicate)
        if entry.phase is Phase.FISCALIZED and entry.fiscalized is not None \
                and integration_status == "active" \
                and not invoice.source_id.endswith(STORNO_SUFFIX):
            # A storno's data are derived from its invoice: nothing of it changes by itself.
            return CheckChange(entry, duplicate)
        return duplicate
    if entry is not None and entry.phase is Phase.NUMBERED and entry.signed is not None:
        # Before any check that could refuse it: the signature may be at the reporter.
        return Repeat(_hold(entry, invoice) or entry)
    if integration_status is None:
        return Report(
            InvoiceState.BLOCKED, "unknown_integration",
            "No such integration; the invoice was not signed. Check the webhook URL.",
        )
    if integration_status != "active":
        return Report(
            InvoiceState.BLOCKED, "integration_inactive",
            f"The integration is {integration_status}; invoices are fiscalized only while it "
            "is active. Reconnect it in the Client Portal; invoices are picked up again then.",
        )
    if starts_at is None:
        return Report(
            InvoiceState.BLOCKED, "no_start",
            "The integration has no start instant, so FiscoBridge cannot tell which "
            "invoices are its own; reconnect it in the Client Portal.",
        )
    if invoice.originated_before(starts_at):
        # Invoices from before the integration existed were issued without it: they were
        # fiscalized elsewhere or not at all, and signing them now could report them twice.
        return Report(
            InvoiceState.SKIPPED, "before_start",
            f"Invoice {invoice.number} was created before the integration's start "
            f"({starts_at.isoformat(timespec='minutes')}), so FiscoBridge does not fiscalize "
            "it. If it was not fiscalized elsewhere, set an earlier start on the "
            "integration in the Client Portal.",
        )
    if monthly_limit is not None and used_this_month >= monthly_limit:
        return Report(
            InvoiceState.BLOCKED, "license_limit",
            f"This month's limit of {monthly_limit} fiscalized invoices is reached; upgrade "
            "the plan on the Client Portal's Plans page (/plans) and the invoice will be "
            "fiscalized.",
        )
    if entry is not None and entry.phase is Phase.REJECTED:
        # Refused, then (perhaps) corrected: from now on, a subsequent delivery.
        return Sign(True, entry.attempt + 1, entry.first_attempt_at, counts_toward_license=False,
                    number=entry.number, issued_at=entry.issued_at)
    if entry is not None and entry.phase is Phase.NUMBERED:
        return Sign(False, entry.attempt, entry.first_attempt_at, counts_toward_license=True,
                    number=entry.number, issued_at=entry.issued_at)
    if entry is not None and entry.phase is Phase.SEEN:
        # Issued to the buyer when it left draft, without a JIR: a subsequent delivery
        # (NakDost), late once past the deadline from that moment.
        return Sign(True, 1, now, counts_toward_license=True, issued_at=entry.issued_at)
    return Sign(False, 1, now, counts_toward_license=entry is None)


def on_retry(retry: InvoiceRetry, entry: Entry | None) -> Decision:
    """A scheduled retry, or an operator's resend (`retry.resend`). Either is based on
    one attempt; once a later attempt exists it is stale, so a replayed or doubled
    request signs nothing, and a fiscalized invoice is never signed again."""
    if retry.kind is SubmissionKind.CHANGE:
        # A change of a fiscalized invoice; stale once a later attempt or change went out.
        if entry is None or entry.phase is not Phase.FISCALIZED or not entry.change_attempt \
                or retry.attempt < entry.change_attempt or retry.resend:
            return Skip("stale_retry")
        return ResignChange(entry, retry.attempt + 1, retry.first_attempt_at)
    if entry is not None and entry.phase is Phase.SEEN:
        entry = None  # only seen, never signed: the note of the signature was lost
    if entry is None and retry.resend:
        # Entries of unfiscalized invoices are kept for good; one that is gone was
        # fiscalized and expired (retention.py): never signed again.
        return Skip("already_fiscalized")
    if entry is None:
        # A retry exists only for a message we signed and the reporter submitted: our
        # note of it was lost (a crash between the output and its changelog write).
        # Skipping would lose the invoice; sign it again as a later delivery, under the
        # number and issue time the failed attempt carried.
        return Sign(True, retry.attempt + 1, retry.first_attempt_at, counts_toward_license=False,
                    number=retry.fiscal_number, issued_at=retry.invoice.first_seen_issued_at,
                    late=retry.late)
    if entry.phase is Phase.FISCALIZED:
        return Skip("already_fiscalized")
    if entry.phase is Phase.NUMBERED and entry.signed is not None \
            and entry.attempt == retry.attempt + 1:
        # This retry was signed, and a crash lost the writes after its signature: that
        # signature may be at the reporter, so it is sent again, never made a second time.
        return Repeat(entry)
    resendable = (Phase.SIGNED, Phase.NUMBERED, Phase.FAILED, Phase.REJECTED) if retry.resend \
        else (Phase.SIGNED, Phase.NUMBERED)
    if entry.phase not in resendable:
        # Fiscalized meanwhile (a late answer), or failed/rejected: nothing to resend.
        return Skip("already_fiscalized" if entry.phase is Phase.FISCALIZED
                    else "stale_retry")
    if retry.attempt < entry.attempt:
        return Skip("stale_retry")  # a replay of a retry that was already re-signed
    return Sign(True, retry.attempt + 1, retry.first_attempt_at, counts_toward_license=False,
                number=entry.number or retry.fiscal_number,
                issued_at=entry.issued_at or retry.invoice.first_seen_issued_at, late=retry.late)


def on_status(status: InvoiceStatus, entry: Entry | None) -> Entry | None:
    """The entry after the reporter's outcome (None: leave the table alone)."""
    if entry is None or status.message_id is None:
        return None
    phase = {
        InvoiceState.FISCALIZED: Phase.FISCALIZED,
        InvoiceState.REJECTED: Phase.REJECTED,
        InvoiceState.FAILED: Phase.FAILED,
    }.get(status.state)
    if phase is None or entry.phase is Phase.FISCALIZED or status.attempt < entry.attempt:
        # Outcomes of changes (an entry already fiscalized) leave it as it is: a refused
        # change is not sent again for the same data.
        return None
    # A delivery held stays with the entry (held_change takes it out of a fiscalized one).
    return Entry(phase, entry.version, entry.attempt, entry.first_attempt_at, status.receipt_id,
                 entry.number, entry.issued_at,
                 fiscalized=status.signed_request if phase is Phase.FISCALIZED else None,
                 newer=entry.newer)


def held_change(entry: Entry, *, integration_status: str | None) -> HeldChange | None:
    """A fiscalized entry (on_status) that holds a newer delivery: that delivery, to be
    judged for a change as if it had arrived now (Authority.prepare_change: the same data
    as fiscalized is no change, so nothing is sent). None: nothing held, or nothing can
    be judged (no signed document kept, the integration not active: the held delivery is
    dropped, as such a delivery would be a plain duplicate)."""
    if entry.phase is not Phase.FISCALIZED or entry.newer is None:
        return None
    if entry.fiscalized is None or integration_status != "active":
        return None
    return HeldChange(replace(entry, newer=None), Invoice.model_validate(entry.newer))


def taken(entry: Entry) -> Entry:
    """`entry` with no delivery held."""
    return replace(entry, newer=None) if entry.newer is not None else entry


def change_sent(entry: Entry, data: str) -> Entry:
    """The entry once a change setting `data` went out (its first attempt)."""
    return replace(entry, changed=data, change_base=entry.changed, change_attempt=1)


def change_resent(entry: Entry, attempt: int) -> Entry:
    return replace(entry, change_attempt=attempt)
