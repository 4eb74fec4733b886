"""A Zoho invoice's money -> taxable bases and tax per Zoho tax, untaxed amounts, charges,
in the document's currency and in the organization's base currency. Pure.

The rules, so every reader of the canonical invoice knows what the figures mean:

* Lines: item_total = rate x quantity - line discount (`discount_amount`, else
  `discount` as "10%" or an amount), to the currency's unit. Zoho's `item_total` must
  agree within one unit. With prices including tax (`is_inclusive_tax`) Zoho's
  `item_total` may be the gross or the net amount (*uncertain*, see the design note):
  both readings are accepted, per line, and the gross is always rebuilt from the rate.
* Taxes are identified by the line's `tax_id` and read from the line's
  `line_item_taxes[]` (Zoho's own per-line rounding). Names are never matched across
  levels (a line says "PDV25", its `line_item_taxes[]` "PDV25 (25%)", and the
  invoice-level `taxes[]` carries no tax_id): `taxes[]` is only checked in sum. Without
  `line_item_taxes`, tax is computed per line or per tax, whichever reproduces Zoho's
  `tax_total` (Zoho's `tax_rounding` decides when there is no total to compare with).
* An entity-level discount before tax (`discount_total`, else `discount_amount`, else
  `discount` on `discount_applied_on_amount`/the sub-total) is spread over the lines in
  proportion to their amounts, largest remainder, to the cent: it lowers each taxable
  base. A discount after tax, `adjustment` and `roundoff_value` change the total but
  neither a base nor a tax: they are kept as signed charges for the fiscal profile to
  decide on, never folded into a base.
* `shipping_charge` is a supply taxed at its own tax (`shipping_charge_tax_id`, its
  amount `shipping_charge_tax` or computed); net of tax when prices include tax.
* Lines without tax (`tax_id` "" or a 0 % tax) are kept apart, grouped by their tax id.
* Everything must add up to Zoho's `total` exactly (and to `tax_total`, `sub_total`):
  otherwise `InvoiceMappingError` says which figure and by how much, and the invoice
  is never reported with other numbers.
* Base currency: the figures x `exchange_rate`, with Zoho's `bcy_total`,
  `bcy_tax_total` (and `bcy_adjustment`, `bcy_discount_total`) as the fixed points when
  present. Tax and bases are spread over the rows in proportion, to the cent, so the
  rows add up to `bcy_total` exactly; a row more than one cent from its own
  conversion means the bcy figures contradict the rate, and the invoice is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.zoho.mapping.values import (
    HUNDRED,
    InvoiceMappingError,
    allocate,
    amount,
    amount_or_zero,
    exponent_of,
    flag,
    is_empty,
    object_list,
    optional_amount,
    optional_id,
    optional_text,
    percent_or_amount,
    round_to,
    trim,
)
from schemas.invoice import BaseAmounts, Charge, ChargeKind, InvoiceLine, TaxLine, UntaxedLine

_ZERO = Decimal(0)


@dataclass
class _Line:
    line_id: str | None
    description: str
    quantity: Decimal
    rate: Decimal  # as entered: tax-inclusive when the invoice is
    discount: Decimal  # as entered (line discount, then its share of an entity discount)
    amount: Decimal  # rate x quantity - discount, to the unit: gross when inclusive
    stated_total: Decimal | None  # Zoho's item_total, in whichever reading it used
    tax_id: str | None
    tax_rate: Decimal
    tax_name: str | None
    zoho_tax: Decimal | None  # from line_item_taxes[]
    tax: Decimal = _ZERO
    net: Decimal = _ZERO


@dataclass
class Figures:
    lines: list[InvoiceLine]
    taxes: list[TaxLine]
    untaxed: list[UntaxedLine]
    charges: list[Charge]
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    exchange_rate: Decimal
    base: BaseAmounts | None = None

    def negated(self) -> Figures:
        """The same figures with the opposite sign: a credit note reported as a storno."""
        return Figures(
            lines=[
                ln.model_copy(
                    update={
                        "quantity": -ln.quantity,
                        "discount": -ln.discount,
                        "amount": -ln.amount,
                    }
                )
                for ln in self.lines
            ],
            taxes=[_negate_tax(t) for t in self.taxes],
            untaxed=[u.model_copy(update={"base": -u.base}) for u in self.untaxed],
            charges=[c.model_copy(update={"amount": -c.amount}) for c in self.charges],
            subtotal=-self.subtotal,
            tax_total=-self.tax_total,
            total=-self.total,
            exchange_rate=self.exchange_rate,
            base=None
            if self.base is None
            else BaseAmounts(
                currency=self.base.currency,
                taxes=tuple(_negate_tax(t) for t in self.base.taxes),
                untaxed=tuple(u.model_copy(update={"base": -u.base}) for u in self.base.untaxed),
                charges=tuple(
                    c.model_copy(update={"amount": -c.amount}) for c in self.base.charges
                ),
                subtotal=-self.base.subtotal,
                tax_total=-self.base.tax_total,
                total=-self.base.total,
            ),
        )


def _negate_tax(row: TaxLine) -> TaxLine:
    return row.model_copy(update={"base": -row.base, "amount": -row.amount})


def figures(doc: Mapping[str, Any], *, number: str, currency: str, base_currency: str) -> Figures:
    exponent = exponent_of(currency)
    inclusive = flag(doc, "is_inclusive_tax")
    lines = _lines(doc, exponent, inclusive)
    entered = sum((ln.amount for ln in lines), _ZERO)  # before an entity discount
    charges: list[Charge] = []

    discount, before_tax = _entity_discount(doc, lines, exponent)
    if discount and before_tax:
        if discount > sum((ln.amount for ln in lines), _ZERO):
            raise InvoiceMappingError(
                "invalid_amount",
                f"invoice {number}: its discount {discount} exceeds its lines' total",
                field="discount",
            )
        for ln, share in zip(
            lines, allocate(discount, [ln.amount for ln in lines], exponent), strict=True
        ):
            ln.discount += share
            ln.amount -= share

    shipping = _shipping(doc, exponent, inclusive)
    if shipping is not None:
        lines.append(shipping)

    _taxes(doc, lines, exponent, inclusive, number)

    if discount and not before_tax:
        charges.append(
            Charge(
                kind=ChargeKind.DISCOUNT_AFTER_TAX,
                amount=-discount,
                description="discount after tax",
            )
        )
    adjustment = amount_or_zero(doc, "adjustment")
    if adjustment:
        charges.append(
            Charge(
                kind=ChargeKind.ADJUSTMENT,
                amount=adjustment,
                description=optional_text(doc, "adjustment_description") or "Adjustment",
            )
        )
    rounding = amount_or_zero(doc, "roundoff_value")
    if rounding:
        charges.append(Charge(kind=ChargeKind.ROUNDING, amount=rounding, description="rounding"))

    canonical = [_canonical(ln, inclusive) for ln in lines]
    taxes, untaxed = _rows(lines)
    subtotal = sum((ln.net for ln in lines), _ZERO)
    tax_total = sum((ln.tax for ln in lines), _ZERO)
    total = subtotal + tax_total + sum((c.amount for c in charges), _ZERO)
    _check(doc, "tax_total", tax_total, number, _TAX_HINT)
    _check_taxes_list(doc, tax_total, number)
    _check_sub_total(doc, lines, shipping, {entered, subtotal}, number)
    _check(doc, "total", total, number, _TOTAL_HINT)

    exchange_rate = optional_amount(doc, "exchange_rate")
    if exchange_rate is None:
        exchange_rate = Decimal(1)
    if exchange_rate <= 0:
        raise InvoiceMappingError(
            "invalid_amount",
            f"exchange_rate {exchange_rate} must be positive",
            field="exchange_rate",
        )
    base = _base(
        doc, currency, base_currency, exchange_rate, taxes, untaxed, charges, tax_total, total,
        number,
    )  # fmt: skip
    return Figures(
        lines=canonical,
        taxes=taxes,
        untaxed=untaxed,
        charges=charges,
        subtotal=subtotal,
        tax_total=tax_total,
        total=total,
        exchange_rate=exchange_rate,
        base=base,
    )


# -- lines -------------------------------------------------------------------------------


def _lines(doc: Mapping[str, Any], exponent: Decimal, inclusive: bool) -> list[_Line]:
    if doc.get("line_items") is None:
        raise InvoiceMappingError(
            "line_items_missing",
            "line_items is missing: list results carry no lines, fetch the invoice detail",
            field="line_items",
        )
    items = object_list(doc, "line_items")
    if not items:
        raise InvoiceMappingError("line_items_missing", "the document has no line items")
    lines = []
    for index, item in enumerate(items):
        where = f"line_items[{index}]"
        quantity = amount(item.get("quantity"), f"{where}.quantity")
        rate = amount(item.get("rate"), f"{where}.rate")
        gross = rate * quantity
        if not is_empty(item.get("discount_amount")):
            discount = amount(item.get("discount_amount"), f"{where}.discount_amount")
        else:
            discount = percent_or_amount(item.get("discount"), gross, f"{where}.discount")
        line_amount = round_to(gross - discount, exponent)
        tax_rate = amount_or_zero(item, "tax_percentage", f"{where}.tax_percentage")
        if tax_rate < 0:
            raise InvoiceMappingError(
                "invalid_amount", f"{where}.tax_percentage is negative", field=where
            )
        stated = optional_amount(item, "item_total", f"{where}.item_total")
        if stated is not None:
            net = (
                round_to(line_amount * HUNDRED / (HUNDRED + tax_rate), exponent)
                if inclusive and tax_rate
                else None
            )
            # Exact readings first: a tiny inclusive line's net can be one unit from its gross.
            if stated == line_amount or stated == net:
                pass
            elif abs(stated - line_amount) <= exponent:
                line_amount = stated  # Zoho's own rounding of the same figure
            elif net is None or abs(stated - net) > exponent:
                raise InvoiceMappingError(
                    "line_total_mismatch",
                    f"{where}.item_total {stated} differs from rate {rate} x quantity {quantity}"
                    f" - discount {round_to(discount, exponent)} = {line_amount}",
                    field=f"{where}.item_total",
                )
        # A line without name or description is still a supply: its place names it.
        description = (
            optional_text(item, "name", f"{where}.name")
            or optional_text(item, "description", f"{where}.description")
            or f"line {index + 1}"
        )
        tax_id = optional_id(item.get("tax_id"), f"{where}.tax_id")
        zoho_tax, entry_id, entry_name = _line_item_taxes(item, where)
        if tax_id and entry_id and entry_id != tax_id:
            raise InvoiceMappingError(
                "tax_mismatch",
                f"{where} names tax {tax_id} but its line_item_taxes name {entry_id}",
                field=f"{where}.line_item_taxes",
            )
        lines.append(
            _Line(
                line_id=optional_id(item.get("line_item_id"), f"{where}.line_item_id"),
                description=description,
                quantity=quantity,
                rate=rate,
                discount=gross - line_amount,
                amount=line_amount,
                stated_total=stated,
                tax_id=tax_id or entry_id,
                tax_rate=tax_rate,
                tax_name=entry_name or optional_text(item, "tax_name", f"{where}.tax_name"),
                zoho_tax=zoho_tax,
            )
        )
    return lines


def _line_item_taxes(
    item: Mapping[str, Any], where: str
) -> tuple[Decimal | None, str | None, str | None]:
    """Zoho's tax on the line, with the tax's id and long name; None when not given."""
    entries = object_list(item, "line_item_taxes", f"{where}.line_item_taxes")
    if not entries:
        return None, None, None
    ids = {optional_id(e.get("tax_id"), f"{where}.line_item_taxes.tax_id") for e in entries}
    if len(entries) > 1:
        raise InvoiceMappingError(
            "several_taxes_on_line",
            f"{where} carries {len(entries)} taxes (a tax group): a fiscal record needs one"
            " VAT rate per line; use a single tax on this line in Zoho Books",
            field=f"{where}.line_item_taxes",
        )
    entry = entries[0]
    tax = amount(entry.get("tax_amount"), f"{where}.line_item_taxes[0].tax_amount")
    return tax, ids.pop(), optional_text(entry, "tax_name", f"{where}.line_item_taxes[0].tax_name")


def _entity_discount(
    doc: Mapping[str, Any], lines: list[_Line], exponent: Decimal
) -> tuple[Decimal, bool]:
    """The entity-level discount amount and whether it is taken before tax."""
    kind = str(doc.get("discount_type") or "entity_level").strip().lower().replace(" ", "_")
    before_tax = flag(doc, "is_discount_before_tax", default=True)
    if kind == "item_level":
        return _ZERO, before_tax  # already in the lines; the header only echoes them
    for key in ("discount_total", "discount_amount"):
        stated = optional_amount(doc, key)
        if stated is not None:
            if stated < 0:
                raise InvoiceMappingError("invalid_amount", f"{key} is negative", field=key)
            if stated or key == "discount_total":
                return round_to(stated, exponent), before_tax
    applied_on = optional_amount(doc, "discount_applied_on_amount")
    if applied_on is None or not applied_on:
        applied_on = sum((ln.amount for ln in lines), _ZERO)
        if not before_tax:
            applied_on += amount_or_zero(doc, "tax_total")
    return round_to(percent_or_amount(doc.get("discount"), applied_on, "discount"), exponent), (
        before_tax
    )


def _shipping(doc: Mapping[str, Any], exponent: Decimal, inclusive: bool) -> _Line | None:
    """Shipping as a line: as entered (gross when prices include tax), taxed at its tax.

    Whether an inclusive invoice's `shipping_charge` includes its tax is *uncertain*;
    Zoho's `shipping_charge_exclusive_of_tax`/`_inclusive_of_tax`, when present, say
    which, and decide.
    """
    charge = amount_or_zero(doc, "shipping_charge")
    if not charge:
        return None
    rate = amount_or_zero(doc, "shipping_charge_tax_percentage")
    tax_id = optional_id(doc.get("shipping_charge_tax_id"), "shipping_charge_tax_id")
    stated_tax = optional_amount(doc, "shipping_charge_tax")
    excluding = optional_amount(doc, "shipping_charge_exclusive_of_tax")
    including = optional_amount(doc, "shipping_charge_inclusive_of_tax")
    if rate and excluding is not None and including is not None and including >= excluding:
        stated_tax = including - excluding
        charge = including if inclusive else excluding
    return _Line(
        line_id=None,
        description="Shipping charge",
        quantity=Decimal(1),
        rate=charge,
        discount=_ZERO,
        amount=charge,
        stated_total=None,
        tax_id=tax_id,
        tax_rate=rate,
        tax_name=optional_text(doc, "shipping_charge_tax_name"),
        zoho_tax=stated_tax if rate else None,
    )


# -- taxes -------------------------------------------------------------------------------


def _taxes(
    doc: Mapping[str, Any], lines: list[_Line], exponent: Decimal, inclusive: bool, number: str
) -> None:
    """Sets each line's tax and net amount."""

    def per_line(ln: _Line) -> Decimal:
        divisor = HUNDRED + ln.tax_rate if inclusive else HUNDRED
        return round_to(ln.amount * ln.tax_rate / divisor, exponent)

    missing = [ln for ln in lines if ln.tax_rate and ln.zoho_tax is None]
    for ln in lines:
        if not ln.tax_rate:
            if ln.zoho_tax:
                raise InvoiceMappingError(
                    "tax_mismatch",
                    f"invoice {number}: {ln.description!r} has no tax rate but {ln.zoho_tax} tax",
                )
            ln.tax = _ZERO
        elif ln.zoho_tax is not None:
            ln.tax = ln.zoho_tax
        else:
            ln.tax = per_line(ln)
    if missing:
        _regroup_missing(doc, lines, missing, exponent, inclusive)
    for ln in lines:
        if ln.tax_rate and abs(ln.tax - per_line(ln)) > exponent * len(lines):
            raise InvoiceMappingError(
                "tax_mismatch",
                f"invoice {number}: {ln.description!r} carries {ln.tax} tax, but"
                f" {ln.amount} at {ln.tax_rate.normalize():f} % gives {per_line(ln)}; correct the"
                " line's tax in Zoho Books",
            )
        ln.net = ln.amount - ln.tax if inclusive else ln.amount


