"""Invoices as Zoho Books shows them: totals computed the way Zoho does, JSON like Zoho's.

Zoho computes per line: item_total = rate x quantity - discount (rounded to the
currency), tax = item_total (less its share of an entity-level discount given before
tax) x rate, rounded per line; `taxes[]` sums those per tax name. Prices may include
tax (`is_inclusive_tax`). Shipping is taxed at its own rate; `adjustment` is added
untaxed. Times go out in the organization's time zone with a colon-less offset.

This is written independently of the connector's mapping on purpose: the connector is
tested against what Zoho sends, not against its own arithmetic.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.zoho.state import Organization, SandboxError, StoredInvoice, decimal_of, instant_of

CENT = Decimal("0.01")
STATUSES = ("draft", "sent", "viewed", "overdue", "unpaid", "partially_paid", "paid", "void")
SORT_COLUMNS = (
    "last_modified_time",
    "created_time",
    "date",
    "invoice_number",
    "customer_name",
    "total",
)
_UNPAID = {"sent", "viewed", "overdue", "unpaid", "partially_paid"}


def zoho_time(org: Organization, instant: datetime) -> str:
    return org.local(instant).strftime("%Y-%m-%dT%H:%M:%S%z")


def _tax_name(percent: Decimal) -> str:
    return f"VAT ({percent.normalize():f}%)"


def _round(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _discount(value: Any, base: Decimal, what: str) -> Decimal:
    if value in (None, "", 0):
        return Decimal(0)
    if isinstance(value, str) and value.strip().endswith("%"):
        return base * decimal_of(value.strip()[:-1], what) / 100
    return decimal_of(value, what)


def validate(fields: dict[str, Any]) -> None:
    """Refuse what Zoho would refuse, so the sandbox never serves an impossible invoice."""
    if not fields.get("customer_name"):
        raise SandboxError("customer_name is required")
    lines = fields.get("line_items")
    if not isinstance(lines, list) or not lines:
        raise SandboxError("line_items must be a non-empty list")
    for key in ("created_time", "last_modified_time"):
        instant_of(fields.get(key))
    status = fields.get("status", "sent")
    if status not in STATUSES:
        raise SandboxError(f"status must be one of {STATUSES}")
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            raise SandboxError(f"line_items[{i}] must be an object")
        for key in ("rate", "quantity"):
            decimal_of(line.get(key), f"line_items[{i}].{key}")
    sample = {"invoice_number": "INV-0", "date": "2000-01-01", **fields}
    try:
        render(_dummy_org(), StoredInvoice("0", sample, _EPOCH, _EPOCH))
    except (KeyError, TypeError, ArithmeticError) as error:
        raise SandboxError(f"invoice cannot be computed: {error!r}") from error


def render(org: Organization, invoice: StoredInvoice) -> dict[str, Any]:
    """The `invoice` object of `GET /books/v3/invoices/{id}` (and of the webhook)."""
    f = invoice.fields
    inclusive = bool(f.get("is_inclusive_tax", False))
    lines: list[dict[str, Any]] = []
    totals: list[Decimal] = []
    for i, raw in enumerate(f["line_items"]):
        rate = decimal_of(raw["rate"], f"line_items[{i}].rate")
        quantity = decimal_of(raw["quantity"], f"line_items[{i}].quantity")
        gross = rate * quantity
        discount = _discount(raw.get("discount"), gross, f"line_items[{i}].discount")
        item_total = _round(gross - discount)
        totals.append(item_total)
        percent = decimal_of(raw.get("tax_percentage", 0), f"line_items[{i}].tax_percentage")
        lines.append(
            {
                "line_item_id": str(
                    6_000_000_000_000_000_000 + int(invoice.invoice_id) % 10**15 * 1000 + i
                ),
                "item_id": raw.get("item_id", ""),
                "name": raw.get("name", ""),
                "description": raw.get("description", ""),
                "item_order": i + 1,
                "rate": rate,
                "quantity": quantity,
                "unit": raw.get("unit", ""),
                "discount_amount": _round(discount),
                "discount": raw.get("discount", 0),
                "tax_id": raw.get("tax_id", "") if percent else "",
                "tax_name": raw.get("tax_name", _tax_name(percent)) if percent else "",
                "tax_type": "tax" if percent else "",
                "tax_percentage": percent,
                "item_total": item_total,
            }
        )
    sub_total = sum(totals, Decimal(0))

    entity_discount = Decimal(0)
    discount_type = f.get("discount_type", "entity_level")
    if discount_type == "entity_level":
        entity_discount = _round(_discount(f.get("discount"), sub_total, "discount"))
    before_tax = bool(f.get("is_discount_before_tax", True))
    shares = _spread(entity_discount if before_tax else Decimal(0), totals)

    taxes: dict[str, Decimal] = {}
    for line, total, share in zip(lines, totals, shares, strict=True):
        percent = line["tax_percentage"]
        if not percent:
            continue
        taxable = total - share
        divisor = 100 + percent if inclusive else Decimal(100)
        taxes[line["tax_name"]] = taxes.get(line["tax_name"], Decimal(0)) + _round(
            taxable * percent / divisor
        )

    shipping = decimal_of(f.get("shipping_charge", 0), "shipping_charge")
    shipping_percent = decimal_of(
        f.get("shipping_charge_tax_percentage", 0), "shipping_charge_tax_percentage"
    )
    shipping_tax_name = f.get("shipping_charge_tax_name", _tax_name(shipping_percent))
    if shipping and shipping_percent:
        divisor = 100 + shipping_percent if inclusive else Decimal(100)
        taxes[shipping_tax_name] = taxes.get(shipping_tax_name, Decimal(0)) + _round(
            shipping * shipping_percent / divisor
        )
    adjustment = decimal_of(f.get("adjustment", 0), "adjustment")
    tax_total = sum(taxes.values(), Decimal(0))
    total = sub_total - entity_discount + shipping + adjustment
    if not inclusive:
        total += tax_total
    status = f.get("status", "sent")
    paid = total if status == "paid" else decimal_of(f.get("payment_made", 0), "payment_made")

    document: dict[str, Any] = {
        "invoice_id": invoice.invoice_id,
        "invoice_number": f["invoice_number"],
        "date": f["date"],
        "due_date": f.get("due_date", f["date"]),
        "status": status,
        "customer_id": str(f.get("customer_id", "")),
        "customer_name": f["customer_name"],
        "vat_reg_no": f.get("vat_reg_no", ""),
        "reference_number": f.get("reference_number", ""),
        "currency_id": "",
        "currency_code": f.get("currency_code", org.currency_code),
        "exchange_rate": Decimal("1.0"),
        "is_inclusive_tax": inclusive,
        "discount": f.get("discount", 0),
        "discount_type": discount_type,
        "is_discount_before_tax": before_tax,
        "discount_amount": entity_discount,
        "line_items": lines,
        "shipping_charge": shipping,
        "adjustment": adjustment,
        "adjustment_description": f.get("adjustment_description", "Adjustment"),
        "sub_total": sub_total,
        "tax_total": tax_total,
        "total": total,
        "taxes": [{"tax_name": name, "tax_amount": amount} for name, amount in taxes.items()],
        "payment_made": paid,
        "balance": total - paid,
        "created_time": zoho_time(org, invoice.created_time),
        "last_modified_time": zoho_time(org, invoice.last_modified_time),
    }
    if shipping and shipping_percent:
        document["shipping_charge_tax_name"] = shipping_tax_name
        document["shipping_charge_tax_percentage"] = shipping_percent
    return document


_LIST_FIELDS = (
    "invoice_id",
    "invoice_number",
    "customer_id",
    "customer_name",
    "status",
    "date",
    "due_date",
    "reference_number",
    "currency_code",
    "exchange_rate",
    "total",
    "balance",
    "created_time",
    "last_modified_time",
)


def list_item(document: dict[str, Any]) -> dict[str, Any]:
    """A row of `GET /books/v3/invoices`: no line items, no tax breakdown."""
    return {key: document[key] for key in _LIST_FIELDS}


def matches(document: dict[str, Any], filters: dict[str, str]) -> bool:
    status = filters.get("status")
    if status == "unpaid":
        if document["status"] not in _UNPAID:
            return False
    elif status and document["status"] != status:
        return False
    for key in ("customer_id", "invoice_number"):
        if filters.get(key) and document[key] != filters[key]:
            return False
    if filters.get("date_start") and document["date"] < filters["date_start"]:
        return False
    return not (filters.get("date_end") and document["date"] > filters["date_end"])


def header(invoice: StoredInvoice) -> dict[str, Any]:
    """The fields list filters look at, without computing the invoice's totals."""
    f = invoice.fields
    return {
        "status": f.get("status", "sent"),
        "customer_id": str(f.get("customer_id", "")),
        "customer_name": f["customer_name"],
        "invoice_number": f["invoice_number"],
        "date": f["date"],
    }


