"""OIB, the Croatian personal identification number: 11 digits, the last a check digit."""

from __future__ import annotations


def oib_check_digit(first_ten: str) -> int:
    """ISO 7064 MOD 11,10 check digit over the first ten digits."""
    a = 10
    for char in first_ten:
        a = (a + int(char)) % 10 or 10
        a = (a * 2) % 11
    control = 11 - a
    return 0 if control == 10 else control


def is_valid_oib(value: str) -> bool:
    return (
        len(value) == 11
        and value.isascii()
        and value.isdigit()
        and oib_check_digit(value[:10]) == int(value[10])
    )