def _regroup_missing(
    doc: Mapping[str, Any],
    lines: list[_Line],
    missing: list[_Line],
    exponent: Decimal,
    inclusive: bool,
) -> None:
    """Lines without Zoho's per-line tax: round per tax instead of per line when that
    is what reproduces Zoho's tax_total (or what its `tax_rounding` says)."""
    groups: dict[tuple[str | None, Decimal], list[_Line]] = {}
    for ln in missing:
        groups.setdefault((ln.tax_id, ln.tax_rate), []).append(ln)
    without = {id(ln) for ln in missing}  # by identity: two equal lines are two lines
    known = sum((ln.tax for ln in lines if id(ln) not in without), _ZERO)
    per_line_sum = sum((ln.tax for ln in missing), _ZERO)
    per_group: dict[tuple[str | None, Decimal], Decimal] = {}
    for (tax_id, rate), group in groups.items():
        divisor = HUNDRED + rate if inclusive else HUNDRED
        per_group[(tax_id, rate)] = round_to(
            sum((ln.amount for ln in group), _ZERO) * rate / divisor, exponent
        )
    stated = optional_amount(doc, "tax_total")
    if stated is not None:
        wanted = stated - known
        if per_line_sum == wanted:
            return
        if sum(per_group.values(), _ZERO) != wanted:
            if len(groups) != 1:
                return  # neither reproduces it: the tax_total check explains the difference
            per_group = {key: wanted for key in groups}  # one tax: Zoho's figure is its tax
    elif str(doc.get("tax_rounding") or "").lower() == "item_level":
        return
    for key, group in groups.items():
        shares = allocate(per_group[key], [ln.amount for ln in group], exponent)
        for ln, share in zip(group, shares, strict=True):
            ln.tax = share


