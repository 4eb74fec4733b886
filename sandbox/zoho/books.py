"""Invoices and credit notes as Zoho Books shows them: Zoho's arithmetic, Zoho's JSON.

Written apart from the connector's mapping on purpose: the connector is tested against
what Zoho sends, not against its own arithmetic. The shapes follow responses recorded
against real organizations (`shared/design/zoho-books.md`, "What real payloads look
like"): ~185 keys, ids as strings, `""` for empty values (numeric fields too), lines
carrying `line_item_taxes[]` named "PDV25 (25%)" while the line's `tax_name` is
"PDV25", invoice-level `taxes[]` without `tax_id`, base-currency `bcy_*` copies.

How Zoho computes, as modelled here (per line, then per document):

* item_total = rate x quantity - line discount ("10%" or an amount), to the cent.
* An entity-level discount ("10%" or an amount) is taken on the sub-total before tax
  (spread over the lines in proportion, the last line taking the rounding rest) or on
  sub-total + tax after tax (`is_discount_before_tax: false`).
* Tax per line on the line's taxable amount, rounded per line: x rate / 100, or
  x rate / (100 + rate) when prices include tax (`is_inclusive_tax`).
* With prices including tax, whether `item_total`/`sub_total` are gross or net is
  *uncertain* (the design note): the organization's `inclusive_totals` picks "gross"
  (default) or "net", so the connector is tested against both readings.
* Shipping is taxed at its own tax; `adjustment` is added untaxed; transaction
  rounding (`round_to_whole`; the exact option names are *uncertain*) adds
  `roundoff_value` to reach a whole amount.
* bcy_* = the amount x exchange_rate, rounded to the cent, each on its own (so
  bcy_sub_total + bcy_tax_total may differ from bcy_total by a cent, as in Zoho).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.zoho.state import (
    Organization,
    OrgTax,
    SandboxError,
    StoredInvoice,
    decimal_of,
    instant_of,
)

CENT = Decimal("0.01")
STATUSES = ("draft", "sent", "viewed", "overdue", "unpaid", "partially_paid", "paid", "void")
CREDIT_NOTE_STATUSES = ("draft", "open", "closed", "void")
# Zoho documents these sort columns for GET /invoices; any other is ignored and the
# list comes back by created_time, which page_context.sort_column then says.
SORT_COLUMNS = (
    "customer_name",
    "invoice_number",
    "date",
    "due_date",
    "total",
    "balance",
    "created_time",
)
DEFAULT_SORT = "created_time"
PAYMENT_MODES = (
    "cash",
    "check",
    "creditcard",
    "banktransfer",
    "bankremittance",
    "autotransaction",
    "others",
)
ROUNDING_TYPES = ("no_rounding", "round_to_whole")
_UNPAID = {"sent", "viewed", "overdue", "unpaid", "partially_paid"}


def zoho_time(org: Organization, instant: datetime) -> str:
    return org.local(instant).strftime("%Y-%m-%dT%H:%M:%S%z")


def _round(value: Decimal, exponent: Decimal = CENT) -> Decimal:
    return value.quantize(exponent, rounding=ROUND_HALF_UP)


def _discount(value: Any, base: Decimal, what: str) -> Decimal:
    if value in (None, "", 0):
        return Decimal(0)
    if isinstance(value, str) and value.strip().endswith("%"):
        return base * decimal_of(value.strip()[:-1], what) / 100
    return decimal_of(value, what)


def _tax_of(org: Organization, spec: dict[str, Any], prefix: str, what: str) -> OrgTax | None:
    """The organization's tax a line (or the shipping) names by id or by percentage."""
    tax_id = str(spec.get(f"{prefix}tax_id") or "")
    if tax_id:
        tax = org.taxes.get(tax_id)
        if tax is None:
            raise SandboxError(f"{what}: no tax {tax_id} in organization {org.organization_id}")
        return tax
    raw = spec.get(f"{prefix}tax_percentage")
    if raw in (None, "", 0, "0"):
        return None
    return org.tax_for_rate(decimal_of(raw, f"{what}.{prefix}tax_percentage"))


def _spread(amount: Decimal, weights: list[Decimal]) -> list[Decimal]:
    total = sum(weights, Decimal(0))
    if not amount or not total:
        return [Decimal(0)] * len(weights)
    shares = [_round(amount * w / total) for w in weights[:-1]]
    return [*shares, amount - sum(shares, Decimal(0))]


