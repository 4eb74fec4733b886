"""Zoho Books invoice JSON -> the canonical `Invoice`. Pure: no I/O, no clock.

Decisions, so every reader of the canonical invoice knows what it means:

* Amounts: JSON numbers, numeric strings and `Decimal`s all become `Decimal` exactly; a
  float (a payload already parsed by a lossy JSON reader) goes through `repr`, the
  shortest string that reads back to the same float, never through float arithmetic.
* Totals are rebuilt from the lines, grouped by tax rate, then checked against Zoho's
  `tax_total` and `total`: a mismatch is refused with both figures rather than
  reported to the tax authority with numbers the business never issued.
  - Tax per rate is taken from Zoho's `taxes[]` (matched to rates through the lines'
    `tax_name`), because Zoho rounds tax per line and a recomputation per rate can
    differ by a cent. Without `taxes[]` it is computed half-up, per rate, or per line
    when that is what reproduces Zoho's `tax_total`.
  - Line discounts come from `discount_amount`, else `discount` ("10%" or an amount);
    Zoho's own `item_total` wins when present, within rounding of rate x quantity.
  - An entity-level discount applied before tax is spread over the item lines in
    proportion to their totals (largest remainder, to the cent), so it lowers each
    taxable base. A discount after tax, an `adjustment` or a `roundoff_value` cannot
    be expressed as taxable base + tax and is refused with an actionable message:
    reporting it as a 0 % line would misstate the VAT breakdown.
  - `shipping_charge` is a supply: it becomes a line taxed at
    `shipping_charge_tax_percentage` (0 when Zoho has no tax on it), not discounted.
  - Tax-inclusive prices (`is_inclusive_tax`): per rate, base = gross - tax, and the
    base is spread over the lines; unit prices and discounts are shown net of tax,
    rounded to 6 decimals (informative: the breakdown, not the lines, is what adds up).
* `issued_at`: Zoho's `date` is the legal invoice date (a day) and `created_time` the
  instant the record was created. When both fall on the same local day, the exact
  `created_time` is the issue instant; when the invoice is dated another day (entered
  late or in advance), the date wins at 00:00 in the organization's offset, because
  a tax authority checks the date printed on the invoice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from schemas.invoice import Customer, Invoice, InvoiceLine, PaymentMethod, SourceStatus, TaxLine

SOURCE = "zoho_books"

_STATUSES: dict[str, SourceStatus] = {status.value: status for status in SourceStatus}

# ISO 4217 minor units that differ from 2; Zoho rounds money to the currency's precision.
_MINOR_UNITS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip

_SIX_PLACES = Decimal("0.000001")
_HUNDRED = Decimal(100)


class InvoiceMappingError(ValueError):
    """The payload cannot become a canonical invoice; `code` is stable, the text actionable."""

    def __init__(self, code: str, message: str, *, field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field


def map_invoice(
    zoho_invoice: Mapping[str, Any],
    *,
    default_payment_method: PaymentMethod = PaymentMethod.OTHER,
) -> Invoice:
    """Map one invoice as returned by `GET /books/v3/invoices/{id}` (or a webhook)."""
    if not isinstance(zoho_invoice, Mapping):
        raise InvoiceMappingError("not_an_object", "invoice must be a JSON object")
    doc = zoho_invoice
    number = _text(doc, "invoice_number")
    currency = _text(doc, "currency_code").upper()
    exponent = Decimal(1).scaleb(-_MINOR_UNITS.get(currency, 2))
    inclusive = _flag(doc, "is_inclusive_tax")

    for field, meaning in (("adjustment", "an adjustment"), ("roundoff_value", "a rounding")):
        value = _optional_amount(doc, field)
        if value:
            raise InvoiceMappingError(
                f"{field}_unsupported",
                f"invoice {number} has {meaning} of {value} ({field}); it is neither a taxable "
                "amount nor tax, so it cannot be fiscalized: remove it in Zoho Books or enter "
                "it as a line item",
                field=field,
            )

    lines = _item_lines(doc, exponent)
    _apply_entity_discount(doc, lines, exponent, number)
    shipping = _optional_amount(doc, "shipping_charge")
    if shipping:
        lines.append(
            _Line(
                line_id=None,
                description="Shipping charge",
                quantity=Decimal(1),
                rate=shipping,
                discount=Decimal(0),
                total=shipping,
                tax_rate=_optional_amount(doc, "shipping_charge_tax_percentage"),
                tax_name=_optional_text(doc, "shipping_charge_tax_name"),
            )
        )

    tax_by_rate = _tax_by_rate(doc, lines, exponent, inclusive)
    canonical_lines, tax_lines = _breakdown(lines, tax_by_rate, exponent, inclusive)
    subtotal = sum((t.base for t in tax_lines), Decimal(0))
    tax_total = sum((t.amount for t in tax_lines), Decimal(0))
    total = subtotal + tax_total
    _check_against_zoho(doc, "tax_total", tax_total, number)
    _check_against_zoho(doc, "total", total, number)

    created = parse_datetime(doc.get("created_time"), "created_time")
    return Invoice(
        source=SOURCE,
        source_id=_id(doc.get("invoice_id"), "invoice_id"),
        number=number,
        issued_at=_issued_at(_date(doc.get("date"), "date"), created),
        created_at=created,
        currency=currency,
        customer=Customer(
            name=_text(doc, "customer_name"),
            source_id=_optional_id(doc.get("customer_id"), "customer_id"),
            tax_id=_optional_text(doc, "vat_reg_no") or _optional_text(doc, "tax_reg_no"),
        ),
        lines=tuple(canonical_lines),
        taxes=tuple(tax_lines),
        subtotal=subtotal,
        tax_total=tax_total,
        total=total,
        payment_method=default_payment_method,
        status=_STATUSES.get(str(doc.get("status") or "").lower(), SourceStatus.OTHER),
        last_modified_at=parse_datetime(doc.get("last_modified_time"), "last_modified_time"),
        prices_include_tax=inclusive,
    )


def parse_datetime(value: Any, field: str) -> datetime:
    """Zoho's `2025-04-09T11:25:54-0400` (colon-less offset) -> an aware datetime."""
    if not isinstance(value, str) or not value.strip():
        raise InvoiceMappingError("missing_field", f"{field} is missing", field=field)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvoiceMappingError(
            "invalid_datetime",
            f"{field} {value!r} is not a date-time like 2025-04-09T11:25:54-0400",
            field=field,
        ) from None
    if parsed.tzinfo is None:
        raise InvoiceMappingError(
            "naive_datetime", f"{field} {value!r} has no UTC offset", field=field
        )
    return parsed


