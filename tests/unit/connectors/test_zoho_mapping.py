"""Zoho Books invoice JSON -> canonical Invoice: exact money, aware time, clear refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from connectors.zoho.mapping import (
    InvoiceMappingError,
    map_credit_note,
    map_invoice,
    parse_datetime,
)
from schemas.invoice import ChargeKind, DocumentKind, PaymentMethod, SourceStatus

NEW_YORK_APRIL = timezone(timedelta(hours=-4))


def zoho_invoice(**overrides: Any) -> dict[str, Any]:
    """What GET /books/v3/invoices/{id} returns, parsed as plain `json.loads` would."""
    text = """{
      "invoice_id": "4600000000000012345", "invoice_number": "INV-000042",
      "date": "2025-04-09", "status": "sent",
      "customer_id": "460000000044001", "customer_name": "Kava d.o.o.",
      "vat_reg_no": "HR12345678903", "currency_code": "EUR", "exchange_rate": 1.0,
      "is_inclusive_tax": false, "discount": 0.0, "discount_type": "entity_level",
      "is_discount_before_tax": true, "discount_amount": 0.0,
      "line_items": [
        {"line_item_id": "4600000000000099001", "name": "Espresso", "rate": 1.10,
         "quantity": 3, "discount": 0, "tax_name": "VAT (25%)", "tax_percentage": 25,
         "item_total": 3.30},
        {"line_item_id": "4600000000000099002", "name": "Croissant", "rate": 2.40,
         "quantity": 2, "discount": 0, "tax_name": "VAT (25%)", "tax_percentage": 25,
         "item_total": 4.80},
        {"line_item_id": "4600000000000099003", "name": "", "description": "Newspaper",
         "rate": 1.99, "quantity": 1, "discount": 0, "tax_name": "VAT (13%)",
         "tax_percentage": 13, "item_total": 1.99}
      ],
      "shipping_charge": 0.0, "adjustment": 0.0,
      "sub_total": 10.09, "tax_total": 2.29, "total": 12.38,
      "taxes": [{"tax_name": "VAT (25%)", "tax_amount": 2.03},
                {"tax_name": "VAT (13%)", "tax_amount": 0.26}],
      "created_time": "2025-04-09T11:25:54-0400",
      "last_modified_time": "2025-04-10T08:00:01-0400"
    }"""
    document: dict[str, Any] = json.loads(text)
    document.update(overrides)
    return document


def line(name: str, rate: Any, quantity: Any, tax: Any, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "rate": rate,
        "quantity": quantity,
        "tax_name": f"VAT ({tax}%)" if tax else "",
        "tax_percentage": tax,
        **extra,
    }


def test_plain_invoice_maps_with_exact_amounts_and_string_ids() -> None:
    invoice = map_invoice(zoho_invoice())

    assert invoice.source == "zoho_books"
    assert invoice.source_id == "4600000000000012345"
    assert invoice.number == "INV-000042"
    assert invoice.currency == "EUR"
    assert invoice.customer.name == "Kava d.o.o."
    assert invoice.customer.source_id == "460000000044001"
    assert invoice.customer.tax_id == "HR12345678903"
    assert [ln.line_id for ln in invoice.lines] == [
        "4600000000000099001",
        "4600000000000099002",
        "4600000000000099003",
    ]
    assert [ln.description for ln in invoice.lines] == ["Espresso", "Croissant", "Newspaper"]
    assert invoice.lines[0].unit_price == Decimal("1.10")
    assert invoice.lines[0].amount == Decimal("3.30")
    assert [(t.rate, t.base, t.amount, t.name) for t in invoice.taxes] == [
        (Decimal("13"), Decimal("1.99"), Decimal("0.26"), "VAT (13%)"),
        (Decimal("25"), Decimal("8.10"), Decimal("2.03"), "VAT (25%)"),
    ]
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (
        Decimal("10.09"),
        Decimal("2.29"),
        Decimal("12.38"),
    )
    assert invoice.status is SourceStatus.SENT
    assert invoice.prices_include_tax is False
    assert invoice.payment_method is PaymentMethod.OTHER


def test_amounts_as_strings_numbers_and_decimals_map_identically() -> None:
    as_numbers = zoho_invoice()
    as_strings = json.loads(json.dumps(zoho_invoice()), parse_float=str, parse_int=str)
    as_decimals = json.loads(json.dumps(zoho_invoice()), parse_float=Decimal)

    assert map_invoice(as_strings) == map_invoice(as_numbers) == map_invoice(as_decimals)
    assert map_invoice(as_strings).lines[1].unit_price == Decimal("2.40")


def test_float_amounts_never_pick_up_binary_noise() -> None:
    # 0.1 + 0.2 in float arithmetic is 0.30000000000000004; the mapping must not do that.
    document = zoho_invoice(
        line_items=[line("Tea", 0.1, 3, 0, item_total=0.3)],
        taxes=[],
        sub_total=0.3,
        tax_total=0.0,
        total=0.3,
    )
    invoice = map_invoice(document)
    assert invoice.lines[0].unit_price == Decimal("0.1")
    assert invoice.total == Decimal("0.3")


def test_nineteen_digit_integer_id_is_kept_exactly() -> None:
    invoice = map_invoice(zoho_invoice(invoice_id=9_007_199_254_740_993_123))
    assert invoice.source_id == "9007199254740993123"


def test_float_id_is_refused_because_its_digits_are_already_lost() -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(zoho_invoice(invoice_id=4.6e18))
    assert caught.value.code == "invalid_id"
    assert caught.value.field == "invoice_id"


def test_colon_less_offset_parses_to_the_right_instant() -> None:
    invoice = map_invoice(zoho_invoice())
    assert invoice.last_modified_at == datetime(2025, 4, 10, 12, 0, 1, tzinfo=UTC)
    assert invoice.last_modified_at.utcoffset() == timedelta(hours=-4)
    assert parse_datetime("2025-04-09T11:25:54+0530", "t") == datetime(
        2025, 4, 9, 5, 55, 54, tzinfo=UTC
    )


# `Invoice.issued_at` is the document's own date as Zoho states it (`date`, with
# `created_time` when that falls on it): the date printed on the invoice, what the portal
# shows before FiscoBridge saw the invoice out of draft. It is not DatVrijeme: that is
# `first_seen_issued_at`, the moment of the event that first brought the invoice out of
# draft (the fiscalizer sets it from `occurred_at`;
# tests/integration/test_fiscalizer_hr_cis.py).


def test_the_documents_date_is_its_created_time_when_on_the_invoice_date() -> None:
    invoice = map_invoice(zoho_invoice())
    assert invoice.issued_at == datetime(2025, 4, 9, 11, 25, 54, tzinfo=NEW_YORK_APRIL)
    assert invoice.first_seen_issued_at is None  # the mapping never claims to have seen it


def test_a_document_dated_another_day_is_dated_midnight_of_its_date() -> None:
    invoice = map_invoice(zoho_invoice(date="2025-04-01"))
    assert invoice.issued_at == datetime(2025, 4, 1, 0, 0, tzinfo=NEW_YORK_APRIL)


def test_issue_date_compares_local_days_not_utc_days() -> None:
    # 23:30 in New York on the 9th is already the 10th in UTC: still the invoice's day.
    invoice = map_invoice(zoho_invoice(created_time="2025-04-09T23:30:00-0400"))
    assert invoice.issued_at == datetime(2025, 4, 9, 23, 30, tzinfo=NEW_YORK_APRIL)


def test_tax_inclusive_prices_split_into_base_and_tax() -> None:
    document = zoho_invoice(
        is_inclusive_tax=True,
        line_items=[
            line("Lunch", "10.00", "3", 25, item_total="30.00"),
            line("Book", "9.99", "1", 13, item_total="9.99"),
        ],
        taxes=[
            {"tax_name": "VAT (25%)", "tax_amount": "6.00"},
            {"tax_name": "VAT (13%)", "tax_amount": "1.15"},
        ],
        sub_total="39.99",
        tax_total="7.15",
        total="39.99",
    )
    invoice = map_invoice(document)

    assert invoice.prices_include_tax is True
    assert [(t.rate, t.base, t.amount) for t in invoice.taxes] == [
        (Decimal("13"), Decimal("8.84"), Decimal("1.15")),
        (Decimal("25"), Decimal("24.00"), Decimal("6.00")),
    ]
    assert invoice.lines[0].unit_price == Decimal("8")
    assert invoice.lines[0].amount == Decimal("24.00")
    assert invoice.lines[1].amount == Decimal("8.84")
    assert invoice.total == Decimal("39.99")


def test_inclusive_base_is_spread_over_lines_to_the_cent() -> None:
    document = zoho_invoice(
        is_inclusive_tax=True,
        line_items=[line(f"Item {i}", "1.00", "1", 25) for i in range(3)],
        taxes=[{"tax_name": "VAT (25%)", "tax_amount": "0.60"}],
        sub_total="3.00",
        tax_total="0.60",
        total="3.00",
    )
    invoice = map_invoice(document)
    amounts = [ln.amount for ln in invoice.lines]
    assert sum(amounts) == invoice.taxes[0].base == Decimal("2.40")
    assert set(amounts) == {Decimal("0.80")}


def test_line_discounts_as_percentage_and_as_amount() -> None:
    document = zoho_invoice(
        line_items=[
            line("Percent off", "20.00", "5", 25, discount="10%", item_total="90.00"),
            line("Amount off", "20.00", "5", 25, discount=7.5, item_total="92.50"),
        ],
        taxes=[{"tax_name": "VAT (25%)", "tax_amount": "45.63"}],
        sub_total="182.50",
        tax_total="45.63",
        total="228.13",
    )
    invoice = map_invoice(document)

    assert [(ln.unit_price, ln.discount, ln.amount) for ln in invoice.lines] == [
        (Decimal("20.00"), Decimal("10.00"), Decimal("90.00")),
        (Decimal("20.00"), Decimal("7.50"), Decimal("92.50")),
    ]
    assert invoice.taxes[0].base == Decimal("182.50")


def test_item_total_that_contradicts_rate_quantity_and_discount_is_refused() -> None:
    document = zoho_invoice(line_items=[line("Odd", "10.00", "2", 0, item_total="25.00")])
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(document)
    assert caught.value.code == "line_total_mismatch"
    assert caught.value.field == "line_items[0].item_total"


def test_entity_discount_before_tax_lowers_every_taxable_base() -> None:
    document = zoho_invoice(
        line_items=[
            line("Service", "100.00", "1", 25, item_total="100.00"),
            line("Book", "50.00", "1", 13, item_total="50.00"),
        ],
        discount="10%",
        discount_amount="15.00",
        taxes=[
            {"tax_name": "VAT (25%)", "tax_amount": "22.50"},
            {"tax_name": "VAT (13%)", "tax_amount": "5.85"},
        ],
        sub_total="150.00",
        tax_total="28.35",
        total="163.35",
    )
    invoice = map_invoice(document)

    assert [(ln.discount, ln.amount) for ln in invoice.lines] == [
        (Decimal("10.00"), Decimal("90.00")),
        (Decimal("5.00"), Decimal("45.00")),
    ]
    assert [(t.rate, t.base) for t in invoice.taxes] == [
        (Decimal("13"), Decimal("45.00")),
        (Decimal("25"), Decimal("90.00")),
    ]
    assert invoice.total == Decimal("163.35")


def test_entity_discount_spread_keeps_every_cent() -> None:
    document = zoho_invoice(
        line_items=[line(f"Item {i}", "1.00", "1", 0) for i in range(3)],
        discount="1.00",
        discount_amount=None,
        taxes=[],
        sub_total="3.00",
        tax_total="0",
        total="2.00",
    )
    invoice = map_invoice(document)
    assert sorted(ln.discount for ln in invoice.lines) == [
        Decimal("0.33"),
        Decimal("0.33"),
        Decimal("0.34"),
    ]
    assert invoice.subtotal == Decimal("2.00")


def test_discount_after_tax_is_a_charge_outside_the_vat_breakdown() -> None:
    document = zoho_invoice(
        is_discount_before_tax=False, discount="5.00", discount_total=5, total="7.38"
    )
    invoice = map_invoice(document)
    assert [(c.kind, c.amount) for c in invoice.charges] == [
        (ChargeKind.DISCOUNT_AFTER_TAX, Decimal("-5.00"))
    ]
    assert invoice.subtotal == Decimal("10.09") and invoice.tax_total == Decimal("2.29")
    assert invoice.total == Decimal("7.38")


@pytest.mark.parametrize(
    ("field", "kind"),
    [("adjustment", ChargeKind.ADJUSTMENT), ("roundoff_value", ChargeKind.ROUNDING)],
)
def test_adjustment_and_rounding_are_signed_charges(field: str, kind: ChargeKind) -> None:
    invoice = map_invoice(zoho_invoice(**{field: -0.38, "total": 12.0}))
    assert [(c.kind, c.amount) for c in invoice.charges] == [(kind, Decimal("-0.38"))]
    assert invoice.total == Decimal("12.00")
    assert sum(t.amount for t in invoice.taxes) == Decimal("2.29")  # the tax is untouched


@pytest.mark.parametrize("field", ["adjustment", "roundoff_value"])
def test_a_charge_that_does_not_reach_zohos_total_is_refused_naming_the_total(
    field: str,
) -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(zoho_invoice(**{field: -0.38, "total": 12.38}))
    assert caught.value.code == "total_mismatch"
    assert "INV-000042" in str(caught.value) and "12.00" in str(caught.value)


def test_shipping_becomes_a_taxed_line() -> None:
    document = zoho_invoice(
        line_items=[line("Mug", "8.00", "1", 25)],
        shipping_charge="4.00",
        shipping_charge_tax_percentage="25",
        shipping_charge_tax_name="VAT (25%)",
        taxes=[{"tax_name": "VAT (25%)", "tax_amount": "3.00"}],
        sub_total="8.00",
        tax_total="3.00",
        total="15.00",
    )
    invoice = map_invoice(document)
    assert [(ln.description, ln.amount, ln.tax_rate) for ln in invoice.lines] == [
        ("Mug", Decimal("8.00"), Decimal("25")),
        ("Shipping charge", Decimal("4.00"), Decimal("25")),
    ]
    assert invoice.taxes[0].base == Decimal("12.00")
    assert invoice.total == Decimal("15.00")


def test_tax_comes_from_zohos_per_line_rounding_when_given() -> None:
    lines = [line(f"Sweet {i}", "0.05", "1", 25) for i in range(3)]
    with_taxes = zoho_invoice(
        line_items=lines,
        taxes=[{"tax_name": "VAT (25%)", "tax_amount": "0.03"}],
        sub_total="0.15",
        tax_total="0.03",
        total="0.18",
    )
    assert map_invoice(with_taxes).tax_total == Decimal("0.03")

    # Without Zoho's figures the tax is computed per rate, half up: 0.0375 -> 0.04.
    bare = zoho_invoice(line_items=lines, taxes=[], sub_total=None, tax_total=None, total=None)
    assert map_invoice(bare).tax_total == Decimal("0.04")


def test_without_a_breakdown_per_line_rounding_is_used_when_it_matches_tax_total() -> None:
    lines = [line(f"Sweet {i}", "0.05", "1", 25) for i in range(3)]
    document = zoho_invoice(
        line_items=lines, taxes=None, sub_total="0.15", tax_total="0.03", total="0.18"
    )
    assert map_invoice(document).tax_total == Decimal("0.03")


def test_tax_without_names_belongs_to_the_only_taxed_rate() -> None:
    document = zoho_invoice(
        line_items=[line("Espresso", "1.10", "3", 25, tax_name="")],
        taxes=[{"tax_name": "PDV", "tax_amount": "0.83"}],
        sub_total="3.30",
        tax_total="0.83",
        total="4.13",
    )
    assert map_invoice(document).taxes[0].amount == Decimal("0.83")


def test_a_tax_summary_that_differs_from_the_lines_is_refused() -> None:
    document = zoho_invoice(taxes=[{"tax_name": "Mystery tax", "tax_amount": "1.00"}])
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(document)
    assert caught.value.code == "taxes_mismatch"
    assert "1.00" in str(caught.value) and "2.29" in str(caught.value)


def test_total_that_does_not_add_up_is_refused_with_both_figures() -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(zoho_invoice(total=12.40))
    assert caught.value.code == "total_mismatch"
    assert "12.4" in str(caught.value) and "12.38" in str(caught.value)


def test_tax_total_that_does_not_add_up_is_refused() -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(zoho_invoice(tax_total=2.30, total=12.39))
    assert caught.value.code == "tax_total_mismatch"


@pytest.mark.parametrize(
    ("zoho_status", "expected"),
    [
        ("draft", SourceStatus.DRAFT),
        ("sent", SourceStatus.SENT),
        ("viewed", SourceStatus.VIEWED),
        ("unpaid", SourceStatus.UNPAID),
        ("overdue", SourceStatus.OVERDUE),
        ("partially_paid", SourceStatus.PARTIALLY_PAID),
        ("paid", SourceStatus.PAID),
        ("void", SourceStatus.VOID),
        ("pending_approval", SourceStatus.OTHER),
        ("PAID", SourceStatus.PAID),
    ],
)
def test_statuses(zoho_status: str, expected: SourceStatus) -> None:
    assert map_invoice(zoho_invoice(status=zoho_status)).status is expected


def test_default_payment_method_is_applied() -> None:
    invoice = map_invoice(zoho_invoice(), default_payment_method=PaymentMethod.CARD)
    assert invoice.payment_method is PaymentMethod.CARD


def test_currency_without_minor_units_rounds_to_whole_yen() -> None:
    document = zoho_invoice(
        currency_code="JPY",
        line_items=[line("Ramen", "1250", "3", 10)],
        taxes=[],
        sub_total=None,
        tax_total=None,
        total=None,
    )
    invoice = map_invoice(document, base_currency="JPY")
    assert invoice.tax_total == Decimal("375")
    assert invoice.total == Decimal("4125")


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"invoice_number": None}, "missing_field", "invoice_number"),
        ({"customer_name": ""}, "missing_field", "customer_name"),
        ({"currency_code": None}, "missing_field", "currency_code"),
        ({"last_modified_time": "2025-04-10T08:00:01"}, "naive_datetime", "last_modified_time"),
        ({"created_time": "yesterday"}, "invalid_datetime", "created_time"),
        ({"date": "09/04/2025"}, "invalid_date", "date"),
        ({"line_items": None}, "line_items_missing", "line_items"),
        ({"line_items": "Espresso"}, "invalid_field", "line_items"),
        ({"is_inclusive_tax": "maybe"}, "invalid_field", "is_inclusive_tax"),
        ({"taxes": [{"tax_name": "VAT (25%)", "tax_amount": True}]}, "invalid_amount",
         "taxes[0].tax_amount"),
    ],
)  # fmt: skip
def test_malformed_fields_are_refused_by_name(
    overrides: dict[str, Any], code: str, field: str
) -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(zoho_invoice(**overrides))
    assert (caught.value.code, caught.value.field) == (code, field)
    assert field.split("[")[0] in str(caught.value)


@pytest.mark.parametrize(
    ("line_overrides", "code", "field"),
    [
        ({"rate": "abc"}, "invalid_amount", "line_items[0].rate"),
        ({"rate": "NaN"}, "invalid_amount", "line_items[0].rate"),
        ({"quantity": None}, "missing_field", "line_items[0].quantity"),
        ({"discount": "150%"}, "invalid_amount", "line_items[0].discount"),
        ({"discount": -1}, "invalid_amount", "line_items[0].discount"),
        ({"name": 7.5}, "invalid_field", "line_items[0].name"),
    ],
)
def test_malformed_lines_are_refused_by_position(
    line_overrides: dict[str, Any], code: str, field: str
) -> None:
    document = zoho_invoice()
    document["line_items"][0].update(line_overrides)
    document["line_items"][0].pop("item_total")
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(document)
    assert (caught.value.code, caught.value.field) == (code, field)


def test_list_item_without_lines_asks_for_the_detail() -> None:
    summary = {k: v for k, v in zoho_invoice().items() if k not in ("line_items", "taxes")}
    with pytest.raises(InvoiceMappingError, match="fetch the invoice detail"):
        map_invoice(summary)


def test_not_an_object_is_refused() -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(["not", "an", "invoice"])  # type: ignore[arg-type]
    assert caught.value.code == "not_an_object"


def test_a_foreign_currency_at_rate_one_is_refused_as_a_missing_exchange_rate() -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(zoho_invoice(currency_code="USD", exchange_rate=1))
    assert caught.value.code == "exchange_rate_missing"
    assert "USD" in str(caught.value) and "EUR" in str(caught.value)


def test_foreign_currency_rows_add_up_to_zohos_base_currency_total() -> None:
    # 12.38 USD at 0.9; Zoho converts each figure on its own: 11.14 = 9.08 + 2.06, not
    # 9.081 + 2.061 rounded separately.
    invoice = map_invoice(
        zoho_invoice(
            currency_code="USD", exchange_rate="0.9", bcy_total="11.14", bcy_tax_total="2.06"
        )
    )
    base = invoice.base_amounts
    assert (base.currency, base.total, base.tax_total) == ("EUR", Decimal("11.14"), Decimal("2.06"))
    assert sum(t.base for t in base.taxes) + base.tax_total == base.total
    assert invoice.total == Decimal("12.38") and invoice.currency == "USD"
    view = invoice.in_base_currency()
    assert (view.currency, view.total, view.subtotal) == ("EUR", Decimal("11.14"), Decimal("9.08"))


def test_base_currency_figures_that_contradict_the_rate_are_refused() -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(zoho_invoice(currency_code="USD", exchange_rate="0.9", bcy_total="12.38"))
    assert caught.value.code == "exchange_mismatch"


def test_a_credit_note_is_mapped_negative_with_what_it_credits() -> None:
    document = zoho_invoice(
        status="open",
        invoices_credited=[
            {
                "invoice_id": "4600000000000012345",
                "invoice_number": "INV-000042",
                "credited_amount": 12.38,
            }
        ],
    )
    del document["invoice_id"], document["invoice_number"]
    document.update(creditnote_id="4600000000000077777", creditnote_number="CN-00003")
    note = map_credit_note(document)
    assert note.kind is DocumentKind.CREDIT_NOTE and note.number == "CN-00003"
    assert note.total == Decimal("-12.38") and note.tax_total == Decimal("-2.29")
    assert [t.amount for t in note.taxes] == [Decimal("-0.26"), Decimal("-2.03")]
    assert note.lines[0].quantity == -3 and note.lines[0].unit_price == Decimal("1.10")
    assert note.status is SourceStatus.SENT and note.source_status == "open"
    assert [(c.source_id, c.number, c.amount) for c in note.credited] == [
        ("4600000000000012345", "INV-000042", Decimal("12.38"))
    ]


def test_payments_decide_the_method_by_the_largest_amount() -> None:
    payments = [
        {"payment_id": "1", "payment_mode": "cash", "amount": 2.38, "date": "2025-04-09"},
        {"payment_id": "2", "payment_mode": "creditcard", "amount": 10, "date": "2025-04-09"},
    ]
    invoice = map_invoice(zoho_invoice(status="paid"), payments=payments)
    assert invoice.payment_method is PaymentMethod.CARD
    assert [(p.mode, p.method) for p in invoice.payments] == [
        ("cash", PaymentMethod.CASH),
        ("creditcard", PaymentMethod.CARD),
    ]
    remapped = map_invoice(
        zoho_invoice(status="paid"),
        payments=payments,
        payment_modes={"creditcard": PaymentMethod.OTHER},
    )
    assert remapped.payment_method is PaymentMethod.OTHER


def test_the_buyer_tax_number_comes_from_the_configured_custom_field_first() -> None:
    document = zoho_invoice(
        vat_reg_no="",
        tax_reg_no="",
        customer_custom_field_hash={"cf_oib": "94577403194", "cf_oib_unformatted": "94577403194"},
    )
    invoice = map_invoice(document, buyer_tax_field="cf_oib")
    assert (invoice.customer.tax_id, invoice.customer.tax_id_source) == (
        "94577403194",
        "invoice.custom_field:cf_oib",
    )
    contact = {"tax_reg_no": "HR12345678903"}
    plain = map_invoice(document, contact=contact)
    assert (plain.customer.tax_id, plain.customer.tax_id_source) == (
        "HR12345678903",
        "contact.tax_reg_no",
    )
    assert map_invoice(document).customer.tax_id is None


def test_taxes_are_grouped_by_tax_id_even_at_one_rate() -> None:
    # Two Zoho taxes at 0 %: one exempt, one outside the scope of VAT; and two at 25 %
    # (say, a second one the business set up for a branch): none merged by rate.
    document = zoho_invoice(
        line_items=[
            line(
                "A",
                "10.00",
                "1",
                25,
                tax_id="t25a",
                line_item_taxes=[{"tax_id": "t25a", "tax_name": "PDV25 (25%)", "tax_amount": 2.5}],
            ),
            line(
                "B",
                "10.00",
                "1",
                25,
                tax_id="t25b",
                line_item_taxes=[
                    {"tax_id": "t25b", "tax_name": "PDV25 B (25%)", "tax_amount": 2.5}
                ],
            ),
            line("C", "5.00", "1", 0, tax_id="t0exempt", tax_name="PDV0 oslobodjeno"),
            line("D", "4.00", "1", 0, tax_id=""),
        ],
        taxes=[
            {"tax_name": "PDV25 (25%)", "tax_amount": 2.5},
            {"tax_name": "PDV25 B (25%)", "tax_amount": 2.5},
        ],
        sub_total="29.00",
        tax_total="5.00",
        total="34.00",
    )
    invoice = map_invoice(document)
    assert [(t.tax_id, t.base, t.amount) for t in invoice.taxes] == [
        ("t25a", Decimal("10.00"), Decimal("2.5")),
        ("t25b", Decimal("10.00"), Decimal("2.5")),
    ]
    assert [(u.tax_id, u.base) for u in invoice.untaxed] == [
        ("t0exempt", Decimal("5.00")),
        (None, Decimal("4.00")),
    ]


def test_empty_strings_in_numeric_fields_mean_nothing() -> None:
    document = zoho_invoice(
        shipping_charge="",
        adjustment="",
        roundoff_value="",
        discount="",
        discount_total="",
        discount_amount="",
        exchange_rate="",
        shipping_charge_tax_percentage="",
    )
    assert map_invoice(document).total == Decimal("12.38")


@pytest.mark.parametrize("shipping_charge", ["4.00", "5.00"])
def test_shipping_of_a_tax_inclusive_invoice_in_either_reading(shipping_charge: str) -> None:
    # Zoho may state an inclusive invoice's shipping net (4.00) or gross (5.00); its
    # exclusive/inclusive copies say which.
    document = zoho_invoice(
        is_inclusive_tax=True,
        line_items=[line("Mug", "10.00", "1", 25, item_total="10.00")],
        shipping_charge=shipping_charge,
        shipping_charge_tax_percentage=25,
        shipping_charge_tax_id="t25",
        shipping_charge_tax="1.00",
        shipping_charge_exclusive_of_tax="4.00",
        shipping_charge_inclusive_of_tax="5.00",
        taxes=[{"tax_name": "VAT (25%)", "tax_amount": "3.00"}],
        sub_total="10.00",
        tax_total="3.00",
        total="15.00",
    )
    invoice = map_invoice(document)
    shipping = invoice.lines[-1]
    assert (shipping.description, shipping.amount, shipping.tax_id) == (
        "Shipping charge",
        Decimal("4.00"),
        "t25",
    )
    assert invoice.subtotal == Decimal("12.00") and invoice.total == Decimal("15.00")


def test_an_exchange_rate_of_zero_is_refused_not_taken_as_one() -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(zoho_invoice(exchange_rate="0"))
    assert (caught.value.code, caught.value.field) == ("invalid_amount", "exchange_rate")


def test_a_sub_total_no_reading_explains_is_refused() -> None:
    # Zoho's sub_total counts a line the payload does not carry.
    with pytest.raises(InvoiceMappingError) as caught:
        map_invoice(zoho_invoice(sub_total="15.09"))
    assert caught.value.code == "sub_total_mismatch"
    assert "15.09" in str(caught.value) and "10.09" in str(caught.value)


def test_a_line_without_name_or_description_is_named_by_its_place() -> None:
    document = zoho_invoice()
    document["line_items"][1].update(name="", description="")
    assert map_invoice(document).lines[1].description == "line 2"