def sort_key(column: str, org: Organization, invoice: StoredInvoice) -> tuple[Any, ...]:
    # Compare instants, never the rendered strings; ties broken by id for stable pages.
    if column == "last_modified_time":
        return (invoice.last_modified_time, int(invoice.invoice_id))
    if column == "created_time":
        return (invoice.created_time, int(invoice.invoice_id))
    if column == "total":
        return (render(org, invoice)["total"], int(invoice.invoice_id))
    return (header(invoice)[column], int(invoice.invoice_id))


def _spread(amount: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Each line's share of an entity discount, the last line taking the rounding rest."""
    total = sum(weights, Decimal(0))
    if not amount or not total:
        return [Decimal(0)] * len(weights)
    shares = [_round(amount * w / total) for w in weights[:-1]]
    return [*shares, amount - sum(shares, Decimal(0))]


_NUMBER = re.compile(r'"\\u0000(-?[0-9]+(?:\.[0-9]+)?)"')


def dumps(document: Any) -> bytes:
    """JSON with `Decimal`s written as exact numbers, as Zoho's amounts arrive."""

    def mark(value: Any) -> str:
        if isinstance(value, Decimal):
            return "\u0000" + format(value, "f")
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    return _NUMBER.sub(r"\1", json.dumps(document, default=mark)).encode()


_EPOCH = datetime.fromisoformat("2000-01-01T00:00:00+00:00")


def _dummy_org() -> Organization:
    return Organization("0", "validation", "com", "UTC", "EUR", set())
