"""HrCisProfile.sign: every message it produces must satisfy the tax authority's XML
schema and an independent signature verifier (xmlsec1), and say what the invoice says."""

from __future__ import annotations

import base64
import re
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from fiscal.hr_cis.certificate import (
    CertificateExpired,
    FiscalCertificate,
    OibMismatch,
    load_certificate,
)
from fiscal.hr_cis.profile import HrCisProfile, InvoiceRejected, SignedInvoice
from fiscal.hr_cis.settings import FiscalSettings, TaxTreatment
from sandbox.cis.ca import TestCA
from schemas.invoice import Customer, PaymentMethod, TaxLine
from tests.factories import fiscal_number, make_invoice, make_line
from tests.fixtures.certs import Pfx
from tests.unit.fiscal.conftest import NSMAP, Verify

N = fiscal_number()  # the number every document here carries unless a test says otherwise


def numbered(*args: Any, **options: Any) -> SignedInvoice:
    return profile.sign(*args, number=N, **options)

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
BUYER_OIB = "98765432198"
NEXT = datetime.now(UTC).year + 1

profile = HrCisProfile()


class Expect(NamedTuple):
    number: str
    pay: str
    rows: list[tuple[str, str, str]] | None  # None: not this scenario's point
    late: str
    buyer: str | None


CheckSchema = Callable[[bytes], etree._Element]


def text(root: etree._Element, path: str) -> str | None:
    return root.findtext(path, namespaces=NSMAP)


def vat_rows(root: etree._Element) -> list[tuple[str, str, str]]:
    return [
        (
            text(row, "tns:Stopa") or "",
            text(row, "tns:Osnovica") or "",
            text(row, "tns:Iznos") or "",
        )
        for row in root.iterfind("tns:Racun/tns:Pdv/tns:Porez", NSMAP)
    ]


def in_vat(settings: FiscalSettings, **changes: Any) -> FiscalSettings:
    return settings.model_copy(update=changes)


# (scenario id, invoice overrides, settings changes, sign() keyword arguments)
SCENARIOS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("three_vat_rates_card", {}, {}, {}),
    (
        "outside_vat_system",
        {"lines": (make_line("Bookkeeping, November", "1", "450.00", "0"),), "taxes": ()},
        {"in_vat_system": False},
        {},
    ),
    (
        "zero_rated_lines",
        {
            "lines": (
                make_line("Espresso blend 1 kg", "2", "18.90", "25"),
                make_line("Textbook", "1", "32.00", "0"),
            )
        },
        # the integration says its untaxed amounts are VAT at 0 %: only then a 0.00 row
        {"tax_mapping": {"": TaxTreatment(category="vat", rate=Decimal(0))}},
        {},
    ),
    (
        "cash_b2b_with_buyer_oib",
        {
            "payment_method": PaymentMethod.CASH,
            "customer": Customer(name="Kavana Trg d.o.o.", tax_id=f"HR{BUYER_OIB}", country="HR"),
        },
        {},
        {},
    ),
    (
        "subsequent_delivery",
        {"payment_method": PaymentMethod.CASH},
        {},
        {"subsequent_delivery": True},
    ),
    (
        "bank_transfer",
        {
            "payment_method": PaymentMethod.BANK_TRANSFER,
            "customer": Customer(name="Kavana Trg d.o.o.", tax_id=BUYER_OIB),
        },
        {"sequence_mark": "N"},
        {},
    ),
    (
        "credit_note",
        {
            "number": "CN-00007",
            "lines": (make_line("Return: espresso blend", "-1", "18.90", "25"),),
        },
        {},
        {},
    ),
]


