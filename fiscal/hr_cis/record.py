"""What a Croatian fiscal record says about an invoice, decided before anything is signed.

The rules (`shared/design/hr-fiscal-record.md`):

* Amounts are in EUR: a foreign-currency invoice is reported at its base-currency
  figures (Zoho's `bcy_*`, through `Invoice.in_base_currency`).
* Every amount goes where the integration's tax mapping puts it, by the source's tax
  identity (Zoho `tax_id`): a VAT row (Pdv) at a rate, consumption tax (Pnp), exempt
  (IznosOslobPdv), not subject to tax (IznosNePodlOpor), margin scheme (IznosMarza) or a
  fee (Naknade). A taxed row without a mapping is VAT at its own rate. An amount without
  tax, and a charge outside the lines (adjustment, rounding, discount after tax), has no
  category of its own: without a mapping the invoice is refused, naming the tax, never
  reported as a 0.00 VAT row (that says "taxed at 0 %", which is a different supply).
* The stated VAT of a row agrees with its base at its rate within a cent per line (the
  source rounds per line), and everything adds up to the invoice total to the cent.
* NacinPlac comes from the payments recorded on the invoice (the largest one decides)
  through the integration's table of the source's payment modes; without payments, from
  the integration's default.
* The buyer's OIB (HR prefix allowed, ISO 7064 MOD 11,10) is sent with cash and card
  only. A business buyer paying by transfer is an e-invoice (eRacun), not a CIS
  invoice: `out_of_scope` says so and nothing is signed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal

from fiscal.hr_cis.formats import CENT, cents
from fiscal.hr_cis.oib import is_valid_oib
from fiscal.hr_cis.rejection import InvoiceRejected
from fiscal.hr_cis.settings import CisPaymentCode, FiscalSettings, TaxCategory, TaxTreatment
from schemas.invoice import Customer, Invoice, TaxLine, UntaxedLine, payment_mode_key

_ZERO = Decimal(0)
UNTAXED_KEY = ""  # the tax mapping's key for amounts the source gives no tax at all


@dataclass(frozen=True)
class Row:
    rate: Decimal
    base: Decimal
    amount: Decimal


@dataclass(frozen=True)
class FiscalRecord:
    """The figures of one RacunZahtjev, in EUR, rounded to the cent."""

    vat: tuple[Row, ...]
    pnp: tuple[Row, ...]
    exempt: Decimal | None
    not_subject: Decimal | None
    margin: Decimal | None
    fees: tuple[tuple[str, Decimal], ...]
    total: Decimal
    payment_code: CisPaymentCode
    buyer_oib: str | None
    notes: tuple[str, ...] = field(default=())


def buyer_oib(customer: Customer) -> str | None:
    """The customer's OIB when it has one; foreign tax ids are not OIBs."""
    if not customer.tax_id:
        return None
    candidate = customer.tax_id.replace(" ", "").upper().removeprefix("HR")
    if len(candidate) != 11 or not candidate.isascii() or not candidate.isdigit():
        return None
    if not is_valid_oib(candidate):
        raise InvoiceRejected(
            "invalid_buyer_oib",
            f"the customer {customer.name!r} has tax id {customer.tax_id!r}, which is not a"
            " valid OIB (wrong check digit); correct it in the accounting system",
        )
    return candidate


def payment_code(invoice: Invoice, settings: FiscalSettings) -> CisPaymentCode:
    if invoice.payments:
        largest = max(invoice.payments, key=lambda p: abs(p.amount))
        code = settings.payment_mode_codes.get(payment_mode_key(largest.mode))
        return code if code is not None else settings.payment_code(largest.method)
    if settings.default_payment is not None:
        return settings.default_payment
    return settings.payment_code(invoice.payment_method)


def out_of_scope(invoice: Invoice, settings: FiscalSettings) -> str | None:
    """Why the invoice is not a CIS invoice at all (None: it is one)."""
    oib = buyer_oib(invoice.customer)
    if oib is not None and payment_code(invoice, settings) == "T":
        return (
            f"Invoice {invoice.number} is to a business (OIB {oib}) paid by bank transfer: "
            "since 2026 that is an e-invoice (eRacun) exchanged through an information "
            "intermediary, not an invoice for the tax authority's CIS, so FiscoBridge does "
            "not send it. If it was paid in cash or by card, record that payment in Zoho."
        )
    return None