def _rows(lines: list[_Line]) -> tuple[list[TaxLine], list[UntaxedLine]]:
    taxed: dict[tuple[str | None, Decimal], list[_Line]] = {}
    untaxed: dict[str | None, list[_Line]] = {}
    for ln in lines:
        if ln.tax_rate:
            taxed.setdefault((ln.tax_id, ln.tax_rate), []).append(ln)
        else:
            untaxed.setdefault(ln.tax_id, []).append(ln)
    taxes = []
    for (tax_id, rate), group in sorted(taxed.items(), key=lambda kv: (kv[0][1], kv[0][0] or "")):
        names = {ln.tax_name for ln in group if ln.tax_name}
        taxes.append(
            TaxLine(
                rate=rate,
                base=sum((ln.net for ln in group), _ZERO),
                amount=sum((ln.tax for ln in group), _ZERO),
                name=names.pop() if len(names) == 1 else None,
                tax_id=tax_id,
            )
        )
    rows = []
    for tax_id, group in untaxed.items():
        names = {ln.tax_name for ln in group if ln.tax_name}
        rows.append(
            UntaxedLine(
                base=sum((ln.net for ln in group), _ZERO),
                tax_id=tax_id,
                name=names.pop() if len(names) == 1 else None,
            )
        )
    return taxes, rows