@dataclass
class _Line:
    line_id: str | None
    description: str
    quantity: Decimal
    rate: Decimal  # as entered: tax-inclusive when the invoice is
    discount: Decimal  # as entered, for the whole line
    total: Decimal  # rate x quantity - discount, rounded like Zoho
    tax_rate: Decimal
    tax_name: str | None


def _item_lines(doc: Mapping[str, Any], exponent: Decimal) -> list[_Line]:
    raw = doc.get("line_items")
    if raw is None:
        raise InvoiceMappingError(
            "line_items_missing",
            "line_items is missing: list results carry no lines, fetch the invoice detail",
            field="line_items",
        )
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise InvoiceMappingError("invalid_field", "line_items must be a list", field="line_items")
    lines = []
    for index, item in enumerate(raw):
        where = f"line_items[{index}]"
        if not isinstance(item, Mapping):
            raise InvoiceMappingError("invalid_field", f"{where} must be an object", field=where)
        quantity = _amount(item.get("quantity"), f"{where}.quantity")
        rate = _amount(item.get("rate"), f"{where}.rate")
        gross = rate * quantity
        if item.get("discount_amount") not in (None, ""):
            discount = _amount(item.get("discount_amount"), f"{where}.discount_amount")
        else:
            discount = _discount(item.get("discount"), gross, f"{where}.discount")
        computed = _round(gross - discount, exponent)
        total = computed
        if item.get("item_total") not in (None, ""):
            total = _amount(item.get("item_total"), f"{where}.item_total")
            if abs(total - (gross - discount)) >= exponent:
                raise InvoiceMappingError(
                    "line_total_mismatch",
                    f"{where}.item_total {total} differs from rate {rate} x quantity {quantity}"
                    f" - discount {discount} = {computed}",
                    field=f"{where}.item_total",
                )
        tax_rate = _optional_amount(item, "tax_percentage", f"{where}.tax_percentage")
        if tax_rate < 0:
            raise InvoiceMappingError(
                "invalid_amount", f"{where}.tax_percentage is negative", field=f"{where}"
            )
        description = _optional_text(item, "name") or _optional_text(item, "description")
        if not description:
            raise InvoiceMappingError(
                "missing_field", f"{where} has neither name nor description", field=where
            )
        lines.append(
            _Line(
                line_id=_optional_id(item.get("line_item_id"), f"{where}.line_item_id"),
                description=description,
                quantity=quantity,
                rate=rate,
                discount=gross - total,
                total=total,
                tax_rate=tax_rate,
                tax_name=_optional_text(item, "tax_name"),
            )
        )
    return lines