def validate(org: Organization, fields: dict[str, Any], kind: str = "invoice") -> None:
    """Refuse what Zoho would refuse, so the sandbox never serves an impossible document."""
    if not fields.get("customer_name"):
        raise SandboxError("customer_name is required")
    lines = fields.get("line_items")
    if not isinstance(lines, list) or not lines:
        raise SandboxError("line_items must be a non-empty list")
    for key in ("created_time", "last_modified_time"):
        instant_of(fields.get(key))
    statuses = CREDIT_NOTE_STATUSES if kind == "creditnote" else STATUSES
    if fields.get("status", statuses[1]) not in statuses:
        raise SandboxError(f"status must be one of {statuses}")
    if fields.get("transaction_rounding_type", "no_rounding") not in ROUNDING_TYPES:
        raise SandboxError(f"transaction_rounding_type must be one of {ROUNDING_TYPES}")
    for i, line in enumerate(lines):
        if not isinstance(line, dict):
            raise SandboxError(f"line_items[{i}] must be an object")
        for key in ("rate", "quantity"):
            decimal_of(line.get(key), f"line_items[{i}].{key}")
    for i, payment in enumerate(fields.get("payments") or []):
        if not isinstance(payment, dict) or payment.get("payment_mode") not in PAYMENT_MODES:
            raise SandboxError(f"payments[{i}].payment_mode must be one of {PAYMENT_MODES}")
        decimal_of(payment.get("amount"), f"payments[{i}].amount")
    sample = {"invoice_number": "INV-0", "creditnote_number": "CN-0", "date": "2000-01-01"}
    try:
        render(org, StoredInvoice("0", {**sample, **fields}, _EPOCH, _EPOCH), kind)
    except (KeyError, TypeError, ArithmeticError) as error:
        raise SandboxError(f"document cannot be computed: {error!r}") from error


