"""Property: any invoice Zoho computes maps to figures that add up to Zoho's own.

Invoices are generated across every dimension the mapping handles (tax-inclusive or
not, in either reading of item_total; line and entity discounts, before and after
tax; shipping with its tax; adjustment; transaction rounding; untaxed and 0 % lines;
foreign currency) and computed by the Zoho sandbox's model of Zoho
(`sandbox.zoho.books`), which is written apart from the mapping. The payload goes
through JSON exactly as Zoho's would.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.zoho.mapping import map_credit_note, map_invoice
from sandbox.zoho import books as zb
from sandbox.zoho.state import BooksState, DataCentre, Organization
from schemas.invoice import Invoice

CENT = Decimal("0.01")


def _organization(inclusive_totals: str) -> Organization:
    books = BooksState([DataCentre("com", "us")])
    books.add_user("owner@example.com", "pw", "com")
    org = books.add_organization("Property d.o.o.", ["owner@example.com"], "Europe/Zagreb", "EUR")
    org.inclusive_totals = inclusive_totals
    return org


ORGS = {reading: _organization(reading) for reading in ("gross", "net")}
_BOOKS = BooksState([DataCentre("com", "us")])

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("500"), places=2)
quantity = st.one_of(
    st.integers(min_value=1, max_value=12).map(Decimal),
    st.decimals(min_value=Decimal("0.25"), max_value=Decimal("9.75"), places=2),
)
percent = st.integers(min_value=0, max_value=50).map(lambda p: f"{p}%")


@st.composite
def line_spec(draw: st.DrawFn) -> dict[str, Any]:
    rate, qty = draw(money), draw(quantity)
    spec: dict[str, Any] = {"name": draw(st.sampled_from(["Kava", "Knjiga", "Usluga"])),
                            "rate": str(rate), "quantity": str(qty)}
    tax = draw(st.sampled_from(["25", "13", "5", "zero-rated", "none"]))
    if tax == "zero-rated":
        spec["tax_percentage"] = "0"
        spec["tax_name"] = "PDV0"
    elif tax != "none":
        spec["tax_percentage"] = tax
    discount = draw(st.sampled_from(["none", "percent", "amount"]))
    if discount == "percent":
        spec["discount"] = draw(percent)
    elif discount == "amount":
        gross = rate * qty
        spec["discount"] = str((gross * draw(st.integers(0, 90)) / 100).quantize(CENT))
    return spec


@st.composite
def invoice_spec(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    reading = draw(st.sampled_from(["gross", "net"]))
    spec: dict[str, Any] = {
        "invoice_number": "INV-000777",
        "date": "2026-11-25",
        "customer_name": "Kupac d.o.o.",
        "customer_id": "4600000000044001",
        "status": draw(st.sampled_from(["sent", "paid", "overdue", "draft", "void"])),
        "line_items": draw(st.lists(line_spec(), min_size=1, max_size=6)),
        "is_inclusive_tax": draw(st.booleans()),
    }
    discount = draw(st.sampled_from(["none", "percent", "amount"]))
    if discount != "none":
        spec["discount_type"] = "entity_level"
        spec["is_discount_before_tax"] = draw(st.booleans())
        spec["discount"] = (
            draw(percent) if discount == "percent" else str(draw(st.integers(1, 300)) * CENT)
        )
    if draw(st.booleans()):
        spec["shipping_charge"] = str(draw(money))
        spec["shipping_charge_tax_percentage"] = draw(st.sampled_from(["25", "13", "0"]))
    if draw(st.booleans()):
        spec["adjustment"] = str(draw(st.integers(-200, 200)) * CENT)
    spec["transaction_rounding_type"] = draw(st.sampled_from(zb.ROUNDING_TYPES))
    if draw(st.booleans()):
        spec["currency_code"] = draw(st.sampled_from(["USD", "GBP", "CHF"]))
        # Rate 1 to EUR for a foreign currency is refused as a missing rate (unit-tested).
        rates = st.decimals(min_value=Decimal("0.5"), max_value=Decimal("2"), places=6)
        spec["exchange_rate"] = str(draw(rates.filter(lambda rate: rate != 1)))
    if draw(st.booleans()):  # a credit note: the same arithmetic, its own keys
        spec.update(kind="creditnote", creditnote_number="CN-00077",
                    status=draw(st.sampled_from(["open", "closed", "draft", "void"])))  # fmt: skip
    return reading, spec


def _zoho_json(reading: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    org = ORGS[reading]
    stored = zb.StoredInvoice(
        "5000000000000000777",
        spec,
        datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
        datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
    )
    kind = spec.get("kind", "invoice")
    document = zb.render(org, stored, kind)
    lines_total = sum((line["item_total"] for line in document["line_items"]), Decimal(0))
    if document["discount_total"] > lines_total:
        return None  # Zoho refuses a discount larger than the invoice
    parsed: dict[str, Any] = json.loads(zb.dumps({"code": 0, kind: document}))[kind]
    return parsed


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invoice_spec())
def test_every_invoice_zoho_computes_maps_to_its_own_figures(
    case: tuple[str, dict[str, Any]],
) -> None:
    reading, spec = case
    zoho = _zoho_json(reading, spec)
    if zoho is None:
        return
    note = "creditnote_id" in zoho
    invoice = map_credit_note(zoho) if note else map_invoice(zoho)
    # A credit note is carried negative (a storno): compare it turned back.
    sign = -1 if note else 1
    dec = lambda v: Decimal(str(v))  # noqa: E731 - JSON numbers, read exactly

    assert invoice.total == sign * dec(zoho["total"])
    assert invoice.tax_total == sign * dec(zoho["tax_total"])
    assert invoice.subtotal + invoice.tax_total + sum(c.amount for c in invoice.charges) == (
        invoice.total
    )
    assert sum(ln.amount for ln in invoice.lines) == invoice.subtotal
    rows = sum(t.base for t in invoice.taxes) + sum(u.base for u in invoice.untaxed)
    assert rows == invoice.subtotal

    # Tax per Zoho tax id is what Zoho's lines (and its shipping) carry.
    by_id: dict[str, Decimal] = {}
    for line in zoho["line_items"]:
        for entry in line["line_item_taxes"]:
            by_id[entry["tax_id"]] = by_id.get(entry["tax_id"], Decimal(0)) + dec(
                entry["tax_amount"]
            )
    if zoho["shipping_charge_tax_id"] and zoho["shipping_charge_tax"] != "":
        key = zoho["shipping_charge_tax_id"]
        by_id[key] = by_id.get(key, Decimal(0)) + dec(zoho["shipping_charge_tax"])
    ours = {t.tax_id: sign * t.amount for t in invoice.taxes}
    assert ours == {k: v for k, v in by_id.items() if v or k in ours}
    # Each taxable base is what its tax was computed on, within Zoho's per-line rounding.
    for row in invoice.taxes:
        assert abs(row.base * row.rate / 100 - row.amount) <= CENT * len(invoice.lines)
    # Lines Zoho taxes with nothing stay apart from taxed ones.
    untaxed = {ln.tax_id for ln in invoice.lines if not ln.tax_rate}
    assert {u.tax_id for u in invoice.untaxed} == untaxed

    base = invoice.base_amounts
    assert base.currency == "EUR"
    assert base.total == sign * dec(zoho["bcy_total"])
    assert base.tax_total == sign * dec(zoho["bcy_tax_total"])
    if zoho["currency_code"] == "EUR":
        assert base.total == invoice.total

    assert Invoice.model_validate_json(invoice.model_dump_json()) == invoice
