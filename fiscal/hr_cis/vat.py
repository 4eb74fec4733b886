"""The VAT breakdown (Pdv) the CIS receives: one row per rate, in cents.

How the figures are chosen, and why:

* Base per rate = the sum of the net line amounts at that rate, rounded half up
  to cents. The lines are the invoice; a source's own "taxable amount" fields are
  not always present.
* VAT per rate = the accounting system's tax for that rate when it agrees with
  base x rate rounded half up, within one cent per line at that rate. Accounting
  systems round tax per line and then add, so the customer's invoice may show a
  few cents more or less than one rounding per rate would give; the CIS must get
  what the invoice shows. A larger difference means the breakdown does not follow
  from the lines (a tax the lines do not carry, a hand-edited amount): the
  invoice is rejected with both figures rather than fiscalized with numbers that
  contradict it. Without a source breakdown the recomputed tax is used.
* The rows must add up to the invoice total exactly; otherwise the invoice is
  rejected (for example a shipping charge or adjustment that is not a line).
* Zero-rated lines are a row with rate 0.00 and VAT 0.00, as in the spec's
  example message (§2.1.2.1). The canonical invoice does not tell VAT-exempt
  supplies (IznosOslobPdv) from zero-rated ones, so it reports them as the latter.
* A business outside the VAT system sends no Pdv block and may not charge VAT.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from fiscal.hr_cis.formats import CENT, cents
from fiscal.hr_cis.rejection import InvoiceRejected
from schemas.invoice import Invoice

_ZERO = Decimal(0)


@dataclass(frozen=True)
class VatRow:
    rate: Decimal
    base: Decimal
    amount: Decimal


def vat_breakdown(invoice: Invoice, *, in_vat_system: bool) -> tuple[VatRow, ...]:
    """Rows for the Pdv block, highest rate first; empty outside the VAT system."""
    bases: dict[Decimal, Decimal] = {}
    line_counts: dict[Decimal, int] = {}
    for line in invoice.lines:
        rate = line.tax_rate
        bases[rate] = bases.get(rate, _ZERO) + line.amount
        line_counts[rate] = line_counts.get(rate, 0) + 1
    source: dict[Decimal, Decimal] = {}
    for tax in invoice.taxes:
        source[tax.rate] = source.get(tax.rate, _ZERO) + tax.amount

    if not in_vat_system:
        _require_no_vat(invoice, source)
        _require_total(invoice, cents(sum(bases.values(), _ZERO)), _ZERO)
        return ()

    for rate, amount in source.items():
        if rate not in bases and amount != 0:
            raise InvoiceRejected(
                "tax_mismatch",
                f"the invoice charges {amount} VAT at {rate} % but no line is taxed at"
                f" {rate} %; correct the taxes of invoice {invoice.number}",
            )
    has_source = bool(invoice.taxes)
    rows = []
    net = vat = _ZERO
    for rate in sorted(bases, reverse=True):
        base = cents(bases[rate])
        computed = cents(base * rate / 100)
        amount = computed
        if has_source:
            stated = cents(source.get(rate, _ZERO))
            if abs(stated - computed) > CENT * line_counts[rate]:
                raise InvoiceRejected(
                    "tax_mismatch",
                    f"invoice {invoice.number} states {stated} VAT at {rate} %, but its lines"
                    f" at that rate come to {base} net, which gives {computed} VAT;"
                    " correct the invoice's taxes or lines",
                )
            amount = stated
        rows.append(VatRow(rate=rate, base=base, amount=amount))
        net += base
        vat += amount
    _require_total(invoice, net, vat)
    return tuple(rows)


def _require_no_vat(invoice: Invoice, source: dict[Decimal, Decimal]) -> None:
    charged = sum(source.values(), _ZERO)
    if charged != 0 or invoice.tax_total != 0:
        raise InvoiceRejected(
            "vat_outside_vat_system",
            f"invoice {invoice.number} charges VAT ({invoice.tax_total}) but the business is"
            " set up as outside the VAT system; remove the VAT from the invoice or change"
            " the integration's VAT setting",
        )


def _require_total(invoice: Invoice, net: Decimal, vat: Decimal) -> None:
    if net + vat != cents(invoice.total):
        raise InvoiceRejected(
            "totals_mismatch",
            f"invoice {invoice.number} totals {cents(invoice.total)}, but its lines come to"
            f" {net} net plus {vat} VAT = {net + vat}; charges outside the lines (shipping,"
            " adjustments) must be invoice lines to be fiscalized",
        )