def render(org: Organization, invoice: StoredInvoice, kind: str = "invoice") -> dict[str, Any]:
    """The `invoice` (or `creditnote`) object of a GET by id, and of the webhook."""
    f = invoice.fields
    inclusive = bool(f.get("is_inclusive_tax", org.inclusive_tax))
    rate_x = decimal_of(f.get("exchange_rate", 1), "exchange_rate")
    currency = str(f.get("currency_code", org.currency_code)).upper()

    def bcy(value: Decimal) -> Decimal:
        return _round(value * rate_x)

    # -- lines: item totals --------------------------------------------------------------
    items: list[tuple[dict[str, Any], OrgTax | None, Decimal, Decimal, Decimal]] = []
    for i, raw in enumerate(f["line_items"]):
        where = f"line_items[{i}]"
        rate = decimal_of(raw["rate"], f"{where}.rate")
        quantity = decimal_of(raw["quantity"], f"{where}.quantity")
        gross = rate * quantity
        discount = _round(_discount(raw.get("discount"), gross, f"{where}.discount"))
        items.append((raw, _tax_of(org, raw, "", where), rate, quantity, _round(gross - discount)))
    totals = [item[4] for item in items]  # as entered: gross when prices include tax
    sub_total_entered = sum(totals, Decimal(0))

    # -- entity discount before tax lowers each line's taxable amount --------------------
    discount_type = f.get("discount_type", "entity_level")
    before_tax = bool(f.get("is_discount_before_tax", True))
    entity_value = f.get("discount", 0) if discount_type == "entity_level" else 0
    if before_tax:
        applied_on = sub_total_entered
        entity_discount = _round(_discount(entity_value, applied_on, "discount"))
        shares = _spread(entity_discount, totals)
    else:
        shares = [Decimal(0)] * len(totals)

    line_taxes: list[Decimal] = []
    for (_, tax, *_), total, share in zip(items, totals, shares, strict=True):
        if tax is None or not tax.percentage:
            line_taxes.append(Decimal(0))
            continue
        divisor = 100 + tax.percentage if inclusive else Decimal(100)
        line_taxes.append(_round((total - share) * tax.percentage / divisor))

    # -- shipping ------------------------------------------------------------------------
    shipping = decimal_of(f.get("shipping_charge") or 0, "shipping_charge")
    shipping_tax = _tax_of(org, f, "shipping_charge_", "shipping") if shipping else None
    shipping_tax_amount = Decimal(0)
    if shipping_tax is not None and shipping_tax.percentage:
        divisor = 100 + shipping_tax.percentage if inclusive else Decimal(100)
        shipping_tax_amount = _round(shipping * shipping_tax.percentage / divisor)

    tax_total = sum(line_taxes, Decimal(0)) + shipping_tax_amount
    if not before_tax:
        applied_on = sub_total_entered + (Decimal(0) if inclusive else tax_total)
        entity_discount = _round(_discount(entity_value, applied_on, "discount"))
    adjustment = decimal_of(f.get("adjustment") or 0, "adjustment")
    if inclusive:
        before_rounding = sub_total_entered - entity_discount + shipping + adjustment
    else:
        before_rounding = sub_total_entered - entity_discount + shipping + tax_total + adjustment
    rounding_type = f.get("transaction_rounding_type", "no_rounding")
    roundoff = Decimal(0)
    if rounding_type == "round_to_whole":
        roundoff = _round(before_rounding, Decimal(1)) - before_rounding
    total = before_rounding + roundoff

    # -- what the lines say --------------------------------------------------------------
    net_totals = inclusive and org.inclusive_totals == "net"
    lines: list[dict[str, Any]] = []
    for i, ((raw, tax, rate, quantity, total_i), tax_i) in enumerate(
        zip(items, line_taxes, strict=True)
    ):
        shown = _round(total_i * 100 / (100 + tax.percentage)) if net_totals and tax else total_i
        lines.append(_line(org, invoice, i, raw, tax, rate, quantity, shown, tax_i, rate_x))
    sub_total = sum((line["item_total"] for line in lines), Decimal(0))
    by_name: dict[str, Decimal] = {}
    for line in lines:
        for entry in line["line_item_taxes"]:
            if entry["tax_amount"]:
                by_name[entry["tax_name"]] = by_name.get(entry["tax_name"], 0) + entry["tax_amount"]
    if shipping_tax_amount and shipping_tax is not None:
        name = shipping_tax.long_name
        by_name[name] = by_name.get(name, Decimal(0)) + shipping_tax_amount

    status = f.get("status", "open" if kind == "creditnote" else "sent")
    payments = f.get("payments") or []
    if payments:
        paid = sum((decimal_of(p["amount"], "amount") for p in payments), Decimal(0))
    else:
        paid = total if status == "paid" else Decimal(0)
    if status in ("draft", "void"):
        paid = Decimal(0)  # draft and void keep balance = total

    document: dict[str, Any] = _filler(org, invoice, f, status)
    document.update(
        {
            "date": f["date"],
            "due_date": f.get("due_date", f["date"]),
            "status": status,
            "current_sub_status": status,
            "customer_id": str(f.get("customer_id", "")),
            "customer_name": f["customer_name"],
            "company_name": f.get("company_name", ""),
            "tax_reg_no": f.get("tax_reg_no", ""),
            "vat_reg_no": f.get("vat_reg_no", ""),
            "gst_no": f.get("gst_no", ""),
            "reference_number": f.get("reference_number", ""),
            "currency_id": _id(org, "currency", currency),
            "currency_code": currency,
            "currency_symbol": "€" if currency == "EUR" else currency,
            "exchange_rate": rate_x,
            "is_inclusive_tax": inclusive,
            "discount": _discount_field(entity_value),
            "discount_percent": _percent(entity_value),
            "discount_total": entity_discount,
            "discount_amount": entity_discount,
            "discount_applied_on_amount": applied_on if entity_discount else Decimal(0),
            "discount_type": discount_type,
            "is_discount_before_tax": before_tax,
            "bcy_discount_total": bcy(entity_discount),
            "line_items": lines,
            "shipping_charge": shipping,
            "bcy_shipping_charge": bcy(shipping),
            "shipping_charge_tax_id": shipping_tax.tax_id if shipping_tax else "",
            "shipping_charge_tax_name": shipping_tax.name if shipping_tax else "",
            "shipping_charge_tax_percentage": shipping_tax.percentage if shipping_tax else "",
            "shipping_charge_tax_type": "tax" if shipping_tax else "",
            "shipping_charge_tax": shipping_tax_amount if shipping_tax else "",
            "bcy_shipping_charge_tax": bcy(shipping_tax_amount) if shipping_tax else "",
            "shipping_charge_exclusive_of_tax": shipping - shipping_tax_amount
            if inclusive
            else shipping,
            "shipping_charge_inclusive_of_tax": shipping
            if inclusive
            else shipping + shipping_tax_amount,
            "adjustment": adjustment,
            "bcy_adjustment": bcy(adjustment),
            "adjustment_description": f.get("adjustment_description", "Adjustment"),
            "roundoff_value": roundoff,
            "transaction_rounding_type": rounding_type,
            "rounding_mode": "round_half_up",
            "tax_rounding": "item_level",
            "sub_total": sub_total,
            "bcy_sub_total": bcy(sub_total),
            "sub_total_inclusive_of_tax": sub_total_entered
            if inclusive
            else sub_total + sum(line_taxes, Decimal(0)),
            "total_taxable_amount": (sub_total_entered - sum(line_taxes, Decimal(0)))
            if inclusive
            else sub_total,
            "tax_total": tax_total,
            "bcy_tax_total": bcy(tax_total),
            "total": total,
            "bcy_total": bcy(total),
            "taxes": [{"tax_name": name, "tax_amount": amount} for name, amount in by_name.items()],
            "payment_made": paid,
            "balance": total - paid,
            "custom_fields": _custom_fields(org.custom_fields_of(kind), invoice.custom_values),
            "customer_custom_fields": _customer_fields(f),
            "created_time": zoho_time(org, invoice.created_time),
            "last_modified_time": zoho_time(org, invoice.last_modified_time),
        }
    )
    document["custom_field_hash"] = _hash(document["custom_fields"])
    document["customer_custom_field_hash"] = _hash(document["customer_custom_fields"])
    if kind == "creditnote":
        return _as_credit_note(document, invoice)
    document["invoice_id"] = invoice.invoice_id
    document["invoice_number"] = f["invoice_number"]
    return document


