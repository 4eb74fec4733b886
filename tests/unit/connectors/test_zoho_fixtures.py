"""Every recorded-shape payload under tests/fixtures/zoho/ maps, and previews, as documented."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from connectors.zoho.mapping import InvoiceMappingError, map_document, unwrap
from fiscobridge.commands.preview import PreviewSettings, preview, preview_document

FIXTURES = Path(__file__).parents[2] / "fixtures" / "zoho"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURES / "expected.json").read_text())


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(), parse_float=Decimal)


def test_every_fixture_is_described() -> None:
    files = {p.name for p in FIXTURES.glob("*.json")} - {"expected.json"}
    assert files == set(EXPECTED)
    readme = (FIXTURES / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in files)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preview_of_each_fixture(name: str) -> None:
    expected = EXPECTED[name]
    payments = load(expected["payments"])["payments"] if "payments" in expected else None
    result = preview_document(load(name), PreviewSettings(**expected.get("settings", {})), payments)
    assert (result["outcome"], result["code"]) == (expected["outcome"], expected["code"]), result
    record = result["record"]
    if "total" not in expected:
        assert record is None
        return
    assert record["total"] == expected["total"]
    assert record["document"]["total"] == expected["document_total"]
    assert [[v["rate"], v["base"], v["amount"]] for v in record["vat"]] == expected["vat"]
    assert [[c["kind"], c["amount"]] for c in record["charges"]] == expected["charges"]
    assert record["payment_method"] == expected["payment_method"]
    if "exempt" in expected:  # amounts the integration's tax mapping calls exempt
        assert record["exempt"] == expected["exempt"]
    assert record["buyer_oib"] == expected["buyer_oib"]


def test_recorded_invoices_have_the_recorded_shape() -> None:
    invoice = load("recorded_hr_inclusive_discount.json")["invoice"]
    line = invoice["line_items"][0]
    assert line["tax_name"] == "PDV25" and line["line_item_taxes"][0]["tax_name"] == "PDV25 (25%)"
    assert all("tax_id" not in t for t in invoice["taxes"])
    sandbox = load("invoice_plain.json")["invoice"]
    assert len(sandbox) >= 180 and isinstance(sandbox["invoice_id"], str)
    assert set(sandbox["line_items"][0]) >= set(line) - {"expense_id", "purchase_rate"}


def test_the_inclusive_readings_map_to_the_same_figures() -> None:
    gross = map_document(load("invoice_inclusive_gross.json"))
    net = map_document(load("invoice_inclusive_net.json"))
    assert [(t.tax_id, t.base, t.amount) for t in gross.taxes] == [
        (t.tax_id, t.base, t.amount) for t in net.taxes
    ]
    assert gross.total == net.total == Decimal("10.09")


def test_a_webhook_body_and_a_get_answer_map_alike() -> None:
    assert map_document(load("webhook_invoice.json")) == map_document(load("invoice_plain.json"))


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("error_1002.json", "zoho_error"),
        ("error_57.json", "zoho_error"),
        ("list_page.json", "not_a_document"),
        ("payments.json", "not_a_document"),
    ],
)
def test_what_is_not_a_document_says_so(name: str, code: str) -> None:
    with pytest.raises(InvoiceMappingError) as caught:
        unwrap(load(name))
    assert caught.value.code == code


def test_the_command_prints_the_outcome_as_json(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(
        json.dumps({"buyer_tax_field": "cf_oib", "payment_methods": {"other": "G"}})
    )
    result = CliRunner().invoke(
        preview,
        ["zoho-invoice", str(FIXTURES / "recorded_hr_inclusive_discount.json"), "--settings",
         str(settings)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["outcome"] == "sign"
    assert printed["record"]["payment_method"] == "G"
    assert printed["record"]["buyer_oib"] == "12345678903"
    assert printed["record"]["vat"] == [
        {"rate": "25.00", "base": "18.00", "amount": "4.50"},
        {"rate": "13.00", "base": "7.65", "amount": "0.99"},
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"code": 57, "message": "You are not authorized"}', "error answer from Zoho"),
    ],
)
def test_unreadable_input_exits_2_with_a_clear_message(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "invoice.json"
    if content is not None:
        path.write_text(content)
    result = CliRunner().invoke(preview, ["zoho-invoice", str(path)])
    assert result.exit_code == 2
    assert message in result.output


def test_bad_settings_exit_2_naming_the_setting(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"trigger": "sometimes"}))
    result = CliRunner().invoke(
        preview,
        ["zoho-invoice", str(FIXTURES / "invoice_plain.json"), "--settings", str(settings)],
    )
    assert result.exit_code == 2 and "trigger" in result.output
