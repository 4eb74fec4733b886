"""Margin scheme and consumption tax (hr-fiscal-record.md, amounts): a Zoho tax the
integration's tax mapping calls `margin` is reported as IznosMarza, one it calls `pnp`
as a Pnp row at its rate; neither ever becomes a Pdv row, at 0.00 or at any rate."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.record import fiscal_record
from fiscal.hr_cis.rejection import InvoiceRejected
from fiscal.hr_cis.settings import FiscalSettings, TaxTreatment
from schemas.invoice import TaxLine, UntaxedLine
from tests.factories import fiscal_number, make_invoice, make_line
from tests.unit.fiscal.conftest import NSMAP

D = Decimal
VAT_TAX, PNP_TAX, MARGIN_TAX = "460000000000301", "460000000000302", "460000000000303"
MAPPING = {PNP_TAX: TaxTreatment(category="pnp"), MARGIN_TAX: TaxTreatment(category="margin")}


def bar_and_used_goods(**overrides: Any) -> Any:
    """100.00 at 25 % VAT, 20.00 under a 3 % consumption tax (Zoho tax PNP 3%), and a
    used watch of 50.00 sold under the margin scheme (a Zoho tax at 0 %)."""
    fields: dict[str, Any] = dict(
        lines=(make_line("Kava", "1", "100.00", "25"), make_line("Pivo", "4", "5.00", "3"),
               make_line("Rabljeni sat", "1", "50.00", "0")),
        taxes=(TaxLine(rate=D(25), base=D("100.00"), amount=D("25.00"), tax_id=VAT_TAX,
                       name="PDV 25%"),
               TaxLine(rate=D(3), base=D("20.00"), amount=D("0.60"), tax_id=PNP_TAX,
                       name="PNP 3%")),
        untaxed=(UntaxedLine(base=D("50.00"), tax_id=MARGIN_TAX, name="Marža"),),
        subtotal=D("170.00"), tax_total=D("25.60"),
    )
    fields.update(overrides)
    return make_invoice(**fields)


def mapped(settings: FiscalSettings) -> FiscalSettings:
    return settings.model_copy(update={"tax_mapping": MAPPING})


def racun_of(document: bytes, assert_schema_valid: Any) -> Any:
    racun = assert_schema_valid(document).find("tns:Racun", NSMAP)
    assert racun is not None
    return racun


def rows(racun: Any, block: str) -> list[tuple[str | None, ...]]:
    return [tuple(porez.findtext(f"tns:{leaf}", namespaces=NSMAP)
                  for leaf in ("Stopa", "Osnovica", "Iznos"))
            for porez in racun.iterfind(f"tns:{block}/tns:Porez", NSMAP)]


def test_margin_and_consumption_tax_go_where_the_mapping_puts_them(
    fiscal_settings: FiscalSettings,
) -> None:
    record = fiscal_record(bar_and_used_goods(), mapped(fiscal_settings))
    assert [(r.rate, r.base, r.amount) for r in record.vat] == [(D(25), D("100.00"),
                                                                  D("25.00"))]
    assert [(r.rate, r.base, r.amount) for r in record.pnp] == [(D(3), D("20.00"), D("0.60"))]
    assert (record.margin, record.exempt, record.not_subject) == (D("50.00"), None, None)
    assert record.total == D("195.60")


def test_the_signed_message_has_pnp_and_iznos_marza_and_no_zero_vat_row(
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
    assert_schema_valid: Any,
) -> None:
    signed = HrCisProfile().sign(bar_and_used_goods(), mapped(fiscal_settings),
                                 demo_certificate, number=fiscal_number())
    racun = racun_of(signed.document, assert_schema_valid)
    assert rows(racun, "Pdv") == [("25.00", "100.00", "25.00")]
    assert rows(racun, "Pnp") == [("3.00", "20.00", "0.60")]
    assert racun.findtext("tns:IznosMarza", namespaces=NSMAP) == "50.00"
    assert racun.findtext("tns:IznosUkupno", namespaces=NSMAP) == "195.60"
    for absent in ("IznosOslobPdv", "IznosNePodlOpor", "Naknade"):
        assert racun.find(f"tns:{absent}", NSMAP) is None, absent
    # Schema order: Pdv, Pnp, then the margin amount.
    order = [etree.QName(child).localname for child in racun]
    assert order.index("Pdv") < order.index("Pnp") < order.index("IznosMarza")


def test_a_margin_only_invoice_has_no_pdv_block_at_all(
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
    assert_schema_valid: Any,
) -> None:
    used = make_invoice(
        lines=(make_line("Rabljeni sat", "1", "850.00", "0"),), taxes=(),
        untaxed=(UntaxedLine(base=D("850.00"), tax_id=MARGIN_TAX, name="Marža"),),
    )
    record = fiscal_record(used, mapped(fiscal_settings))
    assert (record.vat, record.pnp, record.margin) == ((), (), D("850.00"))
    signed = HrCisProfile().sign(used, mapped(fiscal_settings), demo_certificate,
                                 number=fiscal_number())
    racun = racun_of(signed.document, assert_schema_valid)
    assert racun.find("tns:Pdv", NSMAP) is None and racun.find("tns:Pnp", NSMAP) is None
    assert racun.findtext("tns:IznosMarza", namespaces=NSMAP) == "850.00"
    assert racun.findtext("tns:IznosUkupno", namespaces=NSMAP) == "850.00"


def test_without_the_mapping_the_margin_amount_is_refused_not_a_zero_vat_row(
    fiscal_settings: FiscalSettings,
) -> None:
    only_pnp = fiscal_settings.model_copy(update={"tax_mapping": {PNP_TAX: MAPPING[PNP_TAX]}})
    with pytest.raises(InvoiceRejected, match=r"50\.00 EUR without VAT") as caught:
        fiscal_record(bar_and_used_goods(), only_pnp)
    assert caught.value.code == "untaxed_amount_unmapped" and MARGIN_TAX in str(caught.value)


def test_consumption_tax_charged_under_a_margin_mapping_is_a_contradiction(
    fiscal_settings: FiscalSettings,
) -> None:
    # The margin scheme carries no tax of its own: a taxed row mapped to it is refused.
    wrong = {**MAPPING, PNP_TAX: TaxTreatment(category="margin")}
    with pytest.raises(InvoiceRejected, match="margin scheme") as caught:
        fiscal_record(bar_and_used_goods(), fiscal_settings.model_copy(
            update={"tax_mapping": wrong}))
    assert caught.value.code == "tax_mapping_contradiction"