def _line(
    org: Organization,
    invoice: StoredInvoice,
    i: int,
    raw: dict[str, Any],
    tax: OrgTax | None,
    rate: Decimal,
    quantity: Decimal,
    item_total: Decimal,
    tax_amount: Decimal,
    rate_x: Decimal,
) -> dict[str, Any]:
    discount = raw.get("discount", 0)
    gross = rate * quantity
    line: dict[str, Any] = {
        "line_item_id": str(
            6_000_000_000_000_000_000 + int(invoice.invoice_id) % 10**15 * 1000 + i
        ),
        "item_id": str(raw.get("item_id", "")),
        "item_order": i + 1,
        "name": raw.get("name", ""),
        "description": raw.get("description", ""),
        "unit": raw.get("unit", ""),
        "quantity": quantity,
        "rate": rate,
        "bcy_rate": _round(rate * rate_x),
        "discount": _discount_field(discount),
        "discount_amount": _round(_discount(discount, gross, "discount")),
        "discounts": [],
        "tax_id": tax.tax_id if tax else "",
        "tax_name": tax.name if tax else "",
        "tax_type": "tax" if tax else "",
        "tax_percentage": tax.percentage if tax else 0,
        "item_total": item_total,
        "line_item_taxes": [
            {"tax_id": tax.tax_id, "tax_name": tax.long_name, "tax_amount": tax_amount}
        ]
        if tax
        else [],
        "account_id": _id(org, "account", "sales"),
        "account_name": "Sales",
        "item_custom_fields": [],
        "line_item_category": "",
        "tags": [],
        "header_id": "",
        "header_name": "",
        "pricebook_id": "",
        "product_type": "goods",
        "sku": "",
        "image_document_id": "",
        "project_id": "",
        "time_entry_ids": [],
        "expense_id": "",
        "expense_receipt_name": "",
        "salesorder_item_id": "",
        "purchase_rate": "",
        "is_non_inventory_item": False,
        "tax_exemption_id": "",
        "tax_exemption_code": "",
    }
    if raw.get("invoice_id"):
        line["invoice_id"] = str(raw["invoice_id"])
    return line


def _as_credit_note(document: dict[str, Any], note: StoredInvoice) -> dict[str, Any]:
    f = note.fields
    for key in ("invoice_id", "invoice_number", "payment_made", "write_off_amount"):
        document.pop(key, None)
    credited = []
    for entry in f.get("invoices_credited") or []:
        credited.append(
            {
                "invoice_id": str(entry["invoice_id"]),
                "invoice_number": entry.get("invoice_number", ""),
                "creditnote_id": note.invoice_id,
                "creditnote_invoice_id": str(int(note.invoice_id) + 7),
                "credited_amount": decimal_of(entry.get("amount", 0), "credited_amount"),
                "credited_date": f["date"],
            }
        )
    document.update(
        {
            "creditnote_id": note.invoice_id,
            "creditnote_number": f["creditnote_number"],
            "invoices_credited": credited,
            "refunds": [],
            "balance": document["total"] - sum((c["credited_amount"] for c in credited), 0),
        }
    )
    return document