@pytest.fixture(params=SCENARIOS, ids=[scenario[0] for scenario in SCENARIOS])
def produced(
    request: pytest.FixtureRequest,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> tuple[str, SignedInvoice, dict[str, Any], FiscalSettings]:
    name, overrides, changes, options = request.param
    settings = in_vat(fiscal_settings, **changes)
    invoice = make_invoice(**overrides)
    signed = profile.sign(invoice, settings, demo_certificate, **options, number=N)
    return name, signed, overrides, settings


def test_every_message_is_schema_valid_and_verifies(
    produced: tuple[str, SignedInvoice, dict[str, Any], FiscalSettings],
    assert_schema_valid: CheckSchema,
    xmlsec_verify: Verify,
) -> None:
    _, signed, _, _ = produced
    assert_schema_valid(signed.document)
    result = xmlsec_verify(signed.document)
    assert result.returncode == 0, result.stderr
    assert "SignedInfo References (ok/all): 1/1" in result.stderr


def test_every_message_says_what_the_invoice_says(
    produced: tuple[str, SignedInvoice, dict[str, Any], FiscalSettings],
) -> None:
    name, signed, overrides, settings = produced
    invoice = make_invoice(**overrides)
    root = etree.fromstring(signed.document)

    assert text(root, "tns:Zaglavlje/tns:IdPoruke") == signed.message_id
    assert text(root, "tns:Racun/tns:Oib") == settings.oib
    assert text(root, "tns:Racun/tns:USustPdv") == ("true" if settings.in_vat_system else "false")
    assert text(root, "tns:Racun/tns:OznSlijed") == settings.sequence_mark
    assert text(root, "tns:Racun/tns:BrRac/tns:OznPosPr") == settings.premises_code
    assert text(root, "tns:Racun/tns:BrRac/tns:OznNapUr") == settings.device_code
    assert text(root, "tns:Racun/tns:OibOper") == settings.operator_oib
    assert text(root, "tns:Racun/tns:ZastKod") == signed.protection_code
    total = text(root, "tns:Racun/tns:IznosUkupno")
    assert total is not None and Decimal(total) == invoice.total.quantize(Decimal("0.01"))
    rows = vat_rows(root)
    # The breakdown adds up to the total (bases + VAT), to the cent.
    if settings.in_vat_system:
        assert sum(Decimal(base) + Decimal(amount) for _, base, amount in rows) == Decimal(total)
    else:
        assert root.find("tns:Racun/tns:Pdv", NSMAP) is None

    expected = {
        "three_vat_rates_card": Expect(
            number="123",
            pay="K",
            rows=[
                ("25.00", "56.70", "14.18"),
                ("13.00", "27.70", "3.60"),
                ("5.00", "14.28", "0.71"),
            ],
            late="false",
            buyer=None,
        ),
        "outside_vat_system": Expect(number="123", pay="K", rows=[], late="false", buyer=None),
        "zero_rated_lines": Expect(
            number="123",
            pay="K",
            rows=[("25.00", "37.80", "9.45"), ("0.00", "32.00", "0.00")],
            late="false",
            buyer=None,
        ),
        "cash_b2b_with_buyer_oib": Expect(
            number="123", pay="G", rows=None, late="false", buyer=BUYER_OIB
        ),
        "subsequent_delivery": Expect(number="123", pay="G", rows=None, late="true", buyer=None),
        "bank_transfer": Expect(number="123", pay="T", rows=None, late="false", buyer=None),
        "credit_note": Expect(
            number="123", pay="K", rows=[("25.00", "-18.90", "-4.73")], late="false", buyer=None
        ),
    }[name]
    assert text(root, "tns:Racun/tns:BrRac/tns:BrOznRac") == expected.number
    assert text(root, "tns:Racun/tns:NacinPlac") == expected.pay
    assert text(root, "tns:Racun/tns:NakDost") == expected.late
    assert text(root, "tns:Racun/tns:OibPrimateljaRacuna") == expected.buyer
    if expected.rows is not None:
        assert rows == expected.rows


def test_signature_is_as_the_spec_prescribes(
    demo_certificate: FiscalCertificate, fiscal_settings: FiscalSettings
) -> None:
    root = etree.fromstring(
        profile.sign(make_invoice(), fiscal_settings, demo_certificate, number=N).document
    )
    assert root.get("Id") == "RacunZahtjev"
    signature = root[-1]
    assert signature.tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"
    info = signature.find("ds:SignedInfo", NSMAP)
    assert info is not None
    assert info.find("ds:CanonicalizationMethod", NSMAP).get("Algorithm") == EXC_C14N  # type: ignore[union-attr]
    assert info.find("ds:SignatureMethod", NSMAP).get("Algorithm") == RSA_SHA256  # type: ignore[union-attr]
    references = info.findall("ds:Reference", NSMAP)
    assert len(references) == 1 and references[0].get("URI") == "#RacunZahtjev"
    transforms = [
        t.get("Algorithm") for t in references[0].iterfind("ds:Transforms/ds:Transform", NSMAP)
    ]
    assert transforms == [ENVELOPED, EXC_C14N]
    assert references[0].find("ds:DigestMethod", NSMAP).get("Algorithm") == SHA256  # type: ignore[union-attr]

    data = signature.find("ds:KeyInfo/ds:X509Data", NSMAP)
    assert data is not None
    der = base64.b64decode(text(data, "ds:X509Certificate") or "")
    assert der == demo_certificate.certificate.public_bytes(serialization.Encoding.DER)
    assert text(data, "ds:X509IssuerSerial/ds:X509IssuerName") == demo_certificate.issuer
    assert text(data, "ds:X509IssuerSerial/ds:X509SerialNumber") == str(demo_certificate.serial)


def test_serialized_as_utf8_without_declaration(
    demo_certificate: FiscalCertificate, fiscal_settings: FiscalSettings
) -> None:
    document = profile.sign(make_invoice(), fiscal_settings, demo_certificate, number=N).document
    assert document.startswith(b"<tns:RacunZahtjev ")
    document.decode("utf-8")


@pytest.mark.parametrize(
    ("original", "forged"),
    [
        (b"<tns:IznosUkupno>117.17<", b"<tns:IznosUkupno>17.17<"),
        (b"<tns:BrOznRac>123<", b"<tns:BrOznRac>124<"),
        (b"<tns:NacinPlac>K<", b"<tns:NacinPlac>G<"),
    ],
)
def test_a_tampered_message_fails_verification(
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
    xmlsec_verify: Verify,
    original: bytes,
    forged: bytes,
) -> None:
    document = profile.sign(make_invoice(), fiscal_settings, demo_certificate, number=N).document
    assert original in document
    result = xmlsec_verify(document.replace(original, forged))
    assert result.returncode != 0


def test_a_forged_signature_value_fails_verification(
    demo_certificate: FiscalCertificate, fiscal_settings: FiscalSettings, xmlsec_verify: Verify
) -> None:
    root = etree.fromstring(
        profile.sign(make_invoice(), fiscal_settings, demo_certificate, number=N).document
    )
    value = root.find("ds:Signature/ds:SignatureValue", NSMAP)
    assert value is not None and value.text
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 0x01
    value.text = base64.b64encode(bytes(raw)).decode()
    assert xmlsec_verify(etree.tostring(root)).returncode != 0


def test_a_certificate_from_an_untrusted_ca_fails_verification(
    foreign_pfx: Pfx, fiscal_settings: FiscalSettings, xmlsec_verify: Verify, test_ca: TestCA
) -> None:
    foreign = load_certificate(foreign_pfx.data, foreign_pfx.password)
    document = profile.sign(make_invoice(), fiscal_settings, foreign, number=N).document
    assert xmlsec_verify(document, ca=test_ca).returncode != 0


def test_signature_survives_embedding_in_a_soap_envelope(
    demo_certificate: FiscalCertificate, fiscal_settings: FiscalSettings, xmlsec_verify: Verify
) -> None:
    # Exclusive c14n keeps the envelope's namespace declarations out of the digest.
    document = profile.sign(make_invoice(), fiscal_settings, demo_certificate, number=N).document
    envelope = (
        b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        b' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        b"<soapenv:Body>" + document + b"</soapenv:Body></soapenv:Envelope>"
    )
    result = xmlsec_verify(envelope)
    assert result.returncode == 0, result.stderr


def test_message_ids_are_fresh_lowercase_uuids(
    demo_certificate: FiscalCertificate, fiscal_settings: FiscalSettings
) -> None:
    invoice = make_invoice()
    first = profile.sign(invoice, fiscal_settings, demo_certificate, number=N)
    again = numbered(invoice, fiscal_settings, demo_certificate, subsequent_delivery=True)
    assert first.message_id != again.message_id
    for signed in (first, again):
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", signed.message_id
        )
        assert str(uuid.UUID(signed.message_id)) == signed.message_id
    # Same invoice, same protection code: the ZKI does not depend on the message.
    assert first.protection_code == again.protection_code


