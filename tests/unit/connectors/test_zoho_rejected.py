"""A document the mapping refuses keeps its identity, and becomes one `blocked` status."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.zoho.mapping import InvoiceMappingError, MappingOptions, map_invoice
from connectors.zoho.rejected import Rejected, blocked_status, paid_only, rejected_document
from connectors.zoho.webhook import PayloadInvalid, map_webhook
from schemas.events import InvoiceState, InvoiceStatus
from schemas.invoice import DocumentKind

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zoho"
CET = timezone(timedelta(hours=1))
START = datetime(2026, 11, 1, tzinfo=CET)


def record(name: str, **overrides: Any) -> dict[str, Any]:
    document = json.loads((FIXTURES / f"{name}.json").read_text(), parse_float=Decimal)
    body: dict[str, Any] = document.get("invoice") or document.get("creditnote") or document
    body.update(overrides)
    return body


def refused(kind: str, document: dict[str, Any], **options: Any) -> Rejected:
    with pytest.raises(PayloadInvalid) as caught:
        map_webhook((kind, document), MappingOptions(**options))
    assert caught.value.rejected is not None
    return caught.value.rejected


def test_a_total_that_does_not_add_up_keeps_the_documents_identity() -> None:
    document = record("recorded_hr_total_mismatch")
    rejected = refused("invoice", document)
    assert (rejected.invoice_id, rejected.code) == ("4815162342000001234", "total_mismatch")
    assert rejected.ref is not None
    ref = rejected.ref
    assert (ref.source_id, ref.number, ref.kind, ref.customer) == (
        "4815162342000001234", "RN-2026-0457", DocumentKind.INVOICE, "Bistro Luka j.d.o.o."
    )
    # The version a corrected edit replaces: the same string Invoice.version gives.
    assert ref.version == datetime(2026, 11, 24, 19, 43, 55, tzinfo=CET).isoformat()
    assert ref.total == Decimal("31.41")  # Zoho's own total, in euros
    assert ref.issued_at == datetime(2026, 11, 24, 19, 42, 7, tzinfo=CET)
    assert rejected.created_at == datetime(2026, 11, 24, 19, 42, 7, tzinfo=CET)
    assert rejected.source_status == "sent"


def test_the_version_that_maps_later_has_the_blocked_ones_identity() -> None:
    """Same source id and version format: the journal row is the same one."""
    good = record("invoice_plain")
    invoice = map_invoice(good)
    bad = {**good, "total": str(invoice.total + 1)}
    rejected = refused("invoice", bad)
    assert rejected.ref is not None
    assert (rejected.ref.source_id, rejected.ref.version) == (invoice.source_id, invoice.version)


def test_a_foreign_currency_total_is_not_given_in_euros() -> None:
    rejected = refused("invoice", record("invoice_usd", exchange_rate="1", bcy_total="12.22"))
    assert rejected.code == "exchange_rate_missing"
    assert rejected.ref is not None and rejected.ref.total is None
    assert rejected.ref.number == "INV-000123"


def test_a_credit_notes_total_is_carried_negative_as_mapped() -> None:
    note = record("creditnote")
    rejected = refused("creditnote", {**note, "total": str(Decimal(str(note["total"])) + 1)})
    assert rejected.ref is not None
    assert rejected.ref.kind is DocumentKind.CREDIT_NOTE
    assert (rejected.invoice_id, rejected.ref.number) == ("5000000000000000002", "CN-00003")
    assert rejected.ref.total == -(Decimal(str(note["total"])) + 1)


@pytest.mark.parametrize(
    "missing", ["invoice_id", "invoice_number", "last_modified_time"]
)
def test_a_document_that_cannot_be_identified_has_no_ref(missing: str) -> None:
    document = {**record("recorded_hr_total_mismatch"), missing: ""}
    error = InvoiceMappingError("total_mismatch", "total does not add up")
    rejected = rejected_document("invoice", document, error)
    assert rejected.ref is None
    assert blocked_status("uid-1", rejected, starts_at=START) is None


def test_unreadable_side_fields_are_left_out_not_guessed() -> None:
    document = {**record("recorded_hr_total_mismatch"), "date": "24.11.2026", "total": "x",
                "customer_name": ""}
    error = InvoiceMappingError("invalid_amount", "total must be a number")
    ref = rejected_document("invoice", document, error).ref
    assert ref is not None
    assert (ref.total, ref.issued_at, ref.customer) == (None, None, None)


def test_blocked_status_carries_the_mappings_code_and_reason() -> None:
    rejected = refused("invoice", record("recorded_hr_total_mismatch"))
    status = blocked_status("uid-1", rejected, starts_at=START)
    assert status is not None
    assert (status.state, status.reason_code, status.integration_uid) == (
        InvoiceState.BLOCKED, "total_mismatch", "uid-1"
    )
    assert rejected.reason in status.message and "RN-2026-0457" in status.message
    assert "Correct the invoice in Zoho Books" in status.message
    assert status.invoice == rejected.ref
    assert (status.message_id, status.receipt_id, status.fiscal_number) == (None, None, None)
    assert InvoiceStatus.from_json(status.to_json()) == status  # survives the topic


@pytest.mark.parametrize("status", ["draft", "void"])
def test_a_document_not_issued_is_not_blocked(status: str) -> None:
    rejected = refused("invoice", record("recorded_hr_total_mismatch", status=status))
    assert blocked_status("uid-1", rejected, starts_at=START) is None


def test_a_document_created_before_the_start_is_not_the_integrations() -> None:
    rejected = refused("invoice", record("recorded_hr_total_mismatch"))
    created = rejected.created_at
    assert created is not None
    assert blocked_status("uid-1", rejected, starts_at=created + timedelta(seconds=1)) is None
    assert blocked_status("uid-1", rejected, starts_at=created) is not None
    assert blocked_status("uid-1", rejected, starts_at=None) is None


@pytest.mark.parametrize(
    ("settings", "expected"),
    [({}, False), ({"trigger": "issued"}, False), ({"trigger": None}, False),
     ({"trigger": "paid"}, True)],
)
def test_paid_only_reads_the_fiscal_settings_trigger(
    settings: dict[str, Any], expected: bool
) -> None:
    assert paid_only({"oib": "12345678903", **settings}) is expected


@pytest.mark.parametrize(
    ("kind", "fixture", "status", "shown"),
    [("invoice", "recorded_hr_total_mismatch", "sent", False),
     ("invoice", "recorded_hr_total_mismatch", "partially_paid", False),
     ("invoice", "recorded_hr_total_mismatch", "paid", True),
     ("creditnote", "creditnote", "open", False),
     ("creditnote", "creditnote", "closed", True)],
)
def test_an_integration_fiscalizing_paid_documents_sees_blocks_only_once_due(
    kind: str, fixture: str, status: str, shown: bool
) -> None:
    """A block of a document not due yet would outlive its correction (the corrected,
    unpaid version gets no outcome to replace it)."""
    document = record(fixture, status=status, total="999.99")
    rejected = refused(kind, document)
    assert blocked_status("uid-1", rejected, starts_at=START) is not None  # trigger "issued"
    paid = blocked_status("uid-1", rejected, starts_at=START, only_paid=True)
    assert (paid is not None) is shown
