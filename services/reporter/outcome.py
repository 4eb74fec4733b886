"""Turn what the tax authority answered into the events that record it.

Pure: no I/O. The reporter submits, then asks `decide` what to publish.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fiscal.hr_cis.errors import Permanence, classify
from fiscal.hr_cis.late import LateDeadline
from fiscal.hr_cis.soap import CisAnswer
from schemas.events import InvoiceRetry, InvoiceSigned, InvoiceState, InvoiceStatus
from services.reporter.backoff import Backoff


@dataclass(frozen=True)
class Transient:
    """No usable answer: timeout, connection error, HTTP 5xx."""

    code: str
    message: str


@dataclass(frozen=True)
class Unverified:
    """An answer arrived but its signature or content could not be trusted."""

    message: str
    document: bytes


Result = CisAnswer | Transient | Unverified


def issued_at(signed: InvoiceSigned) -> datetime:
    """The moment of issue the late-delivery deadline counts from."""
    return signed.invoice.first_seen_issued_at or signed.first_attempt_at


def first_late(signed: InvoiceSigned, now: datetime, deadline: LateDeadline) -> bool:
    """Whether this outcome is the invoice's first past its deadline (counted once in
    metrics): the retry of a late outcome says so, and the signature it makes carries it."""
    return deadline.late(issued_at(signed), now) and not signed.late


def decide(
    signed: InvoiceSigned, result: Result, now: datetime, backoff: Backoff,
    deadline: LateDeadline,
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

    if isinstance(result, Unverified):
        # Retrying could report an invoice the authority already accepted; a person
        # must look (wrong trust anchor, or someone between us and the authority).
        return status(
            InvoiceState.FAILED,
            "answer_unverified",
            f"The tax authority's answer could not be verified ({result.message}); the "
            "invoice may or may not be fiscalized. Check the configured CIS certificate, "
            "then look the invoice up with the tax administration; if it is not there, "
            "resend it (Resend now on its page, or fiscobridge invoices resend).",
            signed_answer=result.document.decode("utf-8", "replace"),
        ), None

    if isinstance(result, CisAnswer):
        answer_text = result.document.decode("utf-8", "replace")
        if result.jir:
            return status(
                InvoiceState.FISCALIZED, "ok", f"Fiscalized; JIR {result.jir}.",
                receipt_id=result.jir, signed_answer=answer_text,
            ), None
        codes = [classify(code) for code, _ in result.errors] or [classify("")]
        worst = next((c for c in codes if c.permanence is Permanence.PERMANENT), None)
        detail = "; ".join(f"{code}: {text}" for code, text in result.errors)
        if worst is not None:
            return status(
                InvoiceState.REJECTED, worst.code,
                f"Rejected by the tax authority ({detail}). {worst.action}",
                signed_answer=answer_text,
            ), None
        transient = Transient(codes[0].code, detail or codes[0].meaning)
    else:
        transient = result

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
        reason_code=transient.code,
        message=transient.message,
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
        InvoiceState.RETRYING, transient.code,
        f"Attempt {signed.attempt} failed ({transient.message}); retrying after "
        f"{not_before.isoformat(timespec='seconds')} as a subsequent delivery." + lateness,
    ), retry
