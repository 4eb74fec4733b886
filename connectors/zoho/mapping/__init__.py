"""Zoho Books invoice and credit note JSON -> the canonical `Invoice`. Pure: no I/O, no clock.

`amounts` decides the money (see its rules), `values` reads single fields; this module
puts the document together:

* Kind: an invoice (`invoice_id`, `invoice_number`) or a credit note (`creditnote_id`,
  `creditnote_number`, `invoices_credited[]`, lines' `invoice_id`). A credit note's
  amounts are checked against Zoho's (positive) figures and then carried negative:
  it takes back what was invoiced, and a tax authority receives it as a storno
  invoice with negative amounts (lines keep their unit price; quantities turn
  negative). `credited[].amount` stays as Zoho states it.
* Status: normalized (credit notes: open -> sent, closed -> paid), and Zoho's own word
  kept in `source_status`; a void stays `void` so a fiscalized invoice voided later
  reaches the fiscalizer as such.
* Buyer tax number: the integration's configured contact custom field (`cf_...`, read
  from the invoice's `customer_custom_field_hash`/`customer_custom_fields`, or from the
  contact when the caller fetched it) first, then `tax_reg_no`, `vat_reg_no`, `gst_no`
  of the contact, then of the invoice; `tax_id_source` says which.
* Payments (`GET /invoices/{id}/payments`, which the caller fetched): each keeps Zoho's
  `payment_mode`; the invoice's payment method is that of the largest payment (the
  first of equals), mapped through the integration's table, else its default.
* `issued_at`: Zoho's `date` is the legal invoice date (a day) and `created_time` the
  instant the record was created. When both fall on the same local day, the exact
  `created_time` is the issue instant; when the invoice is dated another day (entered
  late or in advance), the date wins at 00:00 in the organization's offset, because
  a tax authority checks the date printed on the invoice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from connectors.zoho.mapping.amounts import figures
from connectors.zoho.mapping.values import (
    InvoiceMappingError,
    amount,
    day,
    identifier,
    object_list,
    optional_amount,
    optional_id,
    optional_text,
    parse_datetime,
    text,
)
from schemas.invoice import (
    CreditedInvoice,
    Customer,
    DocumentKind,
    Invoice,
    Payment,
    PaymentMethod,
    SourceStatus,
    payment_mode_key,
)

__all__ = [
    "DEFAULT_PAYMENT_MODES",
    "SOURCE",
    "InvoiceMappingError",
    "MappingOptions",
    "buyer_contact_id",
    "issue_instant",
    "map_credit_note",
    "map_document",
    "map_invoice",
    "parse_datetime",
    "payment_mode_key",
    "unwrap",
]

SOURCE = "zoho_books"

_STATUSES: dict[str, SourceStatus] = {status.value: status for status in SourceStatus}
_CREDIT_NOTE_STATUSES = {
    "draft": SourceStatus.DRAFT,
    "open": SourceStatus.SENT,
    "closed": SourceStatus.PAID,
    "void": SourceStatus.VOID,
}

DEFAULT_PAYMENT_MODES: dict[str, PaymentMethod] = {
    "cash": PaymentMethod.CASH,
    "creditcard": PaymentMethod.CARD,
    "banktransfer": PaymentMethod.BANK_TRANSFER,
    "bankremittance": PaymentMethod.BANK_TRANSFER,
    "check": PaymentMethod.CHEQUE,
    "autotransaction": PaymentMethod.OTHER,
    "others": PaymentMethod.OTHER,
}
"""Zoho `payment_mode` -> method; an integration's own table overrides entries."""

_TAX_NUMBER_KEYS = ("tax_reg_no", "vat_reg_no", "gst_no")

