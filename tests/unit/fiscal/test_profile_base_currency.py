"""A foreign-currency invoice is reported with its EUR figures, mapped from Zoho's bcy_*."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from lxml import etree

from connectors.zoho.mapping import map_document
from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings
from tests.factories import fiscal_number
from tests.unit.fiscal.conftest import NSMAP

FIXTURES = Path(__file__).parents[2] / "fixtures" / "zoho"


def test_a_usd_invoice_is_signed_in_eur(
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate
) -> None:
    document = json.loads((FIXTURES / "invoice_usd.json").read_text(), parse_float=Decimal)
    invoice = map_document(document)
    assert (invoice.currency, invoice.total) == ("USD", Decimal("12.22"))

    signed = HrCisProfile().sign(invoice, fiscal_settings, demo_certificate, number=fiscal_number())
    root = etree.fromstring(signed.document)
    assert root.findtext("tns:Racun/tns:IznosUkupno", namespaces=NSMAP) == "10.52"
    fields = ("Stopa", "Osnovica", "Iznos")
    rows = [
        tuple(row.findtext(f"tns:{name}", namespaces=NSMAP) for name in fields)
        for row in root.iterfind("tns:Racun/tns:Pdv/tns:Porez", NSMAP)
    ]
    assert rows == [("25.00", "6.98", "1.74"), ("5.00", "1.71", "0.09")]
