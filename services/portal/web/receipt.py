"""What a fiscalized invoice's detail page shows from its evidence: the VAT breakdown and
payment method as the signed request (CIS RacunZahtjev) reported them, and the QR code
that must be printed on the invoice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import segno
from lxml import etree

NAMESPACE = "http://www.apis-it.hr/fin/2012/types/f73"
CIS_ZONE = ZoneInfo("Europe/Zagreb")
QR_BASE = "https://porezna.gov.hr/rn"
PAYMENT_METHODS = {
    "G": "Cash (G)",
    "K": "Card (K)",
    "C": "Cheque (C)",
    "T": "Bank transfer (T)",
    "O": "Other (O)",
}
# Signed requests are our own output, but they are parsed as untrusted text all the same.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _q(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


@dataclass(frozen=True)
class VatRow:
    rate: Decimal
    base: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Reported:
    """The amounts and payment method CIS was told (None: the request is not readable)."""

    vat: list[VatRow]
    total: Decimal | None
    payment_code: str | None

    @property
    def payment_method(self) -> str:
        if self.payment_code is None:
            return "not recorded"
        return PAYMENT_METHODS.get(self.payment_code, self.payment_code)


def reported(signed_request: str | None) -> Reported | None:
    if not signed_request:
        return None
    try:
        root = etree.fromstring(signed_request.encode(), _PARSER)
    except etree.XMLSyntaxError:
        return None
    racun = next(root.iter(_q("Racun")), None)
    if racun is None:
        return None
    rows = []
    try:
        for porez in racun.iterfind(f"{_q('Pdv')}/{_q('Porez')}"):
            rows.append(VatRow(
                rate=Decimal(porez.findtext(_q("Stopa")) or ""),
                base=Decimal(porez.findtext(_q("Osnovica")) or ""),
                amount=Decimal(porez.findtext(_q("Iznos")) or ""),
            ))
        total_text = racun.findtext(_q("IznosUkupno"))
        total = Decimal(total_text) if total_text else None
    except InvalidOperation:
        return None
    return Reported(vat=rows, total=total, payment_code=racun.findtext(_q("NacinPlac")))


def qr_url(*, receipt_id: str | None, protection_code: str | None, issued_at: datetime,
           total_cents: int) -> str | None:
    """The verification URL the QR code encodes: jir= once CIS answered, zki= before;
    datv is the moment of issue in Croatian time, izn the total in cents (negative for a
    storno or credit note)."""
    if receipt_id:
        key = ("jir", receipt_id)
    elif protection_code:
        key = ("zki", protection_code)
    else:
        return None
    local = issued_at.astimezone(CIS_ZONE)
    query = urlencode([key, ("datv", local.strftime("%Y%m%d_%H%M")), ("izn", str(total_cents))])
    return f"{QR_BASE}?{query}"


def qr_svg(url: str, title: str) -> str:
    """The QR code as an inline SVG element (no XML declaration, no script)."""
    code = segno.make(url, error="m", micro=False)
    svg: str = code.svg_inline(scale=4, title=title, svgclass="qr", lineclass=None,
                               dark="#000", light="#fff")
    return svg