# Zoho's api_name of a custom field: "cf_" and the label in lowercase with underscores.
_CUSTOM_FIELD = re.compile(r"^cf_[a-z0-9_]{1,100}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_METHODS = ", ".join(m.value for m in PaymentMethod)


@dataclass(frozen=True)
class MappingOptions:
    """An integration's choices for reading its Zoho documents.

    Stored per integration as JSON (`stored()` / `from_stored()`); only what differs
    from the defaults is kept, and a stored value that is not valid is refused with a
    message naming it.
    """

    default_payment_method: PaymentMethod = PaymentMethod.OTHER
    payment_modes: Mapping[str, PaymentMethod] = field(default_factory=dict)
    buyer_tax_field: str | None = None  # a contact custom field's api_name, "cf_..."
    base_currency: str = "EUR"

    def __post_init__(self) -> None:
        if self.buyer_tax_field is not None and not _CUSTOM_FIELD.match(self.buyer_tax_field):
            raise ValueError(
                "buyer_tax_field must be a custom field's api_name as Zoho shows it, cf_"
                f" then lowercase letters, digits or _ (like cf_oib), got {self.buyer_tax_field!r}"
            )
        if not _CURRENCY.match(self.base_currency):
            raise ValueError(
                "base_currency must be a three-letter ISO code like EUR,"
                f" got {self.base_currency!r}"
            )
        if not isinstance(self.default_payment_method, PaymentMethod):
            raise ValueError(f"default_payment_method must be one of {_METHODS}")
        for mode, method in self.payment_modes.items():
            if not isinstance(method, PaymentMethod):
                raise ValueError(f"payment mode {mode!r} must map to one of {_METHODS}")
            if not mode or mode != payment_mode_key(mode):
                raise ValueError(
                    f"payment mode {mode!r} must be Zoho's payment_mode in lowercase without"
                    f" spaces, like {payment_mode_key(mode) or 'banktransfer'!r}"
                )

    @classmethod
    def from_stored(cls, data: Mapping[str, Any] | None) -> MappingOptions:
        """The options from their stored JSON; ValueError names what is wrong."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls().stored(defaults=True)))
        if unknown:
            raise ValueError(
                f"unknown read option(s) {', '.join(unknown)}; known: buyer_tax_field,"
                " payment_modes, default_payment_method, base_currency"
            )

        def method(value: Any, what: str) -> PaymentMethod:
            try:
                return PaymentMethod(value)
            except ValueError:
                raise ValueError(f"{what} must be one of {_METHODS}, got {value!r}") from None

        modes = data.get("payment_modes") or {}
        if not isinstance(modes, Mapping):
            raise ValueError("payment_modes must map Zoho payment modes to payment methods")
        buyer = data.get("buyer_tax_field")
        if buyer is not None and not isinstance(buyer, str):
            raise ValueError("buyer_tax_field must be a text like cf_oib")
        return cls(
            default_payment_method=method(
                data.get("default_payment_method", PaymentMethod.OTHER.value),
                "default_payment_method",
            ),
            payment_modes={
                str(mode): method(value, f"payment mode {mode!r}") for mode, value in modes.items()
            },
            buyer_tax_field=buyer or None,
            base_currency=str(data.get("base_currency") or "EUR"),
        )

    def stored(self, *, defaults: bool = False) -> dict[str, Any]:
        """The JSON kept per integration: what differs from the defaults (all of it
        with `defaults`)."""
        full: dict[str, Any] = {
            "buyer_tax_field": self.buyer_tax_field,
            "payment_modes": {mode: m.value for mode, m in sorted(self.payment_modes.items())},
            "default_payment_method": self.default_payment_method.value,
            "base_currency": self.base_currency,
        }
        if defaults:
            return full
        plain = MappingOptions().stored(defaults=True)
        return {key: value for key, value in full.items() if value != plain[key]}

    def kwargs(self) -> dict[str, Any]:
        return {
            "default_payment_method": self.default_payment_method,
            "payment_modes": self.payment_modes,
            "buyer_tax_field": self.buyer_tax_field,
            "base_currency": self.base_currency,
        }


def unwrap(document: Any) -> tuple[str, Mapping[str, Any]]:
    """("invoice" | "creditnote", the record) from a GET answer, a webhook body or a bare
    record."""
    if not isinstance(document, Mapping):
        raise InvoiceMappingError("not_an_object", "the document must be a JSON object")
    code = document.get("code")
    if code not in (None, 0, "0"):
        raise InvoiceMappingError(
            "zoho_error",
            f"this is an error answer from Zoho, not a document: code {code},"
            f" {document.get('message')!r}",
        )
    for key, kind in (("invoice", "invoice"), ("creditnote", "creditnote")):
        if isinstance(document.get(key), Mapping):
            return kind, document[key]
    if "creditnote_id" in document:
        return "creditnote", document
    if "invoice_id" in document or "line_items" in document:
        return "invoice", document
    keys = ", ".join(sorted(document)[:12]) or "none"
    raise InvoiceMappingError(
        "not_a_document",
        f"no invoice or credit note in this JSON (keys: {keys}); pass a GET"
        " /invoices/{id} or /creditnotes/{id} answer or a webhook body",
    )


def map_document(document: Any, **options: Any) -> Invoice:
    """Map whatever `unwrap` accepts; `options` as for `map_invoice`."""
    kind, record = unwrap(document)
    if kind == "creditnote":
        return map_credit_note(record, **options)
    return map_invoice(record, **options)


def map_invoice(
    zoho_invoice: Mapping[str, Any],
    *,
    default_payment_method: PaymentMethod = PaymentMethod.OTHER,
    payments: Sequence[Mapping[str, Any]] | None = None,
    payment_modes: Mapping[str, PaymentMethod] | None = None,
    contact: Mapping[str, Any] | None = None,
    buyer_tax_field: str | None = None,
    base_currency: str = "EUR",
) -> Invoice:
    """Map one invoice as returned by `GET /books/v3/invoices/{id}` (or a webhook).

    `base_currency`: the organization's (a Croatian organization's is EUR).
    """
    if not isinstance(zoho_invoice, Mapping):
        raise InvoiceMappingError("not_an_object", "invoice must be a JSON object")
    return _map(
        zoho_invoice,
        DocumentKind.INVOICE,
        default_payment_method=default_payment_method,
        payments=payments,
        payment_modes=payment_modes,
        contact=contact,
        buyer_tax_field=buyer_tax_field,
        base_currency=base_currency,
    )


def map_credit_note(
    zoho_credit_note: Mapping[str, Any],
    *,
    default_payment_method: PaymentMethod = PaymentMethod.OTHER,
    payments: Sequence[Mapping[str, Any]] | None = None,
    payment_modes: Mapping[str, PaymentMethod] | None = None,
    contact: Mapping[str, Any] | None = None,
    buyer_tax_field: str | None = None,
    base_currency: str = "EUR",
) -> Invoice:
    """Map one credit note as returned by `GET /books/v3/creditnotes/{id}` (or a webhook)."""
    if not isinstance(zoho_credit_note, Mapping):
        raise InvoiceMappingError("not_an_object", "credit note must be a JSON object")
    return _map(
        zoho_credit_note,
        DocumentKind.CREDIT_NOTE,
        default_payment_method=default_payment_method,
        payments=payments,
        payment_modes=payment_modes,
        contact=contact,
        buyer_tax_field=buyer_tax_field,
        base_currency=base_currency,
    )


def _map(
    doc: Mapping[str, Any],
    kind: DocumentKind,
    *,
    default_payment_method: PaymentMethod,
    payments: Sequence[Mapping[str, Any]] | None,
    payment_modes: Mapping[str, PaymentMethod] | None,
    contact: Mapping[str, Any] | None,
    buyer_tax_field: str | None,
    base_currency: str,
) -> Invoice:
    note = kind is DocumentKind.CREDIT_NOTE
    id_key = "creditnote_id" if note else "invoice_id"
    number = text(doc, "creditnote_number" if note else "invoice_number")
    currency = text(doc, "currency_code").upper()
    money = figures(doc, number=number, currency=currency, base_currency=base_currency)
    if note:
        money = money.negated()
    created = parse_datetime(doc.get("created_time"), "created_time")
    raw_status = str(doc.get("status") or "").strip().lower()
    statuses = _CREDIT_NOTE_STATUSES if note else _STATUSES
    paid = _payments(payments, {**DEFAULT_PAYMENT_MODES, **(payment_modes or {})})
    tax_id, tax_id_source = _buyer_tax_number(doc, contact, buyer_tax_field)
    return Invoice(
        source=SOURCE,
        source_id=identifier(doc.get(id_key), id_key),
        number=number,
        issued_at=issue_instant(day(doc.get("date"), "date"), created),
        created_at=created,
        currency=currency,
        customer=Customer(
            name=text(doc, "customer_name"),
            source_id=optional_id(doc.get("customer_id"), "customer_id"),
            tax_id=tax_id,
            tax_id_source=tax_id_source,
        ),
        lines=tuple(money.lines),
        taxes=tuple(money.taxes),
        untaxed=tuple(money.untaxed),
        charges=tuple(money.charges),
        subtotal=money.subtotal,
        tax_total=money.tax_total,
        total=money.total,
        exchange_rate=money.exchange_rate,
        base=money.base,
        payments=tuple(paid),
        payment_method=_method(paid, default_payment_method),
        status=statuses.get(raw_status, SourceStatus.OTHER),
        source_status=raw_status or None,
        last_modified_at=parse_datetime(doc.get("last_modified_time"), "last_modified_time"),
        prices_include_tax=bool(doc.get("is_inclusive_tax") in (True, "true")),
        kind=kind,
        credited=tuple(_credited(doc)) if note else (),
    )


def _credited(doc: Mapping[str, Any]) -> list[CreditedInvoice]:
    out: dict[str, CreditedInvoice] = {}
    for index, entry in enumerate(object_list(doc, "invoices_credited")):
        where = f"invoices_credited[{index}]"
        invoice_id = identifier(entry.get("invoice_id"), f"{where}.invoice_id")
        out[invoice_id] = CreditedInvoice(
            source_id=invoice_id,
            number=optional_text(entry, "invoice_number", f"{where}.invoice_number"),
            amount=optional_amount(entry, "credited_amount", f"{where}.credited_amount"),
        )
    for index, item in enumerate(object_list(doc, "line_items")):
        line_invoice = optional_id(item.get("invoice_id"), f"line_items[{index}].invoice_id")
        if line_invoice and line_invoice not in out:
            out[line_invoice] = CreditedInvoice(source_id=line_invoice)
    return list(out.values())


def _payments(
    payments: Sequence[Mapping[str, Any]] | None, modes: Mapping[str, PaymentMethod]
) -> list[Payment]:
    out = []
    for index, entry in enumerate(payments or ()):
        where = f"payments[{index}]"
        if not isinstance(entry, Mapping):
            raise InvoiceMappingError("invalid_field", f"{where} must be an object", field=where)
        mode = (optional_text(entry, "payment_mode", f"{where}.payment_mode") or "").lower()
        out.append(
            Payment(
                source_id=optional_id(entry.get("payment_id"), f"{where}.payment_id"),
                mode=mode,
                method=modes.get(payment_mode_key(mode), PaymentMethod.OTHER),
                amount=amount(entry.get("amount"), f"{where}.amount"),
                date=optional_text(entry, "date", f"{where}.date"),
            )
        )
    return out


def _method(payments: list[Payment], default: PaymentMethod) -> PaymentMethod:
    if not payments:
        return default
    return max(payments, key=lambda p: p.amount).method  # max keeps the first of equals


def buyer_contact_id(document: Mapping[str, Any], buyer_tax_field: str | None) -> str | None:
    """The contact to read (`GET /contacts/{id}`) for the buyer's tax number: the
    document's `customer_id` when the document itself carries no tax number by the rules
    of the mapping (the configured custom field, `tax_reg_no`, `vat_reg_no`, `gst_no`);
    None when it does, or names no customer. `document`: the bare invoice or credit
    note. Both channels decide by this, so they map an invoice the same."""
    if not isinstance(document, Mapping):
        return None
    try:
        found, _ = _buyer_tax_number(document, None, buyer_tax_field)
        customer = optional_id(document.get("customer_id"), "customer_id")
    except InvoiceMappingError:
        return None  # the mapping itself says what is wrong with the document
    return None if found else customer


def _buyer_tax_number(
    doc: Mapping[str, Any], contact: Mapping[str, Any] | None, custom_field: str | None
) -> tuple[str | None, str | None]:
    if custom_field:
        for where, record, hash_key, list_key in (
            ("invoice", doc, "customer_custom_field_hash", "customer_custom_fields"),
            ("contact", contact or {}, "custom_field_hash", "custom_fields"),
        ):
            value = _custom_value(record, hash_key, list_key, custom_field)
            if value:
                return value, f"{where}.custom_field:{custom_field}"
    for where, record in (("contact", contact or {}), ("invoice", doc)):
        for key in _TAX_NUMBER_KEYS:
            value = optional_text(record, key, f"{where}.{key}")
            if value:
                return value, f"{where}.{key}"
    return None, None


def _custom_value(
    record: Mapping[str, Any], hash_key: str, list_key: str, api_name: str
) -> str | None:
    hashed = record.get(hash_key)
    if isinstance(hashed, Mapping):
        value = optional_text(hashed, api_name, f"{hash_key}.{api_name}")
        if value:
            return value
    for entry in object_list(record, list_key):
        if entry.get("api_name") == api_name:
            return optional_text(entry, "value", f"{list_key}.{api_name}")
    return None


def issue_instant(on: date, created: datetime) -> datetime:
    """The moment of issue from Zoho's `date` and `created_time` (the module's rule)."""
    if created.date() == on:
        return created
    return datetime.combine(on, time(0, 0), tzinfo=created.tzinfo)
