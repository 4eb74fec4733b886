"""Text formats of the CIS messages (FiskalizacijaSchema.xsd simple types).

The ZKI is computed over the same strings the message carries, so both use these.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from fiscal.hr_cis.rejection import InvoiceRejected

# The spec's date-times are those printed on the receipt and checked against "today"
# (an invoice is fiscalized on its issue date), i.e. Croatian civil time.
ZAGREB = ZoneInfo("Europe/Zagreb")
CENT = Decimal("0.01")
_MAX_AMOUNT = Decimal("1e15")  # IznosType: at most 15 integer digits
_MAX_RATE = Decimal("1000")  # StopaType: at most 3 integer digits


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def amount_text(value: Decimal) -> str:
    """IznosType: "-12.50"; rounds half up to cents (and never writes "-0.00")."""
    rounded = cents(value)
    if not rounded:
        rounded = rounded.copy_abs()
    if rounded.copy_abs() >= _MAX_AMOUNT:
        raise InvoiceRejected(
            "amount_out_of_range",
            f"the amount {value} has more than 15 digits before the decimal point,"
            " more than the tax authority accepts",
        )
    # str() of a Decimal with exponent -2 and under 1e15 is never in exponent
    # notation, and is cheaper than format(..., "f").
    return str(rounded)


def rate_text(rate: Decimal) -> str:
    """StopaType: 25 -> "25.00"."""
    quantized = rate.quantize(CENT)
    if rate < 0 or rate >= _MAX_RATE or rate != quantized:
        raise InvoiceRejected(
            "unsupported_tax_rate",
            f"the VAT rate {rate} % cannot be reported: rates are 0 to 999.99 with at most"
            " two decimals; correct the tax on the invoice",
        )
    return str(quantized)


def local(moment: datetime) -> datetime:
    return moment.astimezone(ZAGREB)


def message_datetime(moment: datetime) -> str:
    """DatumVrijemeType: dd.MM.yyyyTHH:mm:ss in Croatian time."""
    return local(moment).strftime("%d.%m.%YT%H:%M:%S")


def zki_datetime_of(message_text: str) -> str:
    """The ZKI input's date-time (spec §12) from the message's text of the same moment
    (`message_datetime`): the same but with a space, so the moment is converted and
    formatted once per invoice."""
    # The T is the only letter of dd.MM.yyyyTHH:mm:ss.
    return message_text.replace("T", " ")
