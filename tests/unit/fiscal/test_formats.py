"""The CIS text formats of amounts, rates and times."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fiscal.hr_cis.formats import (
    amount_text,
    message_datetime,
    rate_text,
    zki_datetime_of,
)
from fiscal.hr_cis.rejection import InvoiceRejected


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0", "0.00"),
        ("12.5", "12.50"),
        ("2.345", "2.35"),
        ("2.344999", "2.34"),
        ("-1.005", "-1.01"),
        ("-0.004", "0.00"),
        ("999999999999999.99", "999999999999999.99"),
        ("1E+2", "100.00"),
        ("-0", "0.00"),
    ],
)
def test_amounts_round_half_up_to_cents(value: str, text: str) -> None:
    assert amount_text(Decimal(value)) == text


def test_amounts_beyond_fifteen_digits_are_rejected() -> None:
    with pytest.raises(InvoiceRejected) as caught:
        amount_text(Decimal("1000000000000000"))
    assert caught.value.code == "amount_out_of_range"


@pytest.mark.parametrize(
    ("rate", "text"), [("25", "25.00"), ("5.5", "5.50"), ("0", "0.00"), ("1E+1", "10.00")]
)
def test_rates(rate: str, text: str) -> None:
    assert rate_text(Decimal(rate)) == text


@pytest.mark.parametrize("rate", ["-5", "1000", "12.345"])
def test_rates_the_schema_cannot_carry_are_rejected(rate: str) -> None:
    with pytest.raises(InvoiceRejected) as caught:
        rate_text(Decimal(rate))
    assert caught.value.code == "unsupported_tax_rate"


def test_message_and_zki_date_times_differ_only_in_the_separator() -> None:
    moment = datetime(2026, 3, 29, 1, 30, 0, tzinfo=UTC)  # CEST starts at 01:00 UTC that day
    assert message_datetime(moment) == "29.03.2026T03:30:00"
    assert zki_datetime_of(message_datetime(moment)) == "29.03.2026 03:30:00"
    assert zki_datetime_of("29.03.2026T03:30:00") == "29.03.2026 03:30:00"
