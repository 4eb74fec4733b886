"""The canonical invoice: what every connector maps into and every profile reads.

Source ids stay strings (Zoho ids are up to 19 digits, beyond a double's precision).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.money import Amount, AwareDatetime, CurrencyCode


class Contract(BaseModel):
    """Base of every contract: extra fields from a newer producer are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)


class PaymentMethod(StrEnum):
    CASH = "cash"
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"
    CHEQUE = "cheque"
    OTHER = "other"


class SourceStatus(StrEnum):
    """Lifecycle of the invoice in the accounting system, normalized."""

    DRAFT = "draft"
    SENT = "sent"
    VIEWED = "viewed"
    UNPAID = "unpaid"
    OVERDUE = "overdue"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    VOID = "void"
    OTHER = "other"


# The storno of a fiscalized invoice (one voided after it was fiscalized) is a document
# of its own, keyed by the invoice's source id and this suffix; every stage reads it so.
STORNO_SUFFIX = ":storno"


class DocumentKind(StrEnum):
    INVOICE = "invoice"
    CREDIT_NOTE = "credit_note"


class ChargeKind(StrEnum):
    """An amount in the total that is neither a taxable base nor tax."""

    ADJUSTMENT = "adjustment"  # Zoho `adjustment`: added to the total untaxed
    ROUNDING = "rounding"  # Zoho `roundoff_value`: transaction rounding of the total
    DISCOUNT_AFTER_TAX = "discount_after_tax"  # an entity discount taken off the taxed total


class Customer(Contract):
    name: str
    source_id: str | None = None
    tax_id: str | None = None
    tax_id_source: str | None = Field(
        default=None,
        description="where tax_id was read, e.g. 'contact.tax_reg_no', 'invoice.vat_reg_no',"
        " 'contact.custom_field:cf_oib'; None when there is none",
    )
    country: str | None = None


class InvoiceLine(Contract):
    line_id: str | None = None
    description: str
    quantity: Amount
    unit_price: Amount = Field(description="price per unit before discount, excluding tax")
    discount: Amount = Field(default=Decimal("0"), description="discount amount for the line")
    tax_rate: Amount = Field(description="VAT percentage, e.g. 25 for 25 %")
    amount: Amount = Field(description="line net amount after discount, excluding tax")
    tax_id: str | None = Field(
        default=None, description="the source's identity of the line's tax (Zoho tax_id)"
    )


class TaxLine(Contract):
    """One row of the tax breakdown: everything taxed by one source tax (or at one rate)."""

    rate: Amount
    base: Amount
    amount: Amount
    name: str | None = None
    tax_id: str | None = Field(
        default=None, description="the source's tax identity (Zoho tax_id); None if unknown"
    )


class UntaxedLine(Contract):
    """Net amounts that carry no tax, grouped by the source tax they name (if any).

    Zoho has no tax on such a line (`tax_id` empty) or a 0 % tax the business set up
    (exempt, reverse charge, ...): which fiscal category it is belongs to the
    integration's tax mapping, not to the connector.
    """

    base: Amount
    tax_id: str | None = None
    name: str | None = None


class Charge(Contract):
    """An amount inside the total that is neither a taxable base nor tax (signed)."""

    kind: ChargeKind
    amount: Amount
    description: str | None = None


def payment_mode_key(mode: str) -> str:
    """How a source's payment mode is looked up in a mapping: lowercase, without
    whitespace (Zoho's "Bank Transfer" and "banktransfer" are one mode)."""
    return "".join(mode.lower().split())


class Payment(Contract):
    source_id: str | None = None
    mode: str = Field(description="the source's payment mode as sent, e.g. Zoho 'creditcard'")
    method: PaymentMethod
    amount: Amount
    date: str | None = Field(default=None, description="payment date, YYYY-MM-DD")


class CreditedInvoice(Contract):
    """An invoice a credit note credits."""

    source_id: str
    number: str | None = None
    amount: Amount | None = Field(default=None, description="amount credited to it")


class BaseAmounts(Contract):
    """The invoice's figures in the organization's base currency (EUR for a Croatian one).

    Zoho's `bcy_*` figures, or the document's converted at its own exchange rate; the
    rows add up to `total` exactly.
    """

    currency: CurrencyCode
    taxes: tuple[TaxLine, ...]
    untaxed: tuple[UntaxedLine, ...] = ()
    charges: tuple[Charge, ...] = ()
    subtotal: Amount
    tax_total: Amount
    total: Amount

    @model_validator(mode="after")
    def _rows_add_up(self) -> BaseAmounts:
        _require_sum(
            self.taxes,
            self.untaxed,
            self.charges,
            self.subtotal,
            self.tax_total,
            self.total,
            "base-currency",
        )
        return self