@pytest.mark.parametrize(
    ("issued_at", "issued_text", "sent_text"),
    [
        # CET (UTC+1), CEST (UTC+2), and an instant that is already the next day there;
        # all next year, within the demo certificate's validity (today + 2 years).
        (
            datetime(NEXT, 1, 15, 8, 0, 0, tzinfo=UTC),
            f"15.01.{NEXT}T09:00:00",
            f"15.01.{NEXT}T09:01:00",
        ),
        (
            datetime(NEXT, 7, 1, 8, 0, 0, tzinfo=UTC),
            f"01.07.{NEXT}T10:00:00",
            f"01.07.{NEXT}T10:01:00",
        ),
        (
            datetime(NEXT, 12, 31, 23, 30, 5, tzinfo=UTC),
            f"01.01.{NEXT + 1}T00:30:05",
            f"01.01.{NEXT + 1}T00:31:05",
        ),
    ],
)
def test_times_are_croatian_local_time(
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
    issued_at: datetime,
    issued_text: str,
    sent_text: str,
) -> None:
    sent = issued_at + timedelta(minutes=1)
    signed = profile.sign(
        make_invoice(issued_at=issued_at), fiscal_settings, demo_certificate, now=sent, number=N)
    root = etree.fromstring(signed.document)
    assert text(root, "tns:Racun/tns:DatVrijeme") == issued_text
    assert text(root, "tns:Zaglavlje/tns:DatumVrijeme") == sent_text


