"""The event contracts: exact money, aware time, tolerant readers, schema files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import export
from schemas.events import (
    EVENT_TYPES,
    IntegrationEvent,
    IntegrationEventKind,
    InvoiceReceived,
    InvoiceRef,
    InvoiceState,
    InvoiceStatus,
)
from schemas.invoice import Customer, Invoice, InvoiceLine, TaxLine

ZAGREB = timezone(timedelta(hours=1))


def invoice(**overrides: object) -> Invoice:
    fields: dict[str, object] = dict(
        source="zoho_books",
        source_id="460000000012345678",
        number="INV-000042",
        issued_at=datetime(2026, 11, 25, 9, 30, tzinfo=ZAGREB),
        currency="eur",
        customer=Customer(name="Kava d.o.o.", tax_id="HR12345678903"),
        lines=(
            InvoiceLine(
                description="Espresso",
                quantity=Decimal("3"),
                unit_price=Decimal("1.10"),
                tax_rate=Decimal("25"),
                amount=Decimal("3.30"),
            ),
        ),
        taxes=(TaxLine(rate=Decimal("25"), base=Decimal("3.30"), amount=Decimal("0.825")),),
        subtotal=Decimal("3.30"),
        tax_total=Decimal("0.825"),
        total=Decimal("4.125"),
        status="sent",
        last_modified_at=datetime(2026, 11, 25, 9, 31, tzinfo=ZAGREB),
    )
    fields.update(overrides)
    return Invoice.model_validate(fields)


def test_decimal_round_trip_is_exact_and_travels_as_string() -> None:
    event = InvoiceReceived(integration_uid="acme", invoice=invoice(), channel="webhook")
    raw = json.loads(event.to_json())
    assert raw["invoice"]["tax_total"] == "0.825"
    assert raw["invoice"]["lines"][0]["unit_price"] == "1.10"
    back = InvoiceReceived.from_json(event.to_json())
    assert back == event
    assert back.invoice.total == Decimal("4.125")
    assert str(back.invoice.lines[0].unit_price) == "1.10"  # trailing zero kept


def test_json_number_becomes_its_shortest_decimal_not_binary_float() -> None:
    line = InvoiceLine.model_validate(
        {"description": "x", "quantity": 1, "unit_price": 0.1, "tax_rate": 25, "amount": 0.1}
    )
    assert line.unit_price == Decimal("0.1")


def test_large_exponent_is_serialized_plainly() -> None:
    line = InvoiceLine(
        description="x", quantity=Decimal("1E+3"), unit_price=Decimal("1"),
        tax_rate=Decimal("0"), amount=Decimal("1000"),
    )
    assert json.loads(line.model_dump_json())["quantity"] == "1000"


def test_non_finite_amount_is_refused() -> None:
    with pytest.raises(ValidationError, match="finite"):
        invoice(total=Decimal("NaN"))


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        invoice(issued_at=datetime(2026, 1, 1, 12, 0))


def test_totals_must_add_up() -> None:
    with pytest.raises(ValidationError, match="!= total"):
        invoice(total=Decimal("4.13"))


def test_currency_is_normalized_and_checked() -> None:
    assert invoice().currency == "EUR"
    with pytest.raises(ValidationError, match="ISO 4217"):
        invoice(currency="euro")


def test_fields_from_a_newer_producer_are_tolerated() -> None:
    event = IntegrationEvent(integration_uid="acme", kind=IntegrationEventKind.CONNECTED)
    raw = json.loads(event.to_json())
    raw["added_in_v2"] = {"anything": [1, 2]}
    raw["schema_version"] = 2
    back = IntegrationEvent.model_validate(raw)
    assert back.event_id == event.event_id and back.kind is IntegrationEventKind.CONNECTED


def test_envelope_fields_are_filled_and_aware() -> None:
    for event_type in EVENT_TYPES:
        assert {"event_id", "schema_version", "occurred_at", "integration_uid"} <= set(
            event_type.model_fields
        )
    status = InvoiceStatus(
        integration_uid="acme",
        invoice=InvoiceRef.of(invoice()),
        state=InvoiceState.FISCALIZED,
        reason_code="ok",
        message="Fiscalized.",
        receipt_id="7f9d3a52-5a3c-4a5e-9d0b-1c2e3f405060",
    )
    assert status.occurred_at.tzinfo is not None
    assert status.occurred_at <= datetime.now(UTC)
    assert status.key == b"acme"


def test_integration_uid_is_constrained() -> None:
    with pytest.raises(ValidationError):
        IntegrationEvent(integration_uid="no spaces/slashes", kind=IntegrationEventKind.REMOVED)


def test_invoice_version_identifies_the_edit() -> None:
    first = invoice()
    edited = invoice(last_modified_at=first.last_modified_at + timedelta(minutes=1))
    assert first.version != edited.version


def test_json_schema_files_are_current() -> None:
    assert export.stale() == [], "run `fiscobridge schemas export` and commit schemas/json/"


def test_stale_detects_drift(tmp_path: Path) -> None:
    export.write(tmp_path)
    (tmp_path / "Invoice.schema.json").write_text("{}\n")
    (tmp_path / "Gone.schema.json").write_text("{}\n")
    assert export.stale(tmp_path) == ["Gone.schema.json", "Invoice.schema.json"]
