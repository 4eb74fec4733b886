"""Reading single values out of Zoho JSON: amounts, ids, texts, flags, dates. Pure.

Zoho writes `""` for an empty value, number-like fields included; amounts arrive as
JSON numbers or strings. Every value becomes a `Decimal` exactly: a float (a payload
already read by a lossy JSON parser) goes through `repr`, the shortest string that
reads back to the same float, never through float arithmetic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from schemas.errors import CodedError

HUNDRED = Decimal(100)
SIX_PLACES = Decimal("0.000001")

# ISO 4217 minor units that differ from 2; Zoho rounds money to the currency's precision.
_MINOR_UNITS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}  # fmt: skip


class InvoiceMappingError(CodedError, ValueError):
    """The payload cannot become a canonical invoice; `code` is stable, the text actionable."""

    def __init__(self, code: str, message: str, *, field: str | None = None):
        super().__init__(message, code=code)
        self.field = field


def exponent_of(currency: str) -> Decimal:
    """The smallest unit of the currency: Decimal("0.01") for EUR, 1 for JPY."""
    return Decimal(1).scaleb(-_MINOR_UNITS.get(currency, 2))


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def amount(value: Any, field: str) -> Decimal:
    if type(value) is Decimal and value.is_finite():
        return value  # what an exact JSON reader gives: the common case, checked first
    if is_empty(value):
        raise InvoiceMappingError("missing_field", f"{field} is missing", field=field)
    if isinstance(value, bool):
        raise InvoiceMappingError(
            "invalid_amount", f"{field} must be a number, got {value!r}", field=field
        )
    try:
        if isinstance(value, float):
            number = Decimal(repr(value))
        elif isinstance(value, int | Decimal):
            number = Decimal(value)
        elif isinstance(value, str):
            number = Decimal(value.strip())
        else:
            raise InvalidOperation
    except InvalidOperation:
        raise InvoiceMappingError(
            "invalid_amount", f"{field} must be a number, got {value!r}", field=field
        ) from None
    if not number.is_finite():
        raise InvoiceMappingError(
            "invalid_amount", f"{field} must be finite, got {value!r}", field=field
        )
    return number


def optional_amount(
    doc: Mapping[str, Any], key: str, field: str | None = None, default: Decimal | None = None
) -> Decimal | None:
    value = doc.get(key)
    if is_empty(value):
        return default
    return amount(value, field or key)


def amount_or_zero(doc: Mapping[str, Any], key: str, field: str | None = None) -> Decimal:
    value = optional_amount(doc, key, field)
    return Decimal(0) if value is None else value


def percent_or_amount(value: Any, base: Decimal, field: str) -> Decimal:
    """Zoho writes a percentage discount as "12.5%" (or "12.50%"), an absolute one as a number."""
    if is_empty(value):
        return Decimal(0)
    if isinstance(value, str) and value.strip().endswith("%"):
        percent = amount(value.strip()[:-1], field)
        if not 0 <= percent <= 100:
            raise InvoiceMappingError(
                "invalid_amount", f"{field} {value!r} is not between 0% and 100%", field=field
            )
        return base * percent / HUNDRED
    number = amount(value, field)
    if number < 0:
        raise InvoiceMappingError("invalid_amount", f"{field} {value!r} is negative", field=field)
    return number


def text(doc: Mapping[str, Any], key: str, field: str | None = None) -> str:
    value = optional_text(doc, key, field)
    if not value:
        raise InvoiceMappingError("missing_field", f"{field or key} is missing", field=field or key)
    return value


def optional_text(doc: Mapping[str, Any], key: str, field: str | None = None) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)  # a custom field typed as a number, e.g. an OIB
    if not isinstance(value, str):
        raise InvoiceMappingError(
            "invalid_field", f"{field or key} must be text, got {value!r}", field=field or key
        )
    return value.strip() or None


def identifier(value: Any, field: str) -> str:
    found = optional_id(value, field)
    if found is None:
        raise InvoiceMappingError("missing_field", f"{field} is missing", field=field)
    return found


def optional_id(value: Any, field: str) -> str | None:
    # Ids reach 19 digits; a float has already lost the last ones, so refuse it.
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvoiceMappingError(
        "invalid_id",
        f"{field} must be a string or an integer, got {value!r}"
        " (read the JSON with exact integers: ids have up to 19 digits)",
        field=field,
    )


def day(value: Any, field: str) -> date:
    if not isinstance(value, str) or not value.strip():
        raise InvoiceMappingError("missing_field", f"{field} is missing", field=field)
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvoiceMappingError(
            "invalid_date", f"{field} {value!r} is not a date like 2025-04-09", field=field
        ) from None


def parse_datetime(value: Any, field: str) -> datetime:
    """Zoho's `2025-04-09T11:25:54-0400` (colon-less offset) -> an aware datetime."""
    if not isinstance(value, str) or not value.strip():
        raise InvoiceMappingError("missing_field", f"{field} is missing", field=field)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvoiceMappingError(
            "invalid_datetime",
            f"{field} {value!r} is not a date-time like 2025-04-09T11:25:54-0400",
            field=field,
        ) from None
    if parsed.tzinfo is None:
        raise InvoiceMappingError(
            "naive_datetime", f"{field} {value!r} has no UTC offset", field=field
        )
    return parsed


def flag(doc: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = doc.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if is_empty(value):
        return default
    raise InvoiceMappingError("invalid_field", f"{key} must be true or false", field=key)


def object_list(doc: Mapping[str, Any], key: str, field: str | None = None) -> list[Any]:
    """A list of objects; absent or "" is an empty list."""
    raw = doc.get(key)
    where = field or key
    if is_empty(raw):
        return []
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise InvoiceMappingError("invalid_field", f"{where} must be a list", field=where)
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise InvoiceMappingError(
                "invalid_field", f"{where}[{index}] must be an object", field=f"{where}[{index}]"
            )
    return list(raw)


def round_to(value: Decimal, exponent: Decimal) -> Decimal:
    return value.quantize(exponent, rounding=ROUND_HALF_UP)


def trim(value: Decimal) -> Decimal:
    """An informative figure to 6 decimals, without trailing zeros."""
    rounded = value.quantize(SIX_PLACES, rounding=ROUND_HALF_UP)
    if rounded == rounded.to_integral_value():
        return rounded.quantize(Decimal(1))
    return rounded.normalize()


def allocate(total: Decimal, weights: Sequence[Decimal], exponent: Decimal) -> list[Decimal]:
    """Split `total` in proportion to `weights`, to `exponent`, summing exactly to `total`."""
    weight_sum = sum(weights, Decimal(0))
    if not weight_sum:
        if total:
            raise InvoiceMappingError(
                "invalid_amount", f"cannot spread {total} over amounts that total zero"
            )
        return [Decimal(0) for _ in weights]
    units = (total / exponent).to_integral_value(ROUND_HALF_UP)
    raw = [units * w / weight_sum for w in weights]
    floors = [r.to_integral_value(ROUND_FLOOR) for r in raw]
    # The floors fall short by fewer units than there are weights (more only with
    # negative weights); hand the missing units out by largest remainder, cycling.
    shortfall = int(units - sum(floors, Decimal(0)))
    order = sorted(range(len(raw)), key=lambda i: raw[i] - floors[i], reverse=True)
    step = 1 if shortfall > 0 else -1
    if step < 0:
        order.reverse()
    for n in range(abs(shortfall)):
        floors[order[n % len(order)]] += step
    return [f * exponent for f in floors]