def _apply_entity_discount(
    doc: Mapping[str, Any], lines: list[_Line], exponent: Decimal, number: str
) -> None:
    discount_type = str(doc.get("discount_type") or "entity_level").lower().replace(" ", "_")
    if discount_type != "entity_level":
        return  # item-level: already in the lines; the header field only echoes them
    sub_total = sum((line.total for line in lines), Decimal(0))
    if doc.get("discount_amount") not in (None, ""):
        amount = _amount(doc.get("discount_amount"), "discount_amount")
    else:
        amount = _round(_discount(doc.get("discount"), sub_total, "discount"), exponent)
    if not amount:
        return
    if "is_discount_before_tax" in doc and not _flag(doc, "is_discount_before_tax"):
        raise InvoiceMappingError(
            "discount_after_tax",
            f"invoice {number} has a discount of {amount} applied after tax, which does not "
            "lower the VAT due and cannot be fiscalized as such: apply the discount before "
            "tax (or on the line items) in Zoho Books",
            field="is_discount_before_tax",
        )
    if amount > sub_total:
        raise InvoiceMappingError(
            "invalid_amount",
            f"discount {amount} exceeds the lines' total {sub_total}",
            field="discount",
        )
    for line, share in zip(
        lines, _allocate(amount, [line.total for line in lines], exponent), strict=True
    ):
        line.discount += share
        line.total -= share


def _tax_by_rate(
    doc: Mapping[str, Any], lines: list[_Line], exponent: Decimal, inclusive: bool
) -> dict[Decimal, Decimal]:
    rates_by_name: dict[str, set[Decimal]] = {}
    for line in lines:
        if line.tax_name:
            rates_by_name.setdefault(line.tax_name, set()).add(line.tax_rate)
    taxed_rates = {line.tax_rate for line in lines if line.tax_rate}
    raw = doc.get("taxes") or []
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise InvoiceMappingError("invalid_field", "taxes must be a list", field="taxes")

    from_zoho: dict[Decimal, Decimal] = {}
    for index, entry in enumerate(raw):
        where = f"taxes[{index}]"
        if not isinstance(entry, Mapping):
            raise InvoiceMappingError("invalid_field", f"{where} must be an object", field=where)
        name = _optional_text(entry, "tax_name") or ""
        amount = _amount(entry.get("tax_amount"), f"{where}.tax_amount")
        rates = rates_by_name.get(name)
        if rates is None and len(taxed_rates) == 1:
            rates = taxed_rates  # lines without tax_name: only one rate it can belong to
        if not rates:
            raise InvoiceMappingError(
                "unknown_tax",
                f"{where} {name!r} matches no line's tax_name, so its rate is unknown",
                field=where,
            )
        if len(rates) > 1:
            raise InvoiceMappingError(
                "ambiguous_tax",
                f"{where} {name!r} is used by lines at several rates {sorted(rates)}",
                field=where,
            )
        (rate,) = rates
        from_zoho[rate] = from_zoho.get(rate, Decimal(0)) + amount

    def tax(amount: Decimal, rate: Decimal) -> Decimal:
        return _round(amount * rate / (_HUNDRED + rate if inclusive else _HUNDRED), exponent)

    rates = {line.tax_rate for line in lines}
    per_rate: dict[Decimal, Decimal] = {}
    per_line: dict[Decimal, Decimal] = {}
    for rate in rates:
        group = [line.total for line in lines if line.tax_rate == rate]
        per_rate[rate] = tax(sum(group, Decimal(0)), rate)
        per_line[rate] = sum((tax(total, rate) for total in group), Decimal(0))
    missing = rates - set(from_zoho)
    if missing and doc.get("tax_total") not in (None, ""):
        # No breakdown from Zoho for these rates: take whichever rounding (per rate or,
        # as Zoho does by default, per line) reproduces its tax_total.
        stated = _amount(doc.get("tax_total"), "tax_total") - sum(from_zoho.values(), Decimal(0))
        if sum((per_rate[r] for r in missing), Decimal(0)) != stated:
            if sum((per_line[r] for r in missing), Decimal(0)) == stated:
                per_rate = per_line
    return {rate: from_zoho.get(rate, per_rate[rate]) for rate in rates}


