"""An integration's read options (stored JSON, validated) and when the buyer's contact
must be read: the same decisions for poller and ingest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connectors.zoho.mapping import MappingOptions, buyer_contact_id, map_invoice, unwrap
from fiscobridge.commands.preview import preview
from schemas.invoice import PaymentMethod

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "zoho"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_defaults_store_as_nothing_and_round_trip() -> None:
    assert MappingOptions().stored() == {}
    assert MappingOptions.from_stored(None) == MappingOptions()
    assert MappingOptions.from_stored({}) == MappingOptions()
    options = MappingOptions(
        default_payment_method=PaymentMethod.BANK_TRANSFER,
        payment_modes={"stripe": PaymentMethod.CARD},
        buyer_tax_field="cf_oib",
        base_currency="EUR",
    )
    stored = options.stored()
    assert stored == {
        "buyer_tax_field": "cf_oib",
        "payment_modes": {"stripe": "card"},
        "default_payment_method": "bank_transfer",
    }
    assert MappingOptions.from_stored(json.loads(json.dumps(stored))) == options


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({"buyer_tax_field": "oib"}, "cf_ then lowercase"),
        ({"buyer_tax_field": "cf_OIB"}, "cf_ then lowercase"),
        ({"buyer_tax_field": "cf_o ib"}, "cf_ then lowercase"),
        ({"buyer_tax_field": 12}, "text like cf_oib"),
        ({"default_payment_method": "bitcoin"}, "default_payment_method must be one of"),
        ({"payment_modes": {"stripe": "wire"}}, "payment mode 'stripe' must be one of"),
        ({"payment_modes": {"Bank Transfer": "cash"}}, "lowercase without spaces"),
        ({"payment_modes": ["cash"]}, "payment_modes must map"),
        ({"base_currency": "euro"}, "three-letter ISO code"),
        ({"buyer_field": "cf_oib"}, "unknown read option(s) buyer_field"),
    ],
)
def test_invalid_options_are_refused_with_their_name(stored: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MappingOptions.from_stored(stored)


def test_a_payment_mode_matches_whatever_case_and_spaces_zoho_sends() -> None:
    _, invoice = unwrap(fixture("invoice_plain"))
    payments = [{"payment_id": "1", "payment_mode": "Stripe Card", "amount": invoice["total"],
                 "date": "2026-11-25"}]  # fmt: skip
    options = MappingOptions(payment_modes={"stripecard": PaymentMethod.CARD})
    mapped = map_invoice(invoice, payments=payments, **options.kwargs())
    assert mapped.payment_method is PaymentMethod.CARD
    assert mapped.payments[0].mode == "stripe card"


def test_the_contact_is_read_only_when_the_invoice_carries_no_tax_number() -> None:
    _, plain = unwrap(fixture("invoice_plain"))  # no tax number, cf_oib on the customer
    assert plain["tax_reg_no"] == "" and plain["customer_id"]
    # The configured custom field is on the invoice: no call.
    with_field = dict(plain, customer_custom_field_hash={"cf_oib": "12345678903"},
                      customer_custom_fields=[])  # fmt: skip
    assert buyer_contact_id(with_field, "cf_oib") is None
    # Not there: the contact is read.
    without = dict(plain, customer_custom_field_hash={}, customer_custom_fields=[])
    assert buyer_contact_id(without, "cf_oib") == plain["customer_id"]
    assert buyer_contact_id(without, None) == plain["customer_id"]
    # The invoice's own tax number suffices.
    assert buyer_contact_id(dict(without, vat_reg_no="HR12345678903"), None) is None
    # No customer, nothing to read.
    assert buyer_contact_id(dict(without, customer_id=""), None) is None


def test_the_contact_supplies_the_tax_number_in_zoho_s_shape() -> None:
    _, invoice = unwrap(fixture("invoice_plain"))
    invoice = dict(invoice, customer_custom_field_hash={}, customer_custom_fields=[])
    contact = fixture("contact")["contact"]
    by_number = map_invoice(invoice, contact=contact)
    assert (by_number.customer.tax_id, by_number.customer.tax_id_source) == (
        "12345678903", "contact.tax_reg_no")
    by_field = map_invoice(invoice, contact=dict(contact, tax_reg_no=""), buyer_tax_field="cf_oib")
    assert (by_field.customer.tax_id, by_field.customer.tax_id_source) == (
        "12345678903", "contact.custom_field:cf_oib")
    assert map_invoice(invoice, contact=dict(contact, tax_reg_no="")).customer.tax_id is None


def test_preview_reads_a_top_level_contact_and_the_stored_option_keys(tmp_path: Path) -> None:
    _, invoice = unwrap(fixture("invoice_plain"))
    document = {"invoice": dict(invoice, customer_custom_field_hash={},
                                customer_custom_fields=[]),
                "contact": dict(fixture("contact")["contact"], tax_reg_no="")}  # fmt: skip
    path = tmp_path / "invoice.json"
    path.write_text(json.dumps(document))
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"buyer_tax_field": "cf_oib",
                                    "payment_modes": {"Bank Transfer": "cash"}}))  # fmt: skip
    result = CliRunner().invoke(
        preview, ["zoho-invoice", str(path), "--settings", str(settings)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)["record"]
    assert (record["buyer_tax_id"], record["buyer_tax_id_source"]) == (
        "12345678903", "contact.custom_field:cf_oib")


def test_preview_refuses_read_options_an_integration_could_not_store(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"buyer_tax_field": "OIB"}))
    result = CliRunner().invoke(
        preview,
        ["zoho-invoice", str(FIXTURES / "invoice_plain.json"), "--settings", str(settings)],
    )
    assert result.exit_code == 2 and "buyer_tax_field" in result.output, result.output