def test_naive_now_is_refused(
    demo_certificate: FiscalCertificate, fiscal_settings: FiscalSettings
) -> None:
    with pytest.raises(ValueError, match="timezone"):
        numbered(
            make_invoice(), fiscal_settings, demo_certificate, now=datetime(2026, 11, 25, 10))


def test_tax_rounded_per_line_is_kept_as_invoiced(
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
    assert_schema_valid: CheckSchema,
) -> None:
    # Three lines of 0.33 at 25 %: per line 0.08 VAT each, 0.24 in all, while one
    # rounding over the rate would give 0.25. The customer's invoice says 0.24.
    lines = tuple(make_line(f"Sugar sachet {n}", "1", "0.33", "25") for n in range(3))
    invoice = make_invoice(lines=lines)
    assert invoice.tax_total == Decimal("0.24") and invoice.total == Decimal("1.23")
    root = assert_schema_valid(numbered(invoice, fiscal_settings, demo_certificate).document)
    assert vat_rows(root) == [("25.00", "0.99", "0.24")]
    assert text(root, "tns:Racun/tns:IznosUkupno") == "1.23"


def test_without_a_source_breakdown_vat_is_computed_half_up(
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
    assert_schema_valid: CheckSchema,
) -> None:
    lines = (make_line("Item", "1", "0.10", "25"),)  # 0.025 VAT -> 0.03 half up
    invoice = make_invoice(lines=lines, taxes=(), tax_total=Decimal("0.03"))
    root = assert_schema_valid(numbered(invoice, fiscal_settings, demo_certificate).document)
    assert vat_rows(root) == [("25.00", "0.10", "0.03")]


def test_amounts_with_more_decimals_are_rounded_half_up(
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
    assert_schema_valid: CheckSchema,
) -> None:
    lines = (make_line("Item", "1", "10.00", "25"),)
    invoice = make_invoice(
        lines=lines,
        taxes=(TaxLine(rate=Decimal(25), base=Decimal("10"), amount=Decimal("2.505")),),
        tax_total=Decimal("2.505"),
    )
    root = assert_schema_valid(numbered(invoice, fiscal_settings, demo_certificate).document)
    assert vat_rows(root) == [("25.00", "10.00", "2.51")]
    assert text(root, "tns:Racun/tns:IznosUkupno") == "12.51"


def test_the_number_is_the_assigned_one_never_the_accounting_systems(
    demo_certificate: FiscalCertificate, fiscal_settings: FiscalSettings
) -> None:
    """BrOznRac, OznPosPr and OznNapUr come from the number the fiscalizer assigned, with
    the premises and device it was assigned under (settings may have changed since);
    the Zoho number INV-000123 is not turned into digits."""
    assigned = fiscal_number(57, premises="STARI1", device="3")
    root = etree.fromstring(profile.sign(
        make_invoice(number="INV-1-23"), fiscal_settings, demo_certificate, number=assigned
    ).document)
    assert text(root, "tns:Racun/tns:BrRac/tns:BrOznRac") == "57"
    assert text(root, "tns:Racun/tns:BrRac/tns:OznPosPr") == "STARI1"
    assert text(root, "tns:Racun/tns:BrRac/tns:OznNapUr") == "3"


