"""The RacunZahtjev message (FiskalizacijaSchema.xsd v1.9), before it is signed.

Fields arrive already in the message's text formats, so the document carries
exactly the strings the protection code was computed over.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

NAMESPACE = "http://www.apis-it.hr/fin/2012/types/f73"
ROOT_ID = "RacunZahtjev"  # the spec recommends the root element's own name (§7)
_NSMAP = {"tns": NAMESPACE}


def _tag(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


_ROOT = _tag("RacunZahtjev")
_ZAGLAVLJE, _ID_PORUKE, _DATUM_VRIJEME = _tag("Zaglavlje"), _tag("IdPoruke"), _tag("DatumVrijeme")
_RACUN, _OIB, _U_SUST_PDV = _tag("Racun"), _tag("Oib"), _tag("USustPdv")
_DAT_VRIJEME, _OZN_SLIJED, _BR_RAC = _tag("DatVrijeme"), _tag("OznSlijed"), _tag("BrRac")
_BR_OZN_RAC, _OZN_POS_PR, _OZN_NAP_UR = _tag("BrOznRac"), _tag("OznPosPr"), _tag("OznNapUr")
_PDV, _POREZ, _STOPA = _tag("Pdv"), _tag("Porez"), _tag("Stopa")
_OSNOVICA, _IZNOS = _tag("Osnovica"), _tag("Iznos")
_IZNOS_UKUPNO, _NACIN_PLAC, _OIB_OPER = _tag("IznosUkupno"), _tag("NacinPlac"), _tag("OibOper")
_ZAST_KOD, _NAK_DOST = _tag("ZastKod"), _tag("NakDost")
_OIB_PRIMATELJA = _tag("OibPrimateljaRacuna")


@dataclass(frozen=True)
class TaxRowText:
    rate: str
    base: str
    amount: str


@dataclass(frozen=True)
class RacunFields:
    """The Racun element's content, each value as the message writes it."""

    oib: str
    in_vat_system: bool
    issued_at: str  # DatumVrijemeType, Croatian time
    sequence_mark: str
    invoice_number: str  # BrOznRac
    premises_code: str
    device_code: str
    vat: tuple[TaxRowText, ...]
    total: str
    payment_code: str
    operator_oib: str
    protection_code: str
    subsequent_delivery: bool
    buyer_oib: str | None = None


def _text(parent: etree._Element, tag: str, value: str) -> None:
    etree.SubElement(parent, tag).text = value


def _boolean(value: bool) -> str:
    return "true" if value else "false"


def build_request(fields: RacunFields, *, message_id: str, sent_at: str) -> etree._Element:
    """An unsigned RacunZahtjev root element, children in the schema's order."""
    root = etree.Element(_ROOT, nsmap=_NSMAP)
    root.set("Id", ROOT_ID)
    header = etree.SubElement(root, _ZAGLAVLJE)
    _text(header, _ID_PORUKE, message_id)
    _text(header, _DATUM_VRIJEME, sent_at)

    racun = etree.SubElement(root, _RACUN)
    _text(racun, _OIB, fields.oib)
    _text(racun, _U_SUST_PDV, _boolean(fields.in_vat_system))
    _text(racun, _DAT_VRIJEME, fields.issued_at)
    _text(racun, _OZN_SLIJED, fields.sequence_mark)
    number = etree.SubElement(racun, _BR_RAC)
    _text(number, _BR_OZN_RAC, fields.invoice_number)
    _text(number, _OZN_POS_PR, fields.premises_code)
    _text(number, _OZN_NAP_UR, fields.device_code)
    if fields.vat:
        pdv = etree.SubElement(racun, _PDV)
        for row in fields.vat:
            porez = etree.SubElement(pdv, _POREZ)
            _text(porez, _STOPA, row.rate)
            _text(porez, _OSNOVICA, row.base)
            _text(porez, _IZNOS, row.amount)
    _text(racun, _IZNOS_UKUPNO, fields.total)
    _text(racun, _NACIN_PLAC, fields.payment_code)
    _text(racun, _OIB_OPER, fields.operator_oib)
    _text(racun, _ZAST_KOD, fields.protection_code)
    _text(racun, _NAK_DOST, _boolean(fields.subsequent_delivery))
    if fields.buyer_oib is not None:
        _text(racun, _OIB_PRIMATELJA, fields.buyer_oib)
    return root