def _discount_field(value: Any) -> Any:
    """Zoho writes an entity/line discount back as "10.00%" or as the amount entered."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return f"{decimal_of(value.strip()[:-1], 'discount'):.2f}%"
    if value in (None, ""):
        return Decimal(0)
    return decimal_of(value, "discount")


def _percent(value: Any) -> Decimal:
    if isinstance(value, str) and value.strip().endswith("%"):
        return decimal_of(value.strip()[:-1], "discount")
    return Decimal(0)


def _custom_fields(definitions: list[dict[str, Any]], values: dict[str, Any]) -> list[Any]:
    out = []
    for index, definition in enumerate(definitions, start=1):
        value = values.get(definition["customfield_id"])
        if value in (None, ""):
            continue
        out.append(
            {
                "customfield_id": definition["customfield_id"],
                "field_id": definition["customfield_id"],
                "index": index,
                "label": definition["label"],
                "api_name": definition["api_name"],
                "data_type": definition.get("data_type", "string"),
                "placeholder": definition["api_name"],
                "value": value,
                "value_formatted": str(value),
                "is_active": True,
                "show_in_all_pdf": True,
                "show_on_pdf": True,
                "edit_on_portal": False,
                "edit_on_store": False,
                "show_in_portal": False,
                "show_in_store": False,
                "search_entity": definition["entity"],
                "selected_option_id": "",
            }
        )
    return out


def _customer_fields(f: dict[str, Any]) -> list[Any]:
    """The contact's custom fields the invoice carries (`customer_custom_fields`)."""
    out = []
    for index, (api_name, value) in enumerate(sorted((f.get("contact_fields") or {}).items())):
        out.append(
            {
                "customfield_id": str(4_600_000_000_000_900 + index),
                "index": index + 1,
                "label": api_name.removeprefix("cf_").replace("_", " ").upper(),
                "api_name": api_name,
                "data_type": "string",
                "value": value,
                "value_formatted": str(value),
                "is_active": True,
                "show_on_pdf": False,
            }
        )
    return out


