"""Money and time primitives shared by every contract.

Amounts are `Decimal` and travel as JSON strings, so a round trip through Kafka is
exact; floats are refused at the boundary rather than silently rounded.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer


def _to_decimal(value: Any) -> Any:
    if isinstance(value, float):
        # repr() of a float is the shortest string that round-trips, so a JSON
        # number like 12.5 from a connector becomes Decimal("12.5"), not 12.4999...
        return Decimal(repr(value))
    return value


def _finite(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("amount must be a finite number")
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError("date-time must carry a timezone offset")
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    AfterValidator(_finite),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]
"""An exact decimal quantity serialized as a plain string ("12.50", never 1.25E+1)."""

AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
"""A datetime that must carry its UTC offset."""

CurrencyCode = Annotated[str, AfterValidator(lambda s: _currency(s))]


def _currency(code: str) -> str:
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"currency must be a 3-letter ISO 4217 code, got {code!r}")
    return code.upper()