def _canonical(ln: _Line, inclusive: bool) -> InvoiceLine:
    factor = (HUNDRED + ln.tax_rate) / HUNDRED if inclusive else Decimal(1)
    return InvoiceLine(
        line_id=ln.line_id,
        description=ln.description,
        quantity=ln.quantity,
        unit_price=trim(ln.rate / factor) if inclusive else ln.rate,
        discount=trim(ln.discount / factor) if inclusive else ln.discount,
        tax_rate=ln.tax_rate,
        amount=ln.net,
        tax_id=ln.tax_id,
    )


# -- checks against Zoho's own figures ---------------------------------------------------


def _check(doc: Mapping[str, Any], key: str, ours: Decimal, number: str, hint: str) -> None:
    theirs = optional_amount(doc, key)
    if theirs is None or theirs == ours:
        return
    raise InvoiceMappingError(
        f"{key}_mismatch",
        f"invoice {number}: Zoho's {key} is {theirs} but its lines, taxes and charges add up"
        f" to {ours} ({ours - theirs:+}); {hint}",
        field=key,
    )


_TAX_HINT = "check each line's tax in Zoho Books (one tax per line, none hand-edited)"
_TOTAL_HINT = (
    "check the invoice's discounts, shipping, adjustment and rounding in Zoho Books;"
    " FiscoBridge reports only figures that add up to the invoice's total"
)