def _hash(fields: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in fields:
        out[field["api_name"]] = field["value"]
        out[field["api_name"] + "_unformatted"] = field["value"]
    return out


def _id(org: Organization, what: str, key: str) -> str:
    """A stable 18-digit id for the organization's currencies, accounts, templates."""
    digest = sum(ord(c) * 31**i for i, c in enumerate(f"{what}:{key}")) % 10**9
    return str(460_000_000_000_000_000 + int(org.organization_id) % 10**6 * 10**9 + digest)


def _filler(
    org: Organization, invoice: StoredInvoice, f: dict[str, Any], status: str
) -> dict[str, Any]:
    """The keys a real invoice has besides what is computed: ids, flags, texts, empties."""
    address = {
        "address": f.get("billing_street", ""),
        "street2": "",
        "city": f.get("billing_city", ""),
        "state": "",
        "zip": "",
        "country": f.get("billing_country", ""),
        "phone": "",
        "fax": "",
        "attention": "",
    }
    created_date = org.local(invoice.created_time).date().isoformat()
    filler: dict[str, Any] = {
        "ach_payment_initiated": False,
        "ach_supported": False,
        "allow_partial_payments": False,
        "approver_id": "",
        "attachment_name": "",
        "billing_address": address,
        "shipping_address": dict(address),
        "can_send_in_mail": True,
        "can_send_invoice_sms": False,
        "client_viewed_time": "",
        "color_code": "",
        "contact_category": "",
        "contact_persons": [],
        "contact_persons_associated": [],
        "contact_persons_details": [],
        "created_by_id": _id(org, "user", "owner"),
        "created_by_name": "Owner",
        "created_date": created_date,
        "credits_applied": Decimal(0),
        "current_sub_status_id": "",
        "customer_default_billing_address": dict(address),
        "deliverychallans": [],
        "documents": [],
        "email": f.get("email", ""),
        "estimate_id": "",
        "filed_in_vat_return_id": "",
        "filed_in_vat_return_name": "",
        "filed_in_vat_return_type": "",
        "has_qr_code": False,
        "inprocess_transaction_present": False,
        "invoice_source": "",
        "invoice_type": "invoice",
        "invoice_url": "",
        "is_autobill_enabled": False,
        "is_client_review_settings_enabled": False,
        "is_emailed": False,
        "is_inventory_valuation_pending": False,
        "is_pre_gst": False,
        "is_reverse_charge_applied": False,
        "is_viewed_by_client": False,
        "last_modified_by_id": _id(org, "user", "owner"),
        "last_payment_date": "",
        "last_reminder_sent_date": "",
        "late_fee": {"name": "", "type": "", "rate": Decimal(0), "amount": Decimal(0)},
        "location_id": "",
        "location_name": "",
        "merchant_id": "",
        "merchant_name": "",
        "mail_first_viewed_time": "",
        "mail_last_viewed_time": "",
        "no_of_copies": 1,
        "notes": f.get("notes", ""),
        "orientation": "portrait",
        "page_height": "11.69in",
        "page_width": "8.27in",
        "payment_discount": Decimal(0),
        "payment_expected_date": "",
        "payment_options": {"payment_gateways": []},
        "payment_reminder_enabled": True,
        "payment_terms": 0,
        "payment_terms_label": "Due on Receipt",
        "price_precision": 2,
        "pricebook_id": "",
        "pricebook_name": "",
        "reader_offline_payment_initiated": False,
        "recurring_invoice_id": "",
        "reminders_sent": 0,
        "salesorder_id": "",
        "salesorder_number": "",
        "salesorders": [],
        "salesperson_id": "",
        "salesperson_name": "",
        "sales_channel": "direct_sales",
        "sales_channel_formatted": "Direct",
        "schedule_time": "",
        "shipping_bills": [],
        "show_no_of_copies": True,
        "stop_reminder_until_payment_expected_date": False,
        "submitted_by": "",
        "submitted_by_email": "",
        "submitted_by_name": "",
        "submitted_by_photo_url": "",
        "submitted_date": "",
        "submitter_id": "",
        "subject_content": "",
        "tags": [],
        "tax_amount_withheld": Decimal(0),
        "tax_specification": "",
        "tax_treatment": "",
        "tds_calculation_type": "tds_item_level",
        "template_id": _id(org, "template", "standard"),
        "template_name": "Standard Template",
        "template_type": "standard",
        "terms": "",
        "time_entries": [],
        "track_discount_in_account": False,
        "unbilled_charges_id": "",
        "unused_retainer_payments": Decimal(0),
        "write_off_amount": Decimal(0),
        "zcrm_potential_id": "",
        "zcrm_potential_name": "",
        "computation_type": "basic",
        "contact_number": "",
        "customer_phone": "",
        "customer_mobile": "",
        "due_days": "",
        "ecomm_operator_id": "",
        "ecomm_operator_name": "",
        "ecomm_operator_gst_no": "",
        "is_associated_to_branch": False,
        "is_backorder": False,
        "is_eway_bill_required": False,
        "branch_id": "",
        "branch_name": "",
        "place_of_supply": "",
        "vat_treatment": "",
        "is_tds_applied": False,
        "tds_amount": Decimal(0),
        "tds_percent": "",
        "tds_tax_id": "",
        "tds_tax_name": "",
        "tds_section": "",
        "reason_for_debit_note": "",
        "transaction_type": "",
        "approvers_list": [],
        "comments": [],
        "contact_persons_info": [],
        "invoice_display_name": "",
        "can_generate_ewaybill_using_irn": False,
        "cfdi_usage": "",
        "payment_made_formatted": "",
        "print_payment_stub": False,
        "reference_invoice_type": "",
        "shipping_charge_sac_code": "",
        "stripe_payment_initiated": False,
        "taxes_applied_on_discount": [],
        "type_formatted": "",
        "is_digital_service": False,
        "pickup_details": {},
        "unused_credits_receivable_amount": Decimal(0),
        "retainer_payment_details": [],
        "schedule_date": "",
        "is_taxable": True,
        "is_scheduled": False,
        "payment_reminder_date": "",
        "sub_statuses": [],
        "invoiced_estimate_id": "",
    }
    return filler


_LIST_FIELDS = (
    "ach_payment_initiated",
    "zcrm_potential_id",
    "zcrm_potential_name",
    "customer_name",
    "customer_id",
    "company_name",
    "status",
    "color_code",
    "current_sub_status_id",
    "current_sub_status",
    "reference_number",
    "date",
    "due_date",
    "due_days",
    "currency_id",
    "schedule_time",
    "email",
    "currency_code",
    "currency_symbol",
    "template_type",
    "no_of_copies",
    "show_no_of_copies",
    "is_viewed_by_client",
    "client_viewed_time",
    "total",
    "balance",
    "created_time",
    "last_modified_time",
    "is_emailed",
    "reminders_sent",
    "last_reminder_sent_date",
    "payment_expected_date",
    "last_payment_date",
    "custom_fields",
    "custom_field_hash",
    "salesperson_id",
    "salesperson_name",
    "shipping_charge",
    "adjustment",
    "write_off_amount",
    "exchange_rate",
)


def list_item(document: dict[str, Any], kind: str = "invoice") -> dict[str, Any]:
    """A row of a list: a summary, no line items and no tax breakdown."""
    ids = (
        ("creditnote_id", "creditnote_number")
        if kind == "creditnote"
        else (
            "invoice_id",
            "invoice_number",
        )
    )
    row = {key: document[key] for key in (*ids, *_LIST_FIELDS) if key in document}
    row["has_attachment"] = False
    row["documents"] = ""  # a list row says "" where the detail has []
    return row


def matches(document: dict[str, Any], filters: dict[str, str]) -> bool:
    status = filters.get("status")
    if status == "unpaid":
        if document["status"] not in _UNPAID:
            return False
    elif status and document["status"] != status:
        return False
    for key in ("customer_id", "invoice_number", "creditnote_number"):
        if filters.get(key) and document.get(key) != filters[key]:
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
        "invoice_number": f.get("invoice_number", ""),
        "creditnote_number": f.get("creditnote_number", ""),
        "date": f["date"],
        "due_date": f.get("due_date", f["date"]),
    }