def fiscal_record(invoice: Invoice, settings: FiscalSettings) -> FiscalRecord:
    """The record's figures, or InvoiceRejected with what a bookkeeper has to change."""
    view = invoice.in_base_currency()
    if view.currency != "EUR":
        # Since 1 Jan 2023 the CIS takes amounts in euro only (spec v2.6, changes list).
        raise InvoiceRejected(
            "unsupported_currency",
            f"invoice {invoice.number} is in {invoice.currency} without its euro figures "
            "(the exchange rate); the Croatian tax authority takes invoices in EUR only",
        )
    code = payment_code(invoice, settings)
    # The buyer's OIB goes only with cash and card payments (spec §2.1.1.1, 2026 rules).
    buyer = buyer_oib(view.customer) if code in ("G", "K") else None
    total = cents(view.total)
    if not settings.in_vat_system:
        # Outside the VAT system the record states the total only.
        _require_no_vat(view)
        return FiscalRecord((), (), None, None, None, (), total, code, buyer)

    vat: dict[Decimal, list[Decimal]] = {}
    pnp: dict[Decimal, list[Decimal]] = {}
    sums: dict[TaxCategory, Decimal] = {}
    fees: list[tuple[str, Decimal]] = []
    lines_at: Counter[Decimal] = Counter()
    line_rates: set[Decimal] = set()
    for line in view.lines:
        lines_at[line.tax_rate] += 1
        if line.amount:
            line_rates.add(line.tax_rate)
    # Tax rows as the source states them, or per rate from the lines when it states none.
    taxes = tuple(t for t in view.taxes if t.rate) or _taxes_from_lines(view)
    untaxed = list(view.untaxed)
    bases = [cents(t.base) for t in taxes]
    rest = cents(view.subtotal) - sum(bases, _ZERO) - sum((cents(u.base) for u in untaxed), _ZERO)
    if rest:  # net amounts no tax row accounts for: lines at 0 %, or no tax at all
        untaxed.append(UntaxedLine(base=rest))
    mapping = settings.tax_mapping
    for tax, base in zip(taxes, bases, strict=True):
        if view.lines and tax.rate not in line_rates and tax.amount != 0:
            raise InvoiceRejected(
                "tax_mismatch",
                f"the invoice charges {tax.amount} VAT at {tax.rate} % but no line is taxed "
                f"at {tax.rate} %; correct the taxes of invoice {invoice.number}",
            )
        # A taxed row without a mapping is VAT at its own rate.
        treatment = mapping.get(tax.tax_id) if tax.tax_id and mapping else None
        category = "vat" if treatment is None else treatment.category
        stated = cents(tax.amount)
        if category in ("vat", "pnp"):
            rate = tax.rate if treatment is None or treatment.rate is None else treatment.rate
            _require_consistent(view, tax.name or tax.tax_id, rate, base, stated,
                                max(1, lines_at[tax.rate]))
            acc = (vat if category == "vat" else pnp).setdefault(rate, [_ZERO, _ZERO])
            acc[0] += base
            acc[1] += stated
        elif stated != 0:
            raise InvoiceRejected(
                "tax_mapping_contradiction",
                f"invoice {invoice.number} charges {stated} tax under "
                f"{_name(tax.name, tax.tax_id)}, which the integration's tax mapping calls "
                f"{_CATEGORY_NAMES[category]}; such a supply carries no VAT. "
                "Correct the tax on the invoice or the mapping",
            )
        else:
            assert treatment is not None
            _add(sums, fees, treatment, base)
    for row in untaxed:
        key = row.tax_id or UNTAXED_KEY
        mapped = settings.tax_mapping.get(key)
        if mapped is None:
            raise InvoiceRejected(
                "untaxed_amount_unmapped",
                f"invoice {invoice.number} has {cents(row.base)} EUR without VAT "
                f"({_name(row.name, row.tax_id)}). The tax authority must be told "
                "whether that is exempt, not subject to VAT, the margin scheme or VAT at "
                "0 %: say it on the integration's Tax mapping page in the Client Portal, "
                "and the invoice is read again from Zoho Books and fiscalized",
            )
        base = cents(row.base)
        if mapped.category in ("vat", "pnp"):
            rate = mapped.rate if mapped.rate is not None else _ZERO
            if rate != 0:
                raise InvoiceRejected(
                    "tax_mapping_contradiction",
                    f"invoice {invoice.number} has {base} EUR without tax under "
                    f"{_name(row.name, row.tax_id)}, which the tax mapping calls "
                    f"{mapped.category.upper()} at {rate} %; correct the mapping",
                )
            acc = (vat if mapped.category == "vat" else pnp).setdefault(rate, [_ZERO, _ZERO])
            acc[0] += base
        else:
            _add(sums, fees, mapped, base)
    _place_charges(view, settings, sums, fees)
    rows_total = sum((b + a for b, a in vat.values()), _ZERO)
    rows_total += sum((b + a for b, a in pnp.values()), _ZERO)
    rows_total += sum(sums.values(), _ZERO) + sum((a for _, a in fees), _ZERO)
    _require_total(view, total, rows_total)
    return FiscalRecord(
        vat=tuple(Row(r, b, a) for r, (b, a) in sorted(vat.items(), reverse=True)),
        pnp=tuple(Row(r, b, a) for r, (b, a) in sorted(pnp.items(), reverse=True)),
        exempt=sums.get("exempt"),
        not_subject=sums.get("not_subject"),
        margin=sums.get("margin"),
        fees=tuple(fees),
        total=total,
        payment_code=code,
        buyer_oib=buyer,
    )


