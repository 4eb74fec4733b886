"""Turn what the tax authority answered into the events that record it.

Pure: no I/O. The reporter submits, the authority's channel verifies and classifies
the answer (fiscal/authority.py, `Answer`), then `decide` says what to publish.
"""

from __future__ import annotations

from datetime import datetime

from fiscal.authority import Answer, Deadline, Verdict
from schemas.events import (
    InvoiceRetry,
    InvoiceSigned,
    InvoiceState,
    InvoiceStatus,
    SubmissionKind,
)
from services.reporter.backoff import Backoff


def issued_at(signed: InvoiceSigned) -> datetime:
    """The moment of issue the late-delivery deadline counts from."""
    return signed.invoice.first_seen_issued_at or signed.first_attempt_at


def first_late(signed: InvoiceSigned, now: datetime, deadline: Deadline) -> bool:
    """Whether this outcome is the invoice's first past its deadline (counted once in
    metrics): the retry of a late outcome says so, and the signature it makes carries it."""
    return deadline.late(issued_at(signed), now) and not signed.late


# The reason of an accepted change: the invoice stays fiscalized under its receipt.
CHANGED = "changed"


def decide(
    signed: InvoiceSigned, result: Answer, now: datetime, backoff: Backoff,
    deadline: Deadline,
) -> tuple[InvoiceStatus, InvoiceRetry | None]:
    if signed.kind is SubmissionKind.CHANGE:
        return decide_change(signed, result, now, backoff)
    # Past the legal deadline for a subsequent delivery: every outcome says so, the
    # fiscalized one included (it was delivered late).
    late = deadline.late(issued_at(signed), now)

    def status(state: InvoiceState, code: str, message: str, **kw: object) -> InvoiceStatus:
        return InvoiceStatus(
            integration_uid=signed.integration_uid,
            invoice=signed.ref,
            state=state,
            reason_code=code,
            message=message,
            protection_code=signed.protection_code,
            message_id=signed.message_id,
            attempt=signed.attempt,
            signed_request=signed.document,
            occurred_at=now,
            fiscal_number=signed.fiscal_number.text if signed.fiscal_number else None,
            late=late,
            **kw,
        )

    answer_text = (
        result.document.decode("utf-8", "replace") if result.document is not None else None
    )
    if result.verdict is Verdict.UNVERIFIED:
        # Retrying could report an invoice the authority already accepted; a person
        # must look (wrong trust anchor, or someone between us and the authority).
        return status(
            InvoiceState.FAILED,
            result.code,
            f"The tax authority's answer could not be verified ({result.message}); the "
            f"invoice may or may not be fiscalized. {result.action}, "
            "then look the invoice up with the tax administration; if it is not there, "
            "resend it (Resend now on its page, or fiscobridge invoices resend).",
            signed_answer=answer_text,
        ), None
    if result.verdict is Verdict.ACCEPTED:
        return status(
            InvoiceState.FISCALIZED, result.code, result.message,
            receipt_id=result.receipt_id, signed_answer=answer_text,
        ), None
    if result.verdict is Verdict.REJECTED:
        return status(
            InvoiceState.REJECTED, result.code,
            f"Rejected by the tax authority ({result.message}). {result.action}",
            signed_answer=answer_text,
        ), None

    # Never given up (hr-fiscal-record.md, "Late delivery"): a transient failure is
    # retried after a capped delay however long the authority stays unreachable.
    not_before = now + backoff.delay(signed.attempt)
    retry = InvoiceRetry(
        integration_uid=signed.integration_uid,
        invoice=signed.invoice,
        profile=signed.profile,
        protection_code=signed.protection_code,
        attempt=signed.attempt,
        first_attempt_at=signed.first_attempt_at,
        not_before=not_before,
        reason_code=result.code,
        message=result.message,
        occurred_at=now,
        fiscal_number=signed.fiscal_number,
        late=late or signed.late,
    )
    due = deadline.due_by(issued_at(signed)).isoformat(timespec="minutes")
    lateness = (
        f" Late: the deadline for delivering it ({due}) has passed; it keeps being retried."
        if late else ""
    )
    return status(
        InvoiceState.RETRYING, result.code,
        f"Attempt {signed.attempt} failed ({result.message}); retrying after "
        f"{not_before.isoformat(timespec='seconds')} as a subsequent delivery." + lateness,
    ), retry


def decide_change(
    signed: InvoiceSigned, result: Answer, now: datetime, backoff: Backoff,
) -> tuple[InvoiceStatus, InvoiceRetry | None]:
    """The outcome of a change of a fiscalized invoice's payment method or buyer.

    The invoice stays fiscalized whatever the answer: an accepted change is `fiscalized`
    with reason "changed" and no receipt id (the invoice keeps the one it has, and a
    write-back is not due again); a refused one is `rejected` with the authority's code
    and what to do instead. The store keeps the earliest fiscalized state of an invoice
    (runtime/store/projection.py), so either one shows in its history only.
    """
    number = signed.fiscal_number.text if signed.fiscal_number else None

    def status(state: InvoiceState, code: str, message: str, **kw: object) -> InvoiceStatus:
        return InvoiceStatus(
            integration_uid=signed.integration_uid, invoice=signed.ref, state=state,
            reason_code=code, message=message, protection_code=signed.protection_code,
            message_id=signed.message_id, attempt=signed.attempt,
            signed_request=signed.document, occurred_at=now, fiscal_number=number, **kw,
        )

    answer_text = (
        result.document.decode("utf-8", "replace") if result.document is not None else None
    )
    subject = f"The change of fiscalized invoice {signed.invoice.number}"
    if result.verdict is Verdict.ACCEPTED:
        return status(
            InvoiceState.FISCALIZED, CHANGED,
            f"{result.message} The invoice stays fiscalized with its fiscal number and JIR.",
            signed_answer=answer_text,
        ), None
    if result.verdict is Verdict.REJECTED:
        return status(
            InvoiceState.REJECTED, result.code,
            f"{subject} was refused by the tax authority ({result.message}); the invoice "
            f"stays fiscalized as issued. {result.action}",
            signed_answer=answer_text,
        ), None
    if result.verdict is Verdict.UNVERIFIED:
        return status(
            InvoiceState.FAILED, result.code,
            f"{subject}: the tax authority's answer could not be verified ({result.message}),"
            f" so the change may or may not have been made; the invoice stays fiscalized. "
            f"{result.action}, then check the invoice's payment method and buyer with the "
            "tax administration.",
            signed_answer=answer_text,
        ), None
    not_before = now + backoff.delay(signed.attempt)
    retry = InvoiceRetry(
        kind=SubmissionKind.CHANGE,
        integration_uid=signed.integration_uid,
        invoice=signed.invoice,
        profile=signed.profile,
        protection_code=signed.protection_code,
        attempt=signed.attempt,
        first_attempt_at=signed.first_attempt_at,
        not_before=not_before,
        reason_code=result.code,
        message=result.message,
        occurred_at=now,
        fiscal_number=signed.fiscal_number,
    )
    return status(
        InvoiceState.RETRYING, result.code,
        f"{subject}: attempt {signed.attempt} failed ({result.message}); sent again after "
        f"{not_before.isoformat(timespec='seconds')} while the tax authority still takes it "
        "(until midnight of the day of issue). The invoice stays fiscalized.",
    ), retry