def sort_key(
    column: str, org: Organization, invoice: StoredInvoice, kind: str = "invoice"
) -> tuple[Any, ...]:
    # Compare instants, never the rendered strings; ties broken by id for stable pages.
    if column == "created_time":
        return (invoice.created_time, int(invoice.invoice_id))
    if column in ("total", "balance"):
        return (render(org, invoice, kind)[column], int(invoice.invoice_id))
    return (header(invoice)[column], int(invoice.invoice_id))


def payments_of(org: Organization, invoice: StoredInvoice) -> list[dict[str, Any]]:
    """`GET /invoices/{id}/payments`: what was recorded against the invoice."""
    out = []
    rate_x = decimal_of(invoice.fields.get("exchange_rate", 1), "exchange_rate")
    for i, payment in enumerate(invoice.fields.get("payments") or []):
        amount = decimal_of(payment["amount"], "amount")
        payment_id = str(int(invoice.invoice_id) + 10**17 + i)
        out.append(
            {
                "payment_id": payment_id,
                "payment_number": str(i + 1),
                "invoice_id": invoice.invoice_id,
                "invoice_payment_id": str(int(payment_id) + 1),
                "payment_mode": payment["payment_mode"],
                "payment_mode_formatted": payment["payment_mode"].title(),
                "description": payment.get("description", ""),
                "date": payment.get("date", invoice.fields["date"]),
                "reference_number": payment.get("reference_number", ""),
                "exchange_rate": rate_x,
                "amount": amount,
                "bcy_amount": _round(amount * rate_x),
                "tax_amount_withheld": Decimal(0),
                "is_single_invoice_payment": True,
                "online_transaction_id": "",
                "is_offline_payment": False,
            }
        )
    return out


_NUMBER = re.compile(r'"\\u0000(-?[0-9]+(?:\.[0-9]+)?)"')


def dumps(document: Any) -> bytes:
    """JSON with `Decimal`s written as exact numbers, as Zoho's amounts arrive."""

    def mark(value: Any) -> str:
        if isinstance(value, Decimal):
            return "\u0000" + format(value, "f")
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    return _NUMBER.sub(r"\1", json.dumps(document, default=mark, ensure_ascii=False)).encode()


_EPOCH = datetime.fromisoformat("2000-01-01T00:00:00+00:00")
