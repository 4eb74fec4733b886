"""Turn what the tax authority answered into the events that record it.

Pure: no I/O. The reporter submits, the authority's channel verifies and classifies
the answer (fiscal/authority.py, `Answer`), then `decide` says what to publish.
"""

from __future__ import annotations

from datetime import datetime

from fiscal.authority import Answer, Deadline, Verdict
from schemas.events import InvoiceRetry, InvoiceSigned, InvoiceState, InvoiceStatus
from services.reporter.backoff import Backoff


def issued_at(signed: InvoiceSigned) -> datetime:
    """The moment of issue the late-delivery deadline counts from."""
    return signed.invoice.first_seen_issued_at or signed.first_attempt_at


def first_late(signed: InvoiceSigned, now: datetime, deadline: Deadline) -> bool:
    """Whether this outcome is the invoice's first past its deadline (counted once in
    metrics): the retry of a late outcome says so, and the signature it makes carries it."""
    return deadline.late(issued_at(signed), now) and not signed.late


def decide(
    signed: InvoiceSigned, result: Answer, now: datetime, backoff: Backoff,
    deadline: Deadline,
) -> tuple[InvoiceStatus, InvoiceRetry | None]:
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
