"""promijeniPodatkeRacuna: the payment method and/or buyer OIB of a fiscalized invoice,
changed the same day (spec v2.6 §2.1.5; XSD PromijeniPodatkeRacunaZahtjev, RacunPPType).

The request repeats the invoice's data as it was sent in its RacunZahtjev, then names
the new payment method (PromijenjeniNacinPlac) and the new buyer OIB
(PromijenjeniOibPrimateljaRacuna: mandatory, empty to remove it). Only until midnight,
Croatian time, of the day of issue (s011 after that); a message whose invoice data
differ from what was fiscalized is refused (s012). After that day the change is a storno
of the invoice and a new one (§2.1.5): in Zoho, a credit note and a new invoice.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from fiscal.hr_cis import formats
from fiscal.hr_cis.document import NAMESPACE
from fiscal.hr_cis.soap import SIGNATURE

ROOT_ID = "PromijeniPodatkeRacunaZahtjev"


def _tag(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


_RACUN_ZAHTJEV, _CHANGE = _tag("RacunZahtjev"), _tag("PromijeniPodatkeRacunaZahtjev")
_RACUN = _tag("Racun")


@dataclass(frozen=True)
class AsSent:
    """What a change is judged against: the Racun of the invoice as fiscalized."""

    racun: bytes  # the Racun element as sent, serialized (no signature)
    payment_code: str
    buyer_oib: str | None
    issued_at: datetime  # DatVrijeme, Croatian time
    protection_code: str = ""  # ZastKod, the invoice's ZKI

    @classmethod
    def of(cls, signed_request: bytes) -> AsSent:
        """From the signed RacunZahtjev the invoice was fiscalized with."""
        root = etree.fromstring(signed_request)
        if root.tag != _RACUN_ZAHTJEV:
            raise ValueError(f"expected a RacunZahtjev, got {root.tag}")
        racun = root.find(_RACUN)
        if racun is None:
            raise ValueError("the RacunZahtjev has no Racun")
        return cls.of_racun(etree.tostring(racun))

    @classmethod
    def of_racun(cls, racun_bytes: bytes) -> AsSent:
        racun = etree.fromstring(racun_bytes)
        issued = datetime.strptime(racun.findtext(_tag("DatVrijeme")) or "",
                                   "%d.%m.%YT%H:%M:%S").replace(tzinfo=formats.ZAGREB)
        return cls(
            racun=racun_bytes,
            payment_code=racun.findtext(_tag("NacinPlac")) or "",
            buyer_oib=racun.findtext(_tag("OibPrimateljaRacuna")) or None,
            issued_at=issued,
            protection_code=racun.findtext(_tag("ZastKod")) or "",
        )


@dataclass(frozen=True)
class DataChange:
    """The invoice's payment method and buyer OIB as they are now."""

    payment_code: str
    buyer_oib: str | None  # None: the invoice has no business buyer (any OIB is removed)


@dataclass(frozen=True)
class ChangeToday:
    change: DataChange


@dataclass(frozen=True)
class ChangeTooLate:
    """The change came after the day of issue: CIS takes no change any more."""

    reason: str


def decide_change(
    sent: AsSent, now_data: DataChange, now: datetime
) -> ChangeToday | ChangeTooLate | None:
    """None when the payment method and buyer OIB are as fiscalized."""
    if (now_data.payment_code, now_data.buyer_oib) == (sent.payment_code, sent.buyer_oib):
        return None
    if formats.local(now).date() != sent.issued_at.date():
        what = _what_changed(sent, now_data)
        return ChangeTooLate(
            f"The {what} changed after the day of issue "
            f"({sent.issued_at.date().isoformat()}); the tax authority accepts such a change "
            "only until midnight of that day. The fiscalized invoice stands as issued: to "
            "correct it, issue a credit note for it in Zoho Books (FiscoBridge fiscalizes it "
            "as a storno) and a new invoice with the right data."
        )
    return ChangeToday(now_data)


def _what_changed(sent: AsSent, now_data: DataChange) -> str:
    parts = []
    if now_data.payment_code != sent.payment_code:
        parts.append(f"payment method ({sent.payment_code} to {now_data.payment_code})")
    if now_data.buyer_oib != sent.buyer_oib:
        parts.append("buyer's OIB")
    return " and ".join(parts)


def build_change(
    sent: AsSent, change: DataChange, *, message_id: str, sent_at: datetime
) -> etree._Element:
    """The unsigned PromijeniPodatkeRacunaZahtjev (sign it like a RacunZahtjev: the
    signature references the root's Id)."""
    root = etree.Element(_CHANGE, nsmap={"tns": NAMESPACE})
    root.set("Id", ROOT_ID)
    header = etree.SubElement(root, _tag("Zaglavlje"))
    etree.SubElement(header, _tag("IdPoruke")).text = message_id
    etree.SubElement(header, _tag("DatumVrijeme")).text = formats.message_datetime(sent_at)
    racun = copy.deepcopy(etree.fromstring(sent.racun))
    signature = racun.find(SIGNATURE)
    if signature is not None:
        racun.remove(signature)
    root.append(racun)
    etree.SubElement(racun, _tag("PromijenjeniNacinPlac")).text = change.payment_code
    # Mandatory; empty removes the buyer's OIB (XSD: OibPromjenaType).
    etree.SubElement(racun, _tag("PromijenjeniOibPrimateljaRacuna")).text = (
        change.buyer_oib or None
    )
    return root
