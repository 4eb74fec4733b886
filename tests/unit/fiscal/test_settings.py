"""Fiscal settings: OIB check digits, the codes the schema allows, payment mapping."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fiscal.hr_cis.oib import is_valid_oib, oib_check_digit
from fiscal.hr_cis.settings import FiscalSettings
from schemas.invoice import PaymentMethod

VALID = dict(oib="69435151530", premises_code="POSL1", device_code="12", operator_oib="47721904125")


def _independent_check_digit(first_ten: str) -> int:
    """ISO 7064 MOD 11,10 written out from the standard's definition."""
    product = 10
    for digit in map(int, first_ten):
        total = (digit + product) % 10
        if total == 0:
            total = 10
        product = (2 * total) % 11
    return (11 - product) % 10


@pytest.mark.parametrize("oib", ["02994650199", "98765432198", "69435151530", "47721904125"])
def test_known_valid_oibs(oib: str) -> None:
    # 02994650199 is APIS IT's own OIB, as it appears in the spec's examples.
    assert is_valid_oib(oib)


@pytest.mark.parametrize(
    "oib", ["02994650190", "0299465019", "029946501990", "0299465019a", "", "٠٢٩٩٤٦٥٠١٩٩"]
)
def test_invalid_oibs(oib: str) -> None:
    assert not is_valid_oib(oib)


@pytest.mark.parametrize("first_ten", ["0000000000", "1234567890", "9999999999", "0299465019"])
def test_check_digit_matches_the_standard(first_ten: str) -> None:
    assert oib_check_digit(first_ten) == _independent_check_digit(first_ten)


def test_valid_settings_and_defaults() -> None:
    settings = FiscalSettings(**VALID)
    assert settings.in_vat_system is True
    assert settings.sequence_mark == "P"
    assert settings.payment_code(PaymentMethod.CASH) == "G"
    assert settings.payment_code(PaymentMethod.CARD) == "K"
    assert settings.payment_code(PaymentMethod.BANK_TRANSFER) == "T"
    assert settings.payment_code(PaymentMethod.CHEQUE) == "O"
    assert settings.payment_code(PaymentMethod.OTHER) == "O"


def test_round_trips_as_json() -> None:
    settings = FiscalSettings(**VALID, payment_methods={PaymentMethod.OTHER: "K"})
    assert FiscalSettings.model_validate_json(settings.model_dump_json()) == settings


def test_a_partial_payment_mapping_keeps_the_other_defaults() -> None:
    settings = FiscalSettings(**VALID, payment_methods={PaymentMethod.BANK_TRANSFER: "O"})
    assert settings.payment_code(PaymentMethod.BANK_TRANSFER) == "O"
    assert settings.payment_code(PaymentMethod.CASH) == "G"


def test_cheque_code_is_no_longer_accepted() -> None:
    # NacinPlacanjaType (XSD v1.9) dropped C: cheques are not fiscalized since 1 Sep 2025.
    with pytest.raises(ValidationError):
        FiscalSettings(**VALID, payment_methods={PaymentMethod.CHEQUE: "C"})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("oib", "69435151531", "check digit"),
        ("oib", "6943515153", "check digit"),
        ("operator_oib", "01234567890", "operator OIB"),
        ("premises_code", "POSL-1", "premises code"),
        ("premises_code", "", "premises code"),
        ("premises_code", "P" * 21, "premises code"),
        ("device_code", "012", "leading zeros"),
        ("device_code", "A1", "device code"),
        ("device_code", "0", "device code"),
        ("sequence_mark", "X", "sequence_mark"),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FiscalSettings(**{**VALID, field: value})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        FiscalSettings.model_validate({**VALID, "premises": "POSL1"})
