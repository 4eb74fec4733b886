"""The verification URL a fiscalized invoice's QR code encodes (mandatory since 2021).

`https://porezna.gov.hr/rn?jir=<JIR>&datv=<YYYYMMDD_HHMM>&izn=<cents>`: datv is the
moment of issue in Croatian local time, izn the total in euro cents as an integer
without separators (negative for a storno); before a JIR exists, `zki=` instead.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

CIS_ZONE = ZoneInfo("Europe/Zagreb")
QR_BASE = "https://porezna.gov.hr/rn"


def cents(amount: Decimal) -> int:
    """Euro cents of an amount, rounded half away from zero (-1,525.995 -> -152600)."""
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def verification_url(
    *, receipt_id: str | None, protection_code: str | None, issued_at: datetime,
    total: Decimal,
) -> str:
    if issued_at.tzinfo is None:
        # A naive time would be read as the host's zone: the rule is Zagreb time.
        raise ValueError("the moment of issue must carry its time zone")
    if receipt_id:
        key = ("jir", receipt_id)
    elif protection_code:
        key = ("zki", protection_code)
    else:
        raise ValueError("a verification URL needs the JIR or, before it, the ZKI")
    local = issued_at.astimezone(CIS_ZONE)
    query = urlencode([key, ("datv", local.strftime("%Y%m%d_%H%M")), ("izn", str(cents(total)))])
    return f"{QR_BASE}?{query}"