def _breakdown(
    lines: list[_Line], tax_by_rate: dict[Decimal, Decimal], exponent: Decimal, inclusive: bool
) -> tuple[list[InvoiceLine], list[TaxLine]]:
    canonical: dict[int, InvoiceLine] = {}
    taxes = []
    for rate in sorted(tax_by_rate):
        group = [(i, line) for i, line in enumerate(lines) if line.tax_rate == rate]
        gross = sum((line.total for _, line in group), Decimal(0))
        tax = tax_by_rate[rate]
        base = gross - tax if inclusive else gross
        nets = (
            _allocate(base, [line.total for _, line in group], exponent)
            if inclusive
            else [line.total for _, line in group]
        )
        for (i, line), net in zip(group, nets, strict=True):
            factor = (_HUNDRED + rate) / _HUNDRED if inclusive else Decimal(1)
            canonical[i] = InvoiceLine(
                line_id=line.line_id,
                description=line.description,
                quantity=line.quantity,
                unit_price=_trim(line.rate / factor) if inclusive else line.rate,
                discount=_trim(line.discount / factor) if inclusive else line.discount,
                tax_rate=rate,
                amount=net,
            )
        names = {line.tax_name for _, line in group}
        name = names.pop() if len(names) == 1 else None
        taxes.append(TaxLine(rate=rate, base=base, amount=tax, name=name))
    return [canonical[i] for i in range(len(lines))], taxes


def _check_against_zoho(doc: Mapping[str, Any], field: str, ours: Decimal, number: str) -> None:
    if doc.get(field) in (None, ""):
        return
    theirs = _amount(doc.get(field), field)
    if theirs != ours:
        raise InvoiceMappingError(
            f"{field}_mismatch",
            f"invoice {number}: Zoho's {field} is {theirs} but its lines and taxes add up to "
            f"{ours}; check the invoice's discounts, shipping and taxes in Zoho Books",
            field=field,
        )


def _issued_at(day: date, created: datetime) -> datetime:
    if created.date() == day:
        return created
    return datetime.combine(day, time(0, 0), tzinfo=created.tzinfo)


