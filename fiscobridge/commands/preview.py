"""`fiscobridge preview zoho-invoice FILE [--settings FILE]` — what the fiscalizer would do
with one Zoho document, without signing or sending anything.

It answers an operator's "why was this invoice blocked?": the document (a `GET
/invoices/{id}` or `/creditnotes/{id}` answer, or a webhook body; a top-level
`payments` list, as `GET /invoices/{id}/payments` returns it, and a top-level `contact`,
as `GET /contacts/{id}` returns it, are read too) goes through
the connector's mapping, the fiscalizer's trigger rule and the Croatian profile's
checks (EUR, VAT breakdown, payment method, buyer OIB) under the integration's
settings, and the outcome is printed as JSON with the record that would be reported:
amounts in EUR as strings with two decimals.

Unreadable input (no such file, not JSON, not an object, bad settings) exits with 2.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import click
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.zoho.mapping import (
    InvoiceMappingError,
    MappingOptions,
    map_document,
    payment_mode_key,
    unwrap,
)
from fiscal.hr_cis.formats import cents
from fiscal.hr_cis.record import fiscal_record, out_of_scope
from fiscal.hr_cis.rejection import InvoiceRejected
from fiscal.hr_cis.settings import (
    DEFAULT_PAYMENT_METHODS,
    CisPaymentCode,
    FiscalSettings,
    TaxTreatment,
)
from schemas.invoice import Invoice, PaymentMethod, SourceStatus

UNREADABLE = 2


class PreviewSettings(BaseModel):
    """The integration settings that change the outcome; every one has its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    in_vat_system: bool = True
    payment_methods: dict[PaymentMethod, CisPaymentCode] = Field(
        default_factory=lambda: dict(DEFAULT_PAYMENT_METHODS)
    )
    default_payment_method: PaymentMethod = PaymentMethod.OTHER
    payment_modes: dict[str, PaymentMethod] = Field(default_factory=dict)
    buyer_tax_field: str | None = None
    base_currency: str = "EUR"
    trigger: Literal["issued", "paid"] = "issued"
    # The Croatian profile's own settings, as the integration's fiscal settings hold them.
    payment_mode_codes: dict[str, CisPaymentCode] = Field(default_factory=dict)
    default_payment: CisPaymentCode | None = None
    tax_mapping: dict[str, TaxTreatment] = Field(default_factory=dict)

    @field_validator("payment_modes", mode="before")
    @classmethod
    def _mode_keys(cls, value: Any) -> Any:
        """Zoho's payment_mode as the mapping looks it up (lowercase, no spaces)."""
        if isinstance(value, dict):
            return {payment_mode_key(str(mode)): method for mode, method in value.items()}
        return value

    @model_validator(mode="after")
    def _readable(self) -> PreviewSettings:
        """The read options as an integration stores them (connectors.zoho.mapping)."""
        self.mapping()  # ValueError names the option: a validation error
        return self

    @field_validator("payment_methods")
    @classmethod
    def _complete(cls, value: dict[PaymentMethod, CisPaymentCode]) -> dict[PaymentMethod, Any]:
        return {**DEFAULT_PAYMENT_METHODS, **value}

    def fiscal(self) -> FiscalSettings:
        """The profile settings that decide the record (identity fields are not needed)."""
        return FiscalSettings.model_construct(
            oib="", premises_code="", device_code="", operator_oib="",  # not read
            in_vat_system=self.in_vat_system, payment_methods=self.payment_methods,
            payment_mode_codes=self.payment_mode_codes, default_payment=self.default_payment,
            tax_mapping=self.tax_mapping,
        )

    def mapping(self) -> MappingOptions:
        return MappingOptions(
            default_payment_method=self.default_payment_method,
            payment_modes=self.payment_modes,
            buyer_tax_field=self.buyer_tax_field,
            base_currency=self.base_currency,
        )


def _money(value: Decimal) -> str:
    return format(cents(value), "f")


def _due(status: SourceStatus, trigger: str) -> str | None:
    """Why the fiscalizer would not sign it now (its trigger rule), or None."""
    if status is SourceStatus.DRAFT:
        return "a draft is never fiscalized; it is once it is sent or marked as issued"
    if status is SourceStatus.VOID:
        return "a void document is not fiscalized (one voided after fiscalization is reversed)"
    if trigger == "paid" and status is not SourceStatus.PAID:
        return f"the integration fiscalizes paid invoices only; this one is {status.value}"
    return None


