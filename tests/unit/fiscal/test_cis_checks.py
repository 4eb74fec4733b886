"""The sandbox's request checks in-process: what is cached (the signer's certificate, its
trust, its OIB) never lets one request pass on the strength of another."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import signxml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree
from signxml.algorithms import CanonicalizationMethod

from fiscal.hr_cis.certificate import FiscalCertificate, load_certificate
from fiscal.hr_cis.profile import HrCisProfile, SignedInvoice
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import F73_NS, SIGNATURE, CertificateTrust, open_envelope, racuni_envelope
from sandbox.cis.ca import TestCA
from sandbox.cis.checks import (
    AcceptedInvoice,
    Refusal,
    RequestChecks,
    _child_text,
    default_spec_dir,
    load_schema,
)
from tests.factories import fiscal_number, make_invoice
from tests.fixtures.certs import Pfx

TNS = f"{{{F73_NS}}}"
OTHER_OIB = "47721904125"


@pytest.fixture(scope="module")
def checks(test_ca: TestCA) -> RequestChecks:
    return RequestChecks(load_schema(default_spec_dir()), CertificateTrust([test_ca.certificate]))


def signed_invoice(
    settings: FiscalSettings, certificate: FiscalCertificate, number: int = 1
) -> SignedInvoice:
    return HrCisProfile().sign(make_invoice(number=f"INV-{number}"), settings, certificate,
                               number=fiscal_number(number))


def resign(document: bytes, key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> bytes:
    root = etree.fromstring(document)
    signature = root.find(SIGNATURE)
    assert signature is not None
    root.remove(signature)
    signer = signxml.XMLSigner(
        method=signxml.methods.enveloped,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(root, key=key, cert=[certificate], reference_uri=f"#{root.get('Id')}")
    return etree.tostring(signed)


def check(checks: RequestChecks, document: bytes) -> AcceptedInvoice:
    return checks.check(open_envelope(racuni_envelope(document)), datetime.now(UTC))


def refusal_code(checks: RequestChecks, document: bytes) -> str:
    with pytest.raises(Refusal) as refused:
        check(checks, document)
    return refused.value.code


def test_a_tampered_request_is_refused_after_the_same_request_passed(
    checks: RequestChecks, fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate
) -> None:
    signed = signed_invoice(fiscal_settings, demo_certificate)
    document = signed.document
    assert check(checks, document).message_id == signed.message_id

    tampered = document.replace(b"<tns:IznosUkupno>", b"<tns:IznosUkupno>1")
    assert tampered != document
    assert refusal_code(checks, tampered) == "s004"
    broken_value = document.replace(b"<ds:SignatureValue>", b"<ds:SignatureValue>AAAA")
    assert refusal_code(checks, broken_value) == "s004"
    assert check(checks, document).message_id == signed.message_id


def test_a_look_alike_certificate_is_refused_after_the_trusted_one_passed(
    checks: RequestChecks,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
    foreign_pfx: Pfx,
) -> None:
    foreign = load_certificate(foreign_pfx.data, foreign_pfx.password)
    assert foreign.certificate.subject == demo_certificate.certificate.subject
    check(checks, signed_invoice(fiscal_settings, demo_certificate).document)

    document = signed_invoice(fiscal_settings, foreign).document
    for _ in range(2):
        assert refusal_code(checks, document) == "s002"


def test_each_certificate_answers_for_its_own_oib(
    checks: RequestChecks,
    test_ca: TestCA,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    other = load_certificate(test_ca.issue_pfx(OTHER_OIB, "pw"), "pw")
    other_settings = fiscal_settings.model_copy(update={"oib": OTHER_OIB})
    key, without_oib, _ = pkcs12.load_key_and_certificates(
        test_ca.issue_pfx(fiscal_settings.oib, "pw", include_oib=False), b"pw"
    )
    assert isinstance(key, rsa.RSAPrivateKey) and without_oib is not None

    for _ in range(2):
        mine = check(checks, signed_invoice(fiscal_settings, demo_certificate).document)
        theirs = check(checks, signed_invoice(other_settings, other).document)
        assert (mine.oib, theirs.oib) == (fiscal_settings.oib, OTHER_OIB)
    # Our request re-signed by the other OIB's certificate, or by one without an OIB.
    document = signed_invoice(fiscal_settings, demo_certificate).document
    assert refusal_code(checks, resign(document, other.private_key, other.certificate)) == "s005"
    assert refusal_code(checks, resign(document, key, without_oib)) == "s003"


@pytest.mark.parametrize(
    "path",
    [("Oib",), ("NakDost",), ("Missing",), ("BrRac", "BrOznRac"), ("BrRac", "OznNapUr")],
)
def test_fields_are_read_as_findtext_reads_them(path: tuple[str, ...]) -> None:
    # Two BrRac, the first without BrOznRac: findtext takes the first match in order.
    racun = etree.fromstring(
        f"<tns:Racun xmlns:tns='{F73_NS}'>"
        "<tns:Oib> 69435151530\n</tns:Oib><tns:NakDost/><!-- c -->"
        "<tns:BrRac><tns:OznPosPr>P</tns:OznPosPr><tns:OznNapUr>1</tns:OznNapUr></tns:BrRac>"
        "<tns:BrRac><tns:BrOznRac>7</tns:BrOznRac><tns:OznNapUr>2</tns:OznNapUr></tns:BrRac>"
        "<tns:Oib>second</tns:Oib></tns:Racun>"
    )
    expected = (racun.findtext("/".join(f"{TNS}{name}" for name in path)) or "").strip()

    assert _child_text(racun, *path) == expected