def _allocate(total: Decimal, weights: list[Decimal], exponent: Decimal) -> list[Decimal]:
    """Split `total` in proportion to `weights`, to `exponent`, summing exactly to `total`."""
    weight_sum = sum(weights, Decimal(0))
    if not weight_sum:
        if total:
            raise InvoiceMappingError(
                "invalid_amount", f"cannot spread {total} over lines that total zero"
            )
        return [Decimal(0) for _ in weights]
    units = (total / exponent).to_integral_value(ROUND_HALF_UP)
    raw = [units * w / weight_sum for w in weights]
    floors = [r.to_integral_value(ROUND_FLOOR) for r in raw]
    # The floors fall short by fewer units than there are lines (more only with negative
    # lines); hand the missing units out by largest remainder, cycling if need be.
    shortfall = int(units - sum(floors, Decimal(0)))
    order = sorted(range(len(raw)), key=lambda i: raw[i] - floors[i], reverse=True)
    step = 1 if shortfall > 0 else -1
    if step < 0:
        order.reverse()
    for n in range(abs(shortfall)):
        floors[order[n % len(order)]] += step
    return [f * exponent for f in floors]


def _round(value: Decimal, exponent: Decimal) -> Decimal:
    return value.quantize(exponent, rounding=ROUND_HALF_UP)


def _trim(value: Decimal) -> Decimal:
    rounded = value.quantize(_SIX_PLACES, rounding=ROUND_HALF_UP)
    if rounded == rounded.to_integral_value():
        return rounded.quantize(Decimal(1))
    return rounded.normalize()


def _discount(value: Any, base: Decimal, field: str) -> Decimal:
    """Zoho writes a percentage discount as "12.5%" and an absolute one as a number."""
    if value in (None, ""):
        return Decimal(0)
    if isinstance(value, str) and value.strip().endswith("%"):
        percent = _amount(value.strip()[:-1], field)
        if not 0 <= percent <= 100:
            raise InvoiceMappingError(
                "invalid_amount", f"{field} {value!r} is not between 0% and 100%", field=field
            )
        return base * percent / _HUNDRED
    amount = _amount(value, field)
    if amount < 0:
        raise InvoiceMappingError("invalid_amount", f"{field} {value!r} is negative", field=field)
    return amount


def _amount(value: Any, field: str) -> Decimal:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvoiceMappingError("missing_field", f"{field} is missing", field=field)
    if isinstance(value, bool):
        raise InvoiceMappingError(
            "invalid_amount", f"{field} must be a number, got {value!r}", field=field
        )
    try:
        if isinstance(value, float):
            amount = Decimal(repr(value))
        elif isinstance(value, int | Decimal):
            amount = Decimal(value)
        elif isinstance(value, str):
            amount = Decimal(value.strip())
        else:
            raise InvalidOperation
    except InvalidOperation:
        raise InvoiceMappingError(
            "invalid_amount", f"{field} must be a number, got {value!r}", field=field
        ) from None
    if not amount.is_finite():
        raise InvoiceMappingError(
            "invalid_amount", f"{field} must be finite, got {value!r}", field=field
        )
    return amount


def _optional_amount(doc: Mapping[str, Any], key: str, field: str | None = None) -> Decimal:
    value = doc.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return Decimal(0)
    return _amount(value, field or key)


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = _optional_text(doc, key)
    if not value:
        raise InvoiceMappingError("missing_field", f"{key} is missing", field=key)
    return value


def _optional_text(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvoiceMappingError("invalid_field", f"{key} must be text, got {value!r}", field=key)
    return value.strip() or None


def _id(value: Any, field: str) -> str:
    identifier = _optional_id(value, field)
    if identifier is None:
        raise InvoiceMappingError("missing_field", f"{field} is missing", field=field)
    return identifier


def _optional_id(value: Any, field: str) -> str | None:
    # Ids reach 19 digits; a float has already lost the last ones, so refuse it.
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvoiceMappingError(
        "invalid_id",
        f"{field} must be a string or an integer, got {value!r}"
        " (read the JSON with exact integers: ids have up to 19 digits)",
        field=field,
    )


def _date(value: Any, field: str) -> date:
    if not isinstance(value, str) or not value.strip():
        raise InvoiceMappingError("missing_field", f"{field} is missing", field=field)
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvoiceMappingError(
            "invalid_date", f"{field} {value!r} is not a date like 2025-04-09", field=field
        ) from None


def _flag(doc: Mapping[str, Any], key: str) -> bool:
    value = doc.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if value is None:
        return False
    raise InvoiceMappingError("invalid_field", f"{key} must be true or false", field=key)
