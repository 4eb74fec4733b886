"""The SOAP layer: envelopes that keep signatures intact, answers read only when trusted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import signxml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.profile import HrCisProfile, SignedInvoice
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import (
    F73_NS,
    RACUN_ZAHTJEV,
    SHA2_ONLY,
    SIGNATURE,
    SOAP_NS,
    AnswerInvalid,
    AnswerVerifier,
    CertificateTrust,
    UntrustedCertificate,
    echo_envelope,
    parse_echo_answer,
    parse_racun_answer,
    racuni_envelope,
    verify_signature,
)
from sandbox.cis.answers import AnswerSigner, echo_answer, soap_fault
from sandbox.cis.ca import TestCA
from tests.factories import make_invoice

TNS = f"{{{F73_NS}}}"
MESSAGE_ID = "3f8a9c2e-5b71-4d0a-9e6f-0c1d2b3a4f5e"
JIR = "6b7749c6-56c1-4cf5-b7f7-9f29cebc9f7f"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

ServiceCert = tuple[rsa.RSAPrivateKey, x509.Certificate]


def find(element: etree._Element, path: str) -> etree._Element:
    found = element.find(path)
    assert found is not None, path
    return found


@pytest.fixture(scope="module")
def service(test_ca: TestCA) -> ServiceCert:
    return test_ca.issue_service_cert()


@pytest.fixture(scope="module")
def verifier(test_ca: TestCA) -> AnswerVerifier:
    return AnswerVerifier([test_ca.certificate])


@pytest.fixture(scope="module")
def signed(fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate) -> SignedInvoice:
    return HrCisProfile().sign(make_invoice(), fiscal_settings, demo_certificate)


def answer(service: ServiceCert, *, sha1: bool = False, **fields: object) -> bytes:
    key, certificate = service
    values: dict[str, object] = {"jir": JIR, **fields}
    message_id = str(values.pop("message_id", MESSAGE_ID))
    return AnswerSigner(key, certificate, sha1=sha1).racun_answer(
        message_id,
        NOW,
        **values,  # type: ignore[arg-type]
    )


# --- envelopes ---------------------------------------------------------------------


def test_the_signed_request_goes_into_the_envelope_byte_for_byte(signed: SignedInvoice) -> None:
    envelope = racuni_envelope(signed.document)

    assert signed.document in envelope
    (request,) = find(etree.fromstring(envelope), f"{{{SOAP_NS}}}Body")
    assert request.tag == RACUN_ZAHTJEV


def test_the_request_signature_still_verifies_inside_the_envelope(
    signed: SignedInvoice, demo_certificate: FiscalCertificate
) -> None:
    request = find(
        etree.fromstring(racuni_envelope(signed.document)), f"{{{SOAP_NS}}}Body/{RACUN_ZAHTJEV}"
    )

    covered, certificate, _ = verify_signature(request, SHA2_ONLY)

    assert covered.findtext(f"{TNS}Zaglavlje/{TNS}IdPoruke") == signed.message_id
    assert certificate == demo_certificate.certificate


def test_an_xml_declaration_on_the_document_is_dropped(signed: SignedInvoice) -> None:
    envelope = racuni_envelope(b'<?xml version="1.0" encoding="UTF-8"?>\n' + signed.document)

    assert envelope.count(b"<?xml") == 1
    assert envelope.startswith(b"<?xml")
    etree.fromstring(envelope)


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        (b"<tns:RacunOdgovor xmlns:tns='" + F73_NS.encode() + b"'/>", "RacunZahtjev"),
        (b"<RacunZahtjev/>", "RacunZahtjev"),
        (b"<tns:RacunZahtjev", "well-formed"),
        (
            b"<?xml version='1.0' encoding='ISO-8859-2'?><tns:RacunZahtjev xmlns:tns='"
            + F73_NS.encode()
            + b"'/>",
            "UTF-8",
        ),
    ],
)
def test_only_a_utf8_racun_zahtjev_is_wrapped(document: bytes, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        racuni_envelope(document)


def test_echo_round_trips_any_text() -> None:
    text = "proizvoljan tekst <&> ']]>' čćžšđ"
    (echo,) = find(etree.fromstring(echo_envelope(text)), f"{{{SOAP_NS}}}Body")

    assert echo.tag == f"{TNS}EchoRequest"
    assert echo.text == text
    assert parse_echo_answer(echo_answer(text)) == text


def test_an_echo_answer_must_be_an_echo_response(service: ServiceCert) -> None:
    with pytest.raises(AnswerInvalid, match="EchoResponse"):
        parse_echo_answer(answer(service))


# --- verifying answers -------------------------------------------------------------


@pytest.mark.parametrize("sha1", [True, False], ids=["rsa-sha1", "rsa-sha256"])
def test_a_signed_answer_verifies_with_sha1_as_with_sha256(
    service: ServiceCert, verifier: AnswerVerifier, sha1: bool
) -> None:
    document = answer(service, sha1=sha1)
    assert (b"xmldsig#rsa-sha1" in document) is sha1
    assert b"REC-xml-c14n-20010315" in document  # inclusive c14n, as the CIS signs

    result = parse_racun_answer(document, verifier, expected_message_id=MESSAGE_ID)

    assert (result.message_id, result.jir, result.errors) == (MESSAGE_ID, JIR, ())
    assert result.document == document


def test_a_tampered_answer_is_invalid(service: ServiceCert, verifier: AnswerVerifier) -> None:
    other_jir = "11111111-2222-4333-8444-555555555555"
    tampered = answer(service).replace(JIR.encode(), other_jir.encode())

    with pytest.raises(AnswerInvalid, match="signature"):
        parse_racun_answer(tampered, verifier)


def test_an_answer_from_an_untrusted_signer_is_invalid(verifier: AnswerVerifier) -> None:
    impostor = TestCA.create("Impostor CA").issue_service_cert()

    with pytest.raises(AnswerInvalid, match="untrusted"):
        parse_racun_answer(answer(impostor), verifier)


def test_the_service_certificate_itself_can_be_the_trust_anchor(service: ServiceCert) -> None:
    pinned = AnswerVerifier([service[1]])

    assert parse_racun_answer(answer(service), pinned).jir == JIR


def test_an_unsigned_answer_is_invalid(service: ServiceCert, verifier: AnswerVerifier) -> None:
    root = etree.fromstring(answer(service))
    odgovor = find(root, f"{{{SOAP_NS}}}Body/{TNS}RacunOdgovor")
    odgovor.remove(find(odgovor, SIGNATURE))

    with pytest.raises(AnswerInvalid, match="not signed"):
        parse_racun_answer(etree.tostring(root), verifier)


def test_a_signature_over_part_of_the_answer_is_not_enough(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    # Signs the header only: the JIR beside it would be unsigned.
    root = etree.fromstring(answer(service))
    odgovor = find(root, f"{{{SOAP_NS}}}Body/{TNS}RacunOdgovor")
    odgovor.remove(find(odgovor, SIGNATURE))
    find(odgovor, f"{TNS}Zaglavlje").set("Id", "header")
    key, certificate = service
    partial = signxml.XMLSigner(
        method=signxml.methods.enveloped,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_0,
    ).sign(odgovor, key=key, cert=[certificate], reference_uri="#header")
    find(root, f"{{{SOAP_NS}}}Body").replace(odgovor, partial)

    with pytest.raises(AnswerInvalid, match="does not cover"):
        parse_racun_answer(etree.tostring(root), verifier)


@pytest.mark.parametrize(
    ("original", "replacement"),
    [
        (b"xmldsig-more#rsa-sha256", b"xmldsig-more#rot13"),
        (b"<ds:X509Certificate>MII", b"<ds:X509Certificate>!!!"),
        (b"<ds:SignatureValue>", b"<ds:SignatureValue>AAAA"),
    ],
    ids=["unknown-algorithm", "certificate-not-base64", "signature-value-corrupt"],
)
def test_a_malformed_signature_is_invalid_not_an_error(
    service: ServiceCert, verifier: AnswerVerifier, original: bytes, replacement: bytes
) -> None:
    document = answer(service)
    assert original in document

    with pytest.raises(AnswerInvalid, match="signature"):
        parse_racun_answer(document.replace(original, replacement), verifier)


def test_a_soap_fault_is_invalid_with_its_text(verifier: AnswerVerifier) -> None:
    with pytest.raises(AnswerInvalid, match="SOAP fault soap:Server: out of order"):
        parse_racun_answer(soap_fault("Server", "out of order"), verifier)


@pytest.mark.parametrize(
    "body",
    [b"<html>502 Bad Gateway</html", b"", b"<html/>", b"<e:Envelope xmlns:e='urn:x'/>"],
)
def test_what_is_not_a_soap_envelope_is_invalid(body: bytes, verifier: AnswerVerifier) -> None:
    with pytest.raises(AnswerInvalid):
        parse_racun_answer(body, verifier)


def test_trust_is_checked_at_the_current_time_even_when_cached(
    test_ca: TestCA, service: ServiceCert
) -> None:
    trust = CertificateTrust([test_ca.certificate])
    certificate = service[1]
    trust.check(certificate)  # caches the chain

    with pytest.raises(UntrustedCertificate, match="valid only"):
        trust.check(certificate, now=certificate.not_valid_after_utc + timedelta(seconds=1))
    with pytest.raises(UntrustedCertificate, match="not trusted"):
        CertificateTrust([test_ca.certificate]).check(
            certificate, now=certificate.not_valid_after_utc + timedelta(days=1)
        )


# --- reading answers ---------------------------------------------------------------


def test_an_answer_to_another_message_is_invalid(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    with pytest.raises(AnswerInvalid, match="not " + MESSAGE_ID):
        parse_racun_answer(
            answer(service, message_id="00000000-0000-4000-8000-000000000000"),
            verifier,
            expected_message_id=MESSAGE_ID,
        )


def test_a_refusal_without_message_id_is_still_ours(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    document = answer(service, message_id="", jir=None, errors=[("s001", "Poruka nije ...")])

    result = parse_racun_answer(document, verifier, expected_message_id=MESSAGE_ID)

    assert result.message_id is None
    assert result.errors == (("s001", "Poruka nije ..."),)


def test_a_jir_without_message_id_is_not_accepted_as_ours(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    with pytest.raises(AnswerInvalid):
        parse_racun_answer(answer(service, message_id=""), verifier, expected_message_id=MESSAGE_ID)


def test_all_errors_are_read_in_order(service: ServiceCert, verifier: AnswerVerifier) -> None:
    errors = [("s002", "Certifikat nije izdan ..."), ("s005", "OIB iz poruke ...")]

    result = parse_racun_answer(answer(service, jir=None, errors=errors), verifier)

    assert result.errors == tuple(errors)
    assert result.jir is None


def test_an_answer_with_neither_jir_nor_errors_is_invalid(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    with pytest.raises(AnswerInvalid, match="neither"):
        parse_racun_answer(answer(service, jir=None), verifier)


def test_a_jir_that_is_not_a_uuid_is_invalid(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    with pytest.raises(AnswerInvalid, match="UUID"):
        parse_racun_answer(answer(service, jir="JIR-1"), verifier)


def test_an_echo_is_not_a_racun_answer(verifier: AnswerVerifier) -> None:
    with pytest.raises(AnswerInvalid, match="RacunOdgovor"):
        parse_racun_answer(echo_answer("x"), None)


def test_without_a_verifier_the_answer_is_read_unchecked(service: ServiceCert) -> None:
    tampered = answer(service).replace(b"Id=", b"Ix=")

    assert parse_racun_answer(tampered, None).jir == JIR
