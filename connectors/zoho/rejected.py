"""A Zoho document the mapping refuses, identified, and the `blocked` status it becomes.

Rule (the fiscal record's "Amounts"): a document whose amounts cannot be mapped to add up
to Zoho's `total` is never passed on with other numbers; it is blocked with the
mapping's reason, where the bookkeeper sees it (the portal's journal). Both channels
(poller, ingest) report it by `blocked_status`, so one document is blocked alike
whichever channel brought it; the version that maps later is fiscalized as usual and
its status outranks the block (runtime.store.projection).

The identity is read leniently from the same document, field by field: what cannot be
read is left out (the customer, the date), and a document that cannot be identified at
all (no id, number or last_modified_time) has no `ref` and is only logged. Zoho's
`total` is given only when it is in euros, the currency the journal states amounts in;
a foreign-currency total is not converted by a rate the mapping just refused to trust.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from connectors.zoho.mapping import (
    InvoiceMappingError,
    issue_instant,
    parse_datetime,
)
from connectors.zoho.mapping.values import amount, day, optional_id
from schemas.events import InvoiceRef, InvoiceState, InvoiceStatus
from schemas.invoice import DocumentKind

# Not issued (a draft) or cancelled before issue (void): nothing the fiscalizer would sign,
# so nothing to block. The fiscalizer never makes either due (services/fiscalizer/rules).
NOT_ISSUED = frozenset({"draft", "void"})
# Paid in full, in Zoho's words: an invoice's "paid", a credit note's "closed".
PAID = frozenset({"paid", "closed"})
JOURNAL_CURRENCY = "EUR"
T = TypeVar("T")


@dataclass(frozen=True)
class Rejected:
    """A record that changed but cannot be delivered; the reason names the field.

    `ref`: which document and version (None when it cannot be told); `created_at`: Zoho's
    `created_time`, for the integration's start; `source_status`: Zoho's own status word.
    """

    invoice_id: str
    code: str
    reason: str
    ref: InvoiceRef | None = None
    created_at: datetime | None = None
    source_status: str | None = None


def rejected_document(
    kind: str,
    document: Mapping[str, Any],
    error: InvoiceMappingError,
    *,
    base_currency: str = "EUR",
) -> Rejected:
    """The refusal of `document` ("invoice" | "creditnote", the bare record)."""
    note = kind == "creditnote"
    id_key = "creditnote_id" if note else "invoice_id"
    source_id = _lenient(lambda: optional_id(document.get(id_key), id_key)) or ""
    created = _lenient(lambda: parse_datetime(document.get("created_time"), "created_time"))
    status = str(document.get("status") or "").strip().lower() or None
    return Rejected(
        source_id, error.code, str(error),
        ref=_ref(document, source_id, note, created, base_currency),
        created_at=created, source_status=status,
    )


def _ref(
    doc: Mapping[str, Any], source_id: str, note: bool, created: datetime | None,
    base_currency: str,
) -> InvoiceRef | None:
    number = str(doc.get("creditnote_number" if note else "invoice_number") or "").strip()
    modified = _lenient(lambda: parse_datetime(doc.get("last_modified_time"),
                                               "last_modified_time"))
    if not source_id or not number or modified is None:
        return None
    on = _lenient(lambda: day(doc.get("date"), "date"))
    customer = str(doc.get("customer_name") or "").strip() or None
    return InvoiceRef(
        source_id=source_id,
        number=number,
        version=modified.isoformat(),  # as Invoice.version: the version that maps replaces it
        kind=DocumentKind.CREDIT_NOTE if note else DocumentKind.INVOICE,
        customer=customer,
        total=_euro_total(doc, note, base_currency),
        issued_at=issue_instant(on, created) if on is not None and created is not None
        else None,
    )


def _euro_total(doc: Mapping[str, Any], note: bool, base_currency: str) -> Decimal | None:
    currency = str(doc.get("currency_code") or "").strip().upper()
    if currency != JOURNAL_CURRENCY or base_currency != JOURNAL_CURRENCY:
        return None
    total = _lenient(lambda: amount(doc.get("total"), "total"))
    if total is None:
        return None
    return -total if note else total  # a credit note is carried negative, as mapped


def _lenient(read: Callable[[], T]) -> T | None:
    """What `read` reads, None when the field cannot be read."""
    try:
        return read()
    except InvoiceMappingError:
        return None


def paid_only(fiscal_settings: Mapping[str, Any]) -> bool:
    """Whether the integration fiscalizes a document only once it is paid in full: its
    fiscal settings' "trigger" is "paid" (the fiscalizer reads the same key; "issued",
    the default, fiscalizes a document as soon as it leaves draft)."""
    return str(fiscal_settings.get("trigger") or "issued") == "paid"


def blocked_status(
    integration_uid: str,
    rejected: Rejected,
    *,
    starts_at: datetime | None,
    only_paid: bool = False,
) -> InvoiceStatus | None:
    """The `blocked` status to publish on invoices.status for `rejected`; None when there
    is nothing to show: the document cannot be identified, is not due (a draft or void;
    with `only_paid` (`paid_only`), not paid yet), or was created before the
    integration's start (`starts_at`; None: unknown, so none of its documents is told
    from older ones), as the poller and fiscalizer skip those. A block is only shown for
    what the fiscalizer would sign now: its corrected version then has an outcome too,
    which replaces the block."""
    ref = rejected.ref
    if ref is None or rejected.source_status in NOT_ISSUED or starts_at is None:
        return None
    if only_paid and rejected.source_status not in PAID:
        return None
    if rejected.created_at is not None and rejected.created_at < starts_at:
        return None
    what = "credit note" if ref.kind is DocumentKind.CREDIT_NOTE else "invoice"
    return InvoiceStatus(
        integration_uid=integration_uid,
        invoice=ref,
        state=InvoiceState.BLOCKED,
        reason_code=rejected.code,
        message=(
            f"Zoho {what} {ref.number} cannot be fiscalized as it is: {rejected.reason}. "
            f"Correct the {what} in Zoho Books; the corrected version is fiscalized by itself."
        ),
    )
