"""The canonical invoice: what every connector maps into and every profile reads.

Source ids stay strings (Zoho ids are up to 19 digits, beyond a double's precision).
"""

from __future__ import annotations

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


class Customer(Contract):
    name: str
    source_id: str | None = None
    tax_id: str | None = None
    country: str | None = None


class InvoiceLine(Contract):
    line_id: str | None = None
    description: str
    quantity: Amount
    unit_price: Amount = Field(description="price per unit before discount, excluding tax")
    discount: Amount = Field(default=Decimal("0"), description="discount amount for the line")
    tax_rate: Amount = Field(description="VAT percentage, e.g. 25 for 25 %")
    amount: Amount = Field(description="line net amount after discount, excluding tax")


class TaxLine(Contract):
    """One row of the tax breakdown: everything taxed at one rate."""

    rate: Amount
    base: Amount
    amount: Amount
    name: str | None = None


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

    @model_validator(mode="after")
    def _totals_add_up(self) -> Invoice:
        if self.subtotal + self.tax_total != self.total:
            raise ValueError(
                f"subtotal {self.subtotal} + tax {self.tax_total} != total {self.total}"
            )
        return self

    @property
    def version(self) -> str:
        """Identifies this edit of the invoice: the source's last-modified instant."""
        return self.last_modified_at.isoformat()