REJECTIONS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("unsupported_currency", {"currency": "USD"}, {}, "EUR only"),
    (
        "tax_mismatch",
        {"taxes": (TaxLine(rate=Decimal(25), base=Decimal("56.70"), amount=Decimal("15.00")),)},
        {},
        "states 15.00 VAT at 25",
    ),
    (
        "tax_mismatch",
        {
            "lines": (make_line("Item", "1", "10.00", "25"),),
            "taxes": (
                TaxLine(rate=Decimal(25), base=Decimal("10"), amount=Decimal("2.50")),
                TaxLine(rate=Decimal(13), base=Decimal("10"), amount=Decimal("1.30")),
            ),
        },
        {},
        "no line is taxed at 13",
    ),
    (
        "untaxed_amount_unmapped",
        {"lines": (make_line("Item", "1", "10.00", "25"),), "subtotal": Decimal("15.00")},
        {},
        "5.00 EUR without VAT",
    ),
    ("vat_outside_vat_system", {}, {"in_vat_system": False}, "outside the VAT system"),
    (
        "invalid_buyer_oib",
        {
            "payment_method": PaymentMethod.CASH,
            "customer": Customer(name="X d.o.o.", tax_id="HR98765432190"),
        },
        {},
        "not a valid OIB",
    ),
    (
        "unsupported_tax_rate",
        {
            "lines": (make_line("Item", "1", "10.00", "12.345"),),
            "taxes": (),
            "tax_total": Decimal("1.23"),
        },
        {},
        "12.345",
    ),
]


@pytest.mark.parametrize(
    ("code", "overrides", "changes", "message"),
    REJECTIONS,
    ids=[f"{r[0]}-{n}" for n, r in enumerate(REJECTIONS)],
)
def test_invoices_that_cannot_be_reported_are_rejected_clearly(
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
    code: str,
    overrides: dict[str, Any],
    changes: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(InvoiceRejected, match=message) as caught:
        numbered(
            make_invoice(**overrides), in_vat(fiscal_settings, **changes), demo_certificate)
    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)


def test_foreign_tax_ids_are_not_sent_as_oib(
    demo_certificate: FiscalCertificate, fiscal_settings: FiscalSettings
) -> None:
    invoice = make_invoice(
        payment_method=PaymentMethod.CASH, customer=Customer(name="Café GmbH", tax_id="DE123456789")
    )
    root = etree.fromstring(numbered(invoice, fiscal_settings, demo_certificate).document)
    assert text(root, "tns:Racun/tns:OibPrimateljaRacuna") is None


def test_certificate_of_another_business_is_refused(
    test_ca: TestCA, fiscal_settings: FiscalSettings
) -> None:
    other = load_certificate(test_ca.issue_pfx("47721904125", "pw"), "pw")
    with pytest.raises(OibMismatch):
        profile.sign(make_invoice(), fiscal_settings, other, number=N)


def test_certificate_expired_at_signing_time_is_refused(
    demo_certificate: FiscalCertificate, fiscal_settings: FiscalSettings
) -> None:
    with pytest.raises(CertificateExpired):
        profile.sign(
            make_invoice(),
            fiscal_settings,
            demo_certificate,
            now=demo_certificate.not_after + timedelta(minutes=1), number=N)


def test_signing_from_several_threads(
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
    assert_schema_valid: CheckSchema,
    xmlsec_verify: Verify,
) -> None:
    shared = HrCisProfile()
    results: list[SignedInvoice] = []
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                invoice = make_invoice(number=f"INV-{n}{i:03d}")
                numbered = fiscal_number(n * 1000 + i)
                results.append(shared.sign(invoice, fiscal_settings, demo_certificate,
                                           number=numbered))
        except BaseException as error:  # collected and reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({signed.message_id for signed in results}) == 40
    for signed in results:
        assert_schema_valid(signed.document)
    assert xmlsec_verify(results[-1].document).returncode == 0