# Amounts carry their fiscal sign: a credit note's are negative (it is reported as a
# storno invoice); `credited` names the invoices it takes back.
class Invoice(Contract):
    source: str = Field(description="accounting system, e.g. 'zoho_books'")
    source_id: str
    number: str
    issued_at: AwareDatetime
    created_at: AwareDatetime | None = Field(
        default=None,
        description="when the record was created in the source (Zoho created_time); "
        "an invoice created before its integration's start is never fiscalized",
    )
    currency: CurrencyCode
    customer: Customer
    lines: tuple[InvoiceLine, ...]
    taxes: tuple[TaxLine, ...]
    subtotal: Amount = Field(description="sum of line amounts, excluding tax")
    tax_total: Amount
    total: Amount
    payment_method: PaymentMethod = PaymentMethod.OTHER
    status: SourceStatus
    last_modified_at: AwareDatetime
    prices_include_tax: bool = False
    kind: DocumentKind = DocumentKind.INVOICE
    credited: tuple[CreditedInvoice, ...] = Field(
        default=(), description="for a credit note: the invoices it credits"
    )
    untaxed: tuple[UntaxedLine, ...] = Field(
        default=(), description="net amounts without tax (also lines at tax_rate 0), by source tax"
    )
    charges: tuple[Charge, ...] = Field(
        default=(), description="adjustment, rounding, discount after tax: in total, not in VAT"
    )
    exchange_rate: Amount = Field(
        default=Decimal(1), description="base-currency units per unit of `currency`"
    )
    base: BaseAmounts | None = Field(
        default=None, description="the figures in the organization's base currency"
    )
    payments: tuple[Payment, ...] = ()
    source_status: str | None = Field(default=None, description="the status as the source says it")
    first_seen_issued_at: AwareDatetime | None = Field(
        default=None,
        description="when FiscoBridge first saw the document out of draft (set on receipt)",
    )

    @model_validator(mode="after")
    def _totals_add_up(self) -> Invoice:
        charges = sum((c.amount for c in self.charges), Decimal(0))
        if self.subtotal + self.tax_total + charges != self.total:
            raise ValueError(
                f"subtotal {self.subtotal} + tax {self.tax_total} + charges {charges}"
                f" != total {self.total}"
            )
        same_currency = self.base is not None and self.base.currency == self.currency
        if same_currency and self.base is not None and self.base.total != self.total:
            raise ValueError(
                f"base total {self.base.total} differs from total {self.total}"
                f" in the same currency {self.currency}"
            )
        return self

    @property
    def base_amounts(self) -> BaseAmounts:
        """The figures in base currency; the document's own when no conversion was given."""
        if self.base is not None:
            return self.base
        taxes = tuple(t for t in self.taxes if t.rate)
        untaxed = self.untaxed
        rest = self.subtotal - sum((t.base for t in taxes), Decimal(0))
        rest -= sum((u.base for u in untaxed), Decimal(0))
        if rest:  # a producer that states untaxed lines only as lines at rate 0
            untaxed = (*untaxed, UntaxedLine(base=rest))
        return BaseAmounts(
            currency=self.currency,
            taxes=taxes,
            untaxed=untaxed,
            charges=self.charges,
            subtotal=self.subtotal,
            tax_total=self.tax_total,
            total=self.total,
        )

    def in_base_currency(self) -> Invoice:
        """The invoice as the base currency states it: one line per tax row and untaxed
        row, at the base-currency figures (Zoho's bcy_*). The invoice itself when it is
        in the base currency already. A tax authority that takes one currency (CIS:
        EUR) reports this view."""
        base = self.base
        if base is None or base.currency == self.currency:
            return self
        lines = tuple(
            InvoiceLine(
                description=f"{row.name or 'tax'} {row.rate.normalize():f} %",
                quantity=Decimal(1),
                unit_price=row.base,
                tax_rate=row.rate,
                amount=row.base,
                tax_id=row.tax_id,
            )
            for row in base.taxes
        ) + tuple(
            InvoiceLine(
                description=row.name or "untaxed",
                quantity=Decimal(1),
                unit_price=row.base,
                tax_rate=Decimal(0),
                amount=row.base,
                tax_id=row.tax_id,
            )
            for row in base.untaxed
        )
        return self.model_copy(
            update={
                "currency": base.currency,
                "lines": lines,
                "taxes": base.taxes,
                "untaxed": base.untaxed,
                "charges": base.charges,
                "subtotal": base.subtotal,
                "tax_total": base.tax_total,
                "total": base.total,
                "exchange_rate": Decimal(1),
                "base": None,
            }
        )

    def originated_before(self, instant: datetime) -> bool:
        """Whether the invoice existed in the source before `instant`: by its creation
        time when the source gives one, else by its issue time."""
        return (self.created_at or self.issued_at) < instant

    @property
    def version(self) -> str:
        """Identifies this edit of the invoice: the source's last-modified instant."""
        return self.last_modified_at.isoformat()


def _require_sum(
    taxes: tuple[TaxLine, ...],
    untaxed: tuple[UntaxedLine, ...],
    charges: tuple[Charge, ...],
    subtotal: Decimal,
    tax_total: Decimal,
    total: Decimal,
    what: str,
) -> None:
    bases = sum((t.base for t in taxes), Decimal(0)) + sum((u.base for u in untaxed), Decimal(0))
    tax = sum((t.amount for t in taxes), Decimal(0))
    extra = sum((c.amount for c in charges), Decimal(0))
    if bases != subtotal or tax != tax_total or subtotal + tax_total + extra != total:
        raise ValueError(
            f"{what} rows do not add up: bases {bases} (subtotal {subtotal}), tax {tax}"
            f" (tax_total {tax_total}), charges {extra}, total {total}"
        )