def _record(invoice: Invoice, view: Invoice) -> dict[str, Any]:
    return {
        "kind": invoice.kind.value,
        "number": invoice.number,
        "source_id": invoice.source_id,
        "source_status": invoice.source_status,
        "issued_at": invoice.issued_at.isoformat(),
        "total": _money(view.total),
        "currency": view.currency,
        "vat": [
            {
                "rate": _money(t.rate),
                "base": _money(t.base),
                "amount": _money(t.amount),
                "tax_id": t.tax_id,
            }
            for t in view.taxes
        ],
        "untaxed": [
            {"base": _money(u.base), "tax_id": u.tax_id, "name": u.name} for u in view.untaxed
        ],
        "exempt": "0.00",
        "not_subject": "0.00",
        "charges": [
            {"kind": c.kind.value, "amount": _money(c.amount), "description": c.description}
            for c in view.charges
        ],
        "payment_method": None,
        "payment_modes": [p.mode for p in invoice.payments],
        "buyer_oib": None,
        "buyer_tax_id": invoice.customer.tax_id,
        "buyer_tax_id_source": invoice.customer.tax_id_source,
        "credited": [{"source_id": c.source_id, "number": c.number} for c in invoice.credited],
        "document": {
            "currency": invoice.currency,
            "total": _money(invoice.total),
            "exchange_rate": format(invoice.exchange_rate, "f"),
        },
    }


def preview_document(
    document: Any,
    settings: PreviewSettings,
    payments: list[Any] | None = None,
    contact: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The outcome for one parsed document (its payments and buyer's contact, if known);
    pure."""
    try:
        invoice = map_document(
            document, payments=payments, contact=contact, **settings.mapping().kwargs()
        )
    except InvoiceMappingError as error:
        return {
            "outcome": "blocked",
            "code": f"mapping:{error.code}",
            "reason": str(error),
            "field": error.field,
            "record": None,
        }
    return decide(invoice, settings)


def decide(invoice: Invoice, settings: PreviewSettings) -> dict[str, Any]:
    """The fiscalizer's trigger rule, then the Croatian profile's checks, on the EUR view."""
    view = invoice.in_base_currency()
    record = _record(invoice, view)
    why_not = _due(invoice.status, settings.trigger)
    if why_not is not None:
        return {"outcome": "skipped", "code": "not_due", "reason": why_not, "record": record}
    try:
        fiscal = settings.fiscal()
        outside = out_of_scope(invoice, fiscal)
        if outside is not None:
            return {"outcome": "skipped", "code": "e_invoice", "reason": outside,
                    "record": record}
        # The same figures the profile signs (fiscal/hr_cis/record.py).
        made = fiscal_record(invoice, fiscal)
    except InvoiceRejected as rejected:
        return {
            "outcome": "blocked",
            "code": rejected.code,
            "reason": str(rejected),
            "record": record,
        }
    record.update({
        "total": _money(made.total),
        "vat": [{"rate": _money(r.rate), "base": _money(r.base), "amount": _money(r.amount)}
                for r in made.vat],
        "pnp": [{"rate": _money(r.rate), "base": _money(r.base), "amount": _money(r.amount)}
                for r in made.pnp],
        "exempt": _money(made.exempt or Decimal(0)),
        "not_subject": _money(made.not_subject or Decimal(0)),
        "margin": _money(made.margin or Decimal(0)),
        "fees": [{"name": name, "amount": _money(amount)} for name, amount in made.fees],
        "payment_method": made.payment_code,
        "buyer_oib": made.buyer_oib,
    })
    return {"outcome": "sign", "code": None, "reason": None, "record": record}


def _read_json(path: Path, what: str) -> Any:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"cannot read {what} {path}: {error}") from None
    try:
        # Exact numbers: amounts as Decimal, 19-digit ids as int, never through float.
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise click.ClickException(f"{what} {path} is not JSON: {error}") from None


class _Unreadable(click.ClickException):
    exit_code = UNREADABLE


@click.group("preview")
def preview() -> None:
    """What FiscoBridge would do with a document, without signing or sending anything."""


@preview.command("zoho-invoice")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option(
    "--settings",
    "settings_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the integration's settings as JSON (in_vat_system, payment_methods,"
    " default_payment_method, payment_modes, buyer_tax_field, base_currency, trigger)",
)
def zoho_invoice(file: Path, settings_file: Path | None) -> None:
    """Map one Zoho invoice or credit note (a GET answer or a webhook body) and print the
    outcome (sign | blocked | skipped), the reason and the record, as JSON."""
    try:
        document = _read_json(file, "document")
        try:
            unwrap(document)
        except InvoiceMappingError as error:
            raise click.ClickException(f"{file}: {error}") from None
        settings = PreviewSettings()
        if settings_file is not None:
            raw = _read_json(settings_file, "settings")
            try:
                settings = PreviewSettings.model_validate(raw)
            except ValidationError as error:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                    for e in error.errors()
                )
                raise click.ClickException(f"settings {settings_file}: {problems}") from None
    except click.ClickException as error:
        raise _Unreadable(error.message) from None
    payments = None
    if isinstance(document, dict) and isinstance(document.get("payments"), list):
        payments = document["payments"]
        document = {k: v for k, v in document.items() if k != "payments"}
    contact = None
    if isinstance(document, dict) and isinstance(document.get("contact"), dict):
        contact = document["contact"]  # GET /contacts/{id}'s contact, for the buyer
        document = {k: v for k, v in document.items() if k != "contact"}
    result = preview_document(document, settings, payments, contact)
    click.echo(json.dumps(result, indent=2, ensure_ascii=False))