def _check_taxes_list(doc: Mapping[str, Any], tax_total: Decimal, number: str) -> None:
    entries = object_list(doc, "taxes")
    if not entries:
        return
    listed = sum(
        (amount(e.get("tax_amount"), f"taxes[{i}].tax_amount") for i, e in enumerate(entries)),
        _ZERO,
    )
    if listed != tax_total:
        raise InvoiceMappingError(
            "taxes_mismatch",
            f"invoice {number}: its tax summary (taxes[]) adds up to {listed} but its lines"
            f" carry {tax_total} tax; check the invoice's taxes in Zoho Books",
            field="taxes",
        )


def _check_sub_total(
    doc: Mapping[str, Any],
    lines: list[_Line],
    shipping: _Line | None,
    computed: set[Decimal],
    number: str,
) -> None:
    """sub_total must be one of its readings: the sum of Zoho's item totals (gross or net,
    as it stated them), of the lines as entered, or of their net amounts. It decides no
    reported figure, so any of them will do; none means the lines were not all sent."""
    theirs = optional_amount(doc, "sub_total")
    if theirs is None:
        return
    items = [ln for ln in lines if ln is not shipping]
    readings = set(computed)
    if all(ln.stated_total is not None for ln in items):
        readings.add(sum((ln.stated_total or _ZERO for ln in items), _ZERO))
    if theirs not in readings:
        raise InvoiceMappingError(
            "sub_total_mismatch",
            f"invoice {number}: Zoho's sub_total is {theirs} but its lines add up to"
            f" {' or '.join(str(r) for r in sorted(readings))}: a line may be missing",
            field="sub_total",
        )


