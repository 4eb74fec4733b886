"""What a fiscal record says: amounts by category from the integration's tax mapping,
NacinPlac from the payments, the buyer's OIB, and which invoices are not CIS's at all
(shared/design/hr-fiscal-record.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.record import fiscal_record, out_of_scope
from fiscal.hr_cis.rejection import InvoiceRejected
from fiscal.hr_cis.settings import FiscalSettings, TaxTreatment
from schemas.invoice import (
    BaseAmounts,
    Charge,
    ChargeKind,
    Customer,
    Payment,
    PaymentMethod,
    TaxLine,
    UntaxedLine,
)
from tests.factories import fiscal_number, make_invoice, make_line
from tests.unit.fiscal.conftest import NSMAP

D = Decimal
BUYER_OIB = "69435151530"
EXEMPT_TAX, REVERSE_TAX = "460000000000111", "460000000000222"


def mixed(**overrides: Any) -> Any:
    """100.00 at 25 %, 40.00 exempt (a 0 % Zoho tax), 10.00 reverse charge, no tax id 5.00."""
    fields: dict[str, Any] = dict(
        lines=(make_line("Kava", "1", "100.00", "25"), make_line("Tečaj", "1", "40.00", "0"),
               make_line("Usluga EU", "1", "10.00", "0"), make_line("Ostalo", "1", "5.00", "0")),
        taxes=(TaxLine(rate=D(25), base=D("100.00"), amount=D("25.00"), tax_id="4600001"),),
        untaxed=(UntaxedLine(base=D("40.00"), tax_id=EXEMPT_TAX, name="PDV oslobođeno"),
                 UntaxedLine(base=D("10.00"), tax_id=REVERSE_TAX, name="Prijenos"),
                 UntaxedLine(base=D("5.00"))),
        subtotal=D("155.00"), tax_total=D("25.00"),
    )
    fields.update(overrides)
    return make_invoice(**fields)


MAPPING = {
    EXEMPT_TAX: TaxTreatment(category="exempt"),
    REVERSE_TAX: TaxTreatment(category="not_subject"),
    "": TaxTreatment(category="fee", name="Povratna naknada"),
}


def with_(settings: FiscalSettings, **changes: Any) -> FiscalSettings:
    return settings.model_copy(update=changes)


def test_every_amount_goes_where_the_mapping_puts_it(fiscal_settings: FiscalSettings) -> None:
    record = fiscal_record(mixed(), with_(fiscal_settings, tax_mapping=MAPPING))
    assert [(r.rate, r.base, r.amount) for r in record.vat] == [(D(25), D("100.00"),
                                                                  D("25.00"))]
    assert (record.exempt, record.not_subject, record.margin) == (D("40.00"), D("10.00"), None)
    assert record.fees == (("Povratna naknada", D("5.00")),)
    assert record.total == D("180.00")


def test_the_message_carries_the_categories_in_schema_order(
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
    assert_schema_valid: Any,
) -> None:
    signed = HrCisProfile().sign(mixed(), with_(fiscal_settings, tax_mapping=MAPPING),
                                 demo_certificate, number=fiscal_number())
    root = assert_schema_valid(signed.document)
    racun = root.find("tns:Racun", NSMAP)
    assert racun is not None
    assert racun.findtext("tns:IznosOslobPdv", namespaces=NSMAP) == "40.00"
    assert racun.findtext("tns:IznosNePodlOpor", namespaces=NSMAP) == "10.00"
    assert racun.findtext("tns:Naknade/tns:Naknada/tns:NazivN", namespaces=NSMAP) == \
        "Povratna naknada"
    assert racun.findtext("tns:Naknade/tns:Naknada/tns:IznosN", namespaces=NSMAP) == "5.00"
    assert [r.findtext("tns:Stopa", namespaces=NSMAP)
            for r in racun.iterfind("tns:Pdv/tns:Porez", NSMAP)] == ["25.00"]
    assert etree.QName(racun[-1]).localname != "Pdv"


def test_an_untaxed_amount_without_a_mapping_is_refused_never_a_zero_vat_row(
    fiscal_settings: FiscalSettings,
) -> None:
    with pytest.raises(InvoiceRejected, match=r"40\.00 EUR without VAT") as caught:
        fiscal_record(mixed(), fiscal_settings)
    assert caught.value.code == "untaxed_amount_unmapped"
    assert "PDV oslobođeno" in str(caught.value) and EXEMPT_TAX in str(caught.value)
    zero = {**MAPPING, "": TaxTreatment(category="vat", rate=D(0))}
    record = fiscal_record(mixed(), with_(fiscal_settings, tax_mapping=zero))
    assert [(r.rate, r.base) for r in record.vat] == [(D(25), D("100.00")), (D(0), D("5.00"))]


def test_a_mapping_that_contradicts_the_invoice_is_refused(
    fiscal_settings: FiscalSettings,
) -> None:
    taxed_exempt = {"4600001": TaxTreatment(category="exempt"), **MAPPING}
    with pytest.raises(InvoiceRejected) as caught:
        fiscal_record(mixed(), with_(fiscal_settings, tax_mapping=taxed_exempt))
    assert caught.value.code == "tax_mapping_contradiction"


def test_a_charge_outside_the_lines_needs_the_mapping_to_say_what_it_is(
    fiscal_settings: FiscalSettings,
) -> None:
    rounded = mixed(charges=(Charge(kind=ChargeKind.ROUNDING, amount=D("-0.02")),),
                    total=D("179.98"))
    with pytest.raises(InvoiceRejected, match=r"a rounding of -0\.02 EUR outside its lines.*"
                       r"Tax mapping page") as caught:
        fiscal_record(rounded, with_(fiscal_settings, tax_mapping=MAPPING))
    assert caught.value.code == "charge_unmapped"
    placed = {**MAPPING, "charge:rounding": TaxTreatment(category="not_subject")}
    record = fiscal_record(rounded, with_(fiscal_settings, tax_mapping=placed))
    assert record.not_subject == D("9.98") and record.total == D("179.98")


def test_a_foreign_currency_invoice_is_reported_in_euro(fiscal_settings: FiscalSettings) -> None:
    usd = make_invoice(
        currency="USD", exchange_rate=D("0.9"),
        base=BaseAmounts(currency="EUR", taxes=(TaxLine(rate=D(25), base=D("51.03"),
                                                        amount=D("12.76")),),
                         subtotal=D("51.03"), tax_total=D("12.76"), total=D("63.79")),
    )
    record = fiscal_record(usd, fiscal_settings)
    assert record.total == D("63.79")
    assert [(r.base, r.amount) for r in record.vat] == [(D("51.03"), D("12.76"))]


CASH, CARD, TRANSFER = PaymentMethod.CASH, PaymentMethod.CARD, PaymentMethod.BANK_TRANSFER


@pytest.mark.parametrize(
    ("modes", "default", "expected"),
    [
        ((("cash", CASH, "10.00"),), None, "G"),
        ((("creditcard", CARD, "10.00"), ("cash", CASH, "2.00")), None, "K"),  # the largest
        ((("bankremittance", TRANSFER, "10.00"),), None, "T"),
        ((("autotransaction", PaymentMethod.OTHER, "10.00"),), None, "O"),
        ((), "G", "G"),  # no payments: the integration's default
    ],
)
def test_nacin_plac_comes_from_the_payments_or_the_default(
    fiscal_settings: FiscalSettings, modes: tuple[tuple[str, PaymentMethod, str], ...],
    default: str | None, expected: str,
) -> None:
    payments = tuple(Payment(mode=m, method=method, amount=D(a)) for m, method, a in modes)
    invoice = make_invoice(payments=payments)
    settings = with_(fiscal_settings, default_payment=default)
    assert fiscal_record(invoice, settings).payment_code == expected


def test_a_mapped_payment_mode_wins(fiscal_settings: FiscalSettings) -> None:
    invoice = make_invoice(payments=(Payment(mode="Others", method=PaymentMethod.OTHER,
                                             amount=D(1)),))
    settings = with_(fiscal_settings, payment_mode_codes={"others": "K"})
    assert fiscal_record(invoice, FiscalSettings.model_validate(settings.model_dump())
                         ).payment_code == "K"


def test_a_payment_mode_is_one_mode_whatever_its_case_and_spaces(
    fiscal_settings: FiscalSettings,
) -> None:
    """The portal keys a mode as the connector does ("banktransfer"); Zoho may send the
    mode as shown in its UI ("Bank Transfer")."""
    invoice = make_invoice(payments=(Payment(mode="Bank Transfer", method=PaymentMethod.OTHER,
                                             amount=D(1)),))
    for key in ("banktransfer", "Bank Transfer", " bank  transfer "):
        settings = FiscalSettings.model_validate(
            {**fiscal_settings.model_dump(), "payment_mode_codes": {key: "K"}})
        assert settings.payment_mode_codes == {"banktransfer": "K"}
        assert fiscal_record(invoice, settings).payment_code == "K"


def test_a_business_paying_by_transfer_is_an_e_invoice_not_a_cis_invoice(
    fiscal_settings: FiscalSettings,
) -> None:
    buyer = Customer(name="Kupac d.o.o.", tax_id=f"HR{BUYER_OIB}")
    transfer = make_invoice(customer=buyer, payments=(
        Payment(mode="banktransfer", method=PaymentMethod.BANK_TRANSFER, amount=D(1)),))
    reason = out_of_scope(transfer, fiscal_settings)
    assert reason is not None and "e-invoice" in reason and BUYER_OIB in reason
    card = transfer.model_copy(update={"payments": (
        Payment(mode="creditcard", method=PaymentMethod.CARD, amount=D(1)),)})
    assert out_of_scope(card, fiscal_settings) is None
    assert fiscal_record(card, fiscal_settings).buyer_oib == BUYER_OIB
    # a consumer paying by transfer is a CIS invoice, without a buyer OIB
    consumer = transfer.model_copy(update={"customer": Customer(name="Ana")})
    assert out_of_scope(consumer, fiscal_settings) is None
    assert fiscal_record(consumer, fiscal_settings).buyer_oib is None
    # a foreign VAT id is not an OIB
    foreign = transfer.model_copy(update={"customer": Customer(name="X", tax_id="DE123456789")})
    assert out_of_scope(foreign, fiscal_settings) is None