_CATEGORY_NAMES: dict[str, str] = {
    "exempt": "exempt from VAT",
    "not_subject": "not subject to VAT",
    "margin": "the margin scheme",
    "fee": "a fee (Naknade)",
}


def _taxes_from_lines(invoice: Invoice) -> tuple[TaxLine, ...]:
    """Rows per rate from the lines, for a producer that states no tax rows: the tax
    of each rate is its net base at that rate rounded half up."""
    bases: dict[Decimal, Decimal] = {}
    for line in invoice.lines:
        if line.tax_rate:
            bases[line.tax_rate] = bases.get(line.tax_rate, _ZERO) + line.amount
    return tuple(
        TaxLine(rate=rate, base=cents(base), amount=cents(cents(base) * rate / 100))
        for rate, base in sorted(bases.items(), reverse=True)
    )


def _name(name: str | None, tax_id: str | None) -> str:
    if name and tax_id:
        return f"tax {name!r}, id {tax_id}"
    if name or tax_id:
        return f"tax {name or tax_id!r}"
    return "no tax at all"


def _add(sums: dict[TaxCategory, Decimal], fees: list[tuple[str, Decimal]],
         treatment: TaxTreatment, amount: Decimal) -> None:
    if treatment.category == "fee":
        fees.append((treatment.name or "Naknada", amount))
    else:
        sums[treatment.category] = sums.get(treatment.category, _ZERO) + amount


def _place_charges(view: Invoice, settings: FiscalSettings, sums: dict[TaxCategory, Decimal],
                   fees: list[tuple[str, Decimal]]) -> None:
    """Charges outside the lines, placed where the mapping says (key `charge:<kind>`)."""
    for charge in view.charges:
        amount = cents(charge.amount)
        if amount == 0:
            continue
        treatment = settings.tax_mapping.get(f"charge:{charge.kind.value}")
        if treatment is None or treatment.category in ("vat", "pnp"):
            raise InvoiceRejected(
                "charge_unmapped",
                f"invoice {view.number} has a {charge.kind.value.replace('_', ' ')} of "
                f"{amount} EUR outside its lines. A fiscal record has no field for it unless "
                "the integration says what it is (e.g. not subject to VAT) on its Tax "
                "mapping page in the Client Portal, and the invoice is then read again and "
                "fiscalized; otherwise make it an invoice line with its tax in Zoho Books",
            )
        _add(sums, fees, treatment, amount)


def _require_consistent(invoice: Invoice, name: str | None, rate: Decimal, base: Decimal,
                        stated: Decimal, lines: int) -> None:
    computed = cents(base * rate / 100)
    if abs(stated - computed) > CENT * lines:
        raise InvoiceRejected(
            "tax_mismatch",
            f"invoice {invoice.number} states {stated} VAT at {rate} % ({name or 'tax'}), but"
            f" its base at that rate is {base}, which gives {computed} VAT; correct the "
            "invoice's taxes or lines",
        )


def _require_no_vat(invoice: Invoice) -> None:
    if invoice.tax_total != 0 or any(t.amount != 0 for t in invoice.taxes):
        raise InvoiceRejected(
            "vat_outside_vat_system",
            f"invoice {invoice.number} charges VAT ({invoice.tax_total}) but the business is"
            " set up as outside the VAT system; remove the VAT from the invoice or change"
            " the integration's VAT setting",
        )


def _require_total(invoice: Invoice, total: Decimal, rows: Decimal) -> None:
    if rows != total:
        raise InvoiceRejected(
            "totals_mismatch",
            f"invoice {invoice.number} totals {total} EUR, but what it is made of comes to "
            f"{rows} EUR; the record would contradict the invoice, so it is not sent",
        )
