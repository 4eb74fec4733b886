"""Realistic canonical invoices for tests.

`make_invoice()` is a three-line invoice of a Zagreb café supplier with VAT at 25 %,
13 % and 5 %. Override any field; when `lines` are given but `taxes` are not, the tax
breakdown and totals are derived from the lines the way accounting systems do it
(tax rounded per line, then added up per rate).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from schemas.events import FiscalNumber
from schemas.invoice import (
    Customer,
    Invoice,
    InvoiceLine,
    PaymentMethod,
    SourceStatus,
    TaxLine,
)

ZAGREB = ZoneInfo("Europe/Zagreb")
CENT = Decimal("0.01")


def make_line(
    description: str,
    quantity: str | Decimal,
    unit_price: str | Decimal,
    tax_rate: str | Decimal,
    discount: str | Decimal = "0",
) -> InvoiceLine:
    quantity, unit_price = Decimal(quantity), Decimal(unit_price)
    discount = Decimal(discount)
    return InvoiceLine(
        description=description,
        quantity=quantity,
        unit_price=unit_price,
        discount=discount,
        tax_rate=Decimal(tax_rate),
        amount=(quantity * unit_price - discount).quantize(CENT, rounding=ROUND_HALF_UP),
    )


DEFAULT_LINES = (
    make_line("Espresso blend 1 kg", "3", "18.90", "25"),
    make_line("Croissant, butter (box of 12)", "2", "14.35", "13", discount="1.00"),
    make_line("Whole milk 1 l", "12", "1.19", "5"),
)


def taxes_of(lines: tuple[InvoiceLine, ...]) -> tuple[TaxLine, ...]:
    bases: dict[Decimal, Decimal] = defaultdict(Decimal)
    amounts: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line in lines:
        bases[line.tax_rate] += line.amount
        amounts[line.tax_rate] += (line.amount * line.tax_rate / 100).quantize(
            CENT, rounding=ROUND_HALF_UP
        )
    return tuple(
        TaxLine(rate=rate, base=bases[rate], amount=amounts[rate], name=f"PDV {rate}%")
        for rate in sorted(bases, reverse=True)
        if rate != 0
    )


def make_invoice(**overrides: Any) -> Invoice:
    lines: tuple[InvoiceLine, ...] = tuple(overrides.pop("lines", DEFAULT_LINES))
    taxes: tuple[TaxLine, ...] = tuple(overrides.pop("taxes", taxes_of(lines)))
    subtotal = overrides.pop("subtotal", sum((line.amount for line in lines), Decimal(0)))
    tax_total = overrides.pop("tax_total", sum((tax.amount for tax in taxes), Decimal(0)))
    fields: dict[str, Any] = dict(
        source="zoho_books",
        source_id="460000000012345678",
        number="INV-000123",
        issued_at=datetime(2026, 11, 25, 9, 30, 15, tzinfo=ZAGREB),
        currency="EUR",
        customer=Customer(name="Kavana Trg d.o.o.", source_id="4600000000987", country="HR"),
        lines=lines,
        taxes=taxes,
        subtotal=subtotal,
        tax_total=tax_total,
        total=subtotal + tax_total,
        payment_method=PaymentMethod.CARD,
        status=SourceStatus.SENT,
        last_modified_at=datetime(2026, 11, 25, 9, 31, tzinfo=ZAGREB),
    )
    fields.update(overrides)
    return Invoice(**fields)


def fiscal_number(
    number: int = 123, *, premises: str = "POSL1", device: str = "12", year: int = 2026
) -> FiscalNumber:
    """A number as the fiscalizer assigns it (the profile never derives one)."""
    return FiscalNumber(number=number, premises=premises, device=device, year=year)