# -- base currency -----------------------------------------------------------------------


def _base(
    doc: Mapping[str, Any],
    currency: str,
    base_currency: str,
    rate: Decimal,
    taxes: list[TaxLine],
    untaxed: list[UntaxedLine],
    charges: list[Charge],
    tax_total: Decimal,
    total: Decimal,
    number: str,
) -> BaseAmounts | None:
    base_currency = base_currency.upper()
    if currency == base_currency:
        if rate != 1:
            raise InvoiceMappingError(
                "exchange_rate_mismatch",
                f"invoice {number} is in the base currency {currency} but its exchange_rate"
                f" is {rate}",
                field="exchange_rate",
            )
        return None  # the document's own figures are the base currency's
    if rate == 1:
        raise InvoiceMappingError(
            "exchange_rate_missing",
            f"invoice {number} is in {currency} at exchange rate 1 to {base_currency}: set the"
            f" invoice's exchange rate in Zoho Books (or, if the organization's base currency"
            f" is {currency}, it is not {base_currency})",
            field="exchange_rate",
        )
    cent = exponent_of(base_currency)

    def convert(value: Decimal) -> Decimal:
        return round_to(value * rate, cent)

    base_total = optional_amount(doc, "bcy_total", default=convert(total)) or _ZERO
    base_tax = optional_amount(doc, "bcy_tax_total", default=convert(tax_total)) or _ZERO
    for key, ours, theirs in (
        ("bcy_total", total, base_total),
        ("bcy_tax_total", tax_total, base_tax),
    ):
        if abs(convert(ours) - theirs) > cent:
            raise InvoiceMappingError(
                "exchange_mismatch",
                f"invoice {number}: {key} {theirs} {base_currency} is not {ours} {currency}"
                f" x exchange rate {rate} = {convert(ours)}",
                field=key,
            )
    base_charges = []
    for charge in charges:
        bcy_key = {
            ChargeKind.ADJUSTMENT: "bcy_adjustment",
            ChargeKind.DISCOUNT_AFTER_TAX: "bcy_discount_total",
        }.get(charge.kind)
        stated = optional_amount(doc, bcy_key) if bcy_key else None
        if stated is not None and charge.kind is ChargeKind.DISCOUNT_AFTER_TAX:
            stated = -stated
        base_charges.append(
            charge.model_copy(
                update={"amount": stated if stated is not None else convert(charge.amount)}
            )
        )
    tax_shares = allocate(base_tax, [t.amount for t in taxes], cent) if taxes else []
    if not taxes and base_tax:
        raise InvoiceMappingError(
            "exchange_mismatch", f"invoice {number}: bcy_tax_total {base_tax} without any tax"
        )
    net_rows: list[Decimal] = [t.base for t in taxes] + [u.base for u in untaxed]
    net_total = base_total - base_tax - sum((c.amount for c in base_charges), _ZERO)
    if not sum(net_rows, _ZERO) and net_total:
        # Nothing to spread a conversion residue over (every base is zero): it is the
        # rounding of converting each figure on its own.
        if abs(net_total) > cent * (1 + len(base_charges)):
            raise InvoiceMappingError(
                "exchange_mismatch",
                f"invoice {number}: its base-currency figures leave {net_total}"
                f" {base_currency} that no line accounts for",
                field="bcy_total",
            )
        base_charges.append(
            Charge(kind=ChargeKind.ROUNDING, amount=net_total, description="conversion rounding")
        )
        net_total = _ZERO
    net_shares = allocate(net_total, net_rows, cent) if net_rows else []
    slack = cent * (1 + len(net_rows))
    for ours, share in zip(
        [t.amount for t in taxes] + net_rows, tax_shares + net_shares, strict=True
    ):
        if abs(convert(ours) - share) > slack:
            raise InvoiceMappingError(
                "exchange_mismatch",
                f"invoice {number}: converting {ours} {currency} at {rate} gives"
                f" {convert(ours)} {base_currency}, but Zoho's base-currency totals leave"
                f" {share}; check the invoice's exchange rate in Zoho Books",
                field="exchange_rate",
            )
    base_taxes = tuple(
        t.model_copy(update={"base": b, "amount": a})
        for t, a, b in zip(taxes, tax_shares, net_shares[: len(taxes)], strict=True)
    )
    base_untaxed = tuple(
        u.model_copy(update={"base": b})
        for u, b in zip(untaxed, net_shares[len(taxes) :], strict=True)
    )
    return BaseAmounts(
        currency=base_currency,
        taxes=base_taxes,
        untaxed=base_untaxed,
        charges=tuple(base_charges),
        subtotal=net_total,
        tax_total=base_tax,
        total=base_total,
    )
