"""build_request: copies of a prebuilt skeleton must be documents of their own."""

from __future__ import annotations

from lxml import etree

from fiscal.hr_cis.document import build_request
from tests.unit.fiscal.conftest import NSMAP, VAT_ROWS
from tests.unit.fiscal.conftest import racun_fields as fields


def leaves(root: etree._Element) -> list[tuple[str, str | None]]:
    return [(etree.QName(e).localname, e.text) for e in root.iter() if len(e) == 0]


def test_every_field_lands_in_its_element_whatever_the_shape() -> None:
    for rows, buyer in [(3, None), (0, "98765432198"), (1, None), (3, "98765432198"), (0, None)]:
        root = build_request(fields(rows, buyer), message_id="m-1", sent_at="25.11.2026T10:31:00")
        expected = [
            ("IdPoruke", "m-1"),
            ("DatumVrijeme", "25.11.2026T10:31:00"),
            ("Oib", "69435151530"),
            ("USustPdv", "true" if rows else "false"),
            ("DatVrijeme", "25.11.2026T10:30:00"),
            ("OznSlijed", "N"),
            ("BrOznRac", "123"),
            ("OznPosPr", "POSL1"),
            ("OznNapUr", "12"),
        ]
        for row in VAT_ROWS[:rows]:
            expected += [("Stopa", row.rate), ("Osnovica", row.base), ("Iznos", row.amount)]
        expected += [
            ("IznosUkupno", "1.00"),
            ("NacinPlac", "G"),
            ("OibOper", "47721904125"),
            ("ZastKod", "e4d909c290d0fb1ca068ffaddf22cbd0"),
            ("NakDost", "true"),
        ]
        if buyer is not None:
            expected.append(("OibPrimateljaRacuna", buyer))
        assert leaves(root) == expected
        assert (root.find("tns:Racun/tns:Pdv", NSMAP) is None) == (rows == 0)
        assert root.get("Id") == "RacunZahtjev"


def test_documents_share_nothing() -> None:
    first = build_request(fields(2), message_id="m-1", sent_at="s")
    first.append(etree.Element("extra"))
    first[1][0].text = "changed"
    second = build_request(fields(2, total="2.00"), message_id="m-2", sent_at="s")
    assert second.find("extra") is None
    assert second[1][0].text == "69435151530"
    assert second.getparent() is None
    assert leaves(second)[0] == ("IdPoruke", "m-2")
