"""The SOAP layer: envelopes that keep signatures intact, answers read only when trusted."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
import signxml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.profile import HrCisProfile, SignedInvoice
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import (
    DS_NS,
    F73_NS,
    RACUN_ZAHTJEV,
    SHA2_ONLY,
    SIGNATURE,
    SOAP_NS,
    WITH_SHA1,
    AnswerInvalid,
    AnswerVerifier,
    CertificateTrust,
    CisSigner,
    UntrustedCertificate,
    echo_envelope,
    parse_echo_answer,
    parse_racun_answer,
    racuni_envelope,
    signature_certificates,
    verify_signature,
)
from sandbox.cis.answers import (
    XSD_NS,
    XSI_NS,
    AnswerSigner,
    LegacySha1Signer,
    cis_datetime,
    echo_answer,
    soap_fault,
)
from sandbox.cis.ca import TestCA
from tests.factories import fiscal_number, make_invoice

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
def verifier(service: ServiceCert) -> AnswerVerifier:
    # The CIS's own certificate, pinned (hr-fiscal-record.md, trust of CIS's answers).
    return AnswerVerifier(CisSigner.pinned(service[1]))


@pytest.fixture(scope="module")
def signed(fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate) -> SignedInvoice:
    return HrCisProfile().sign(make_invoice(), fiscal_settings, demo_certificate,
                               number=fiscal_number())


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

    with pytest.raises(AnswerInvalid, match="not signed by the CIS"):
        parse_racun_answer(answer(impostor), verifier)


def test_the_service_certificate_itself_can_be_the_trust_anchor(service: ServiceCert) -> None:
    pinned = AnswerVerifier(CisSigner.pinned(service[1]))

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


# --- what is cached or built once must not blur one answer into another ---------------


def answer_built_by_signxml_alone(
    service: ServiceCert,
    message_id: str,
    *,
    sha1: bool,
    jir: str | None,
    errors: list[tuple[str, str]],
) -> bytes:
    """The answer as signxml's own signer makes it of the RacunOdgovor in place in its
    envelope: what AnswerSigner produced before it prebuilt anything."""
    key, certificate = service
    envelope = etree.Element(
        f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "xsd": XSD_NS, "xsi": XSI_NS}
    )
    body = etree.SubElement(envelope, f"{{{SOAP_NS}}}Body")
    odgovor = etree.SubElement(body, f"{TNS}RacunOdgovor", nsmap={"tns": F73_NS}, Id="RacunOdgovor")
    header = etree.SubElement(odgovor, f"{TNS}Zaglavlje")
    etree.SubElement(header, f"{TNS}IdPoruke").text = message_id
    etree.SubElement(header, f"{TNS}DatumVrijeme").text = cis_datetime(NOW)
    if jir is not None:
        etree.SubElement(odgovor, f"{TNS}Jir").text = jir
    if errors:
        greske = etree.SubElement(odgovor, f"{TNS}Greske")
        for code, message in errors:
            greska = etree.SubElement(greske, f"{TNS}Greska")
            etree.SubElement(greska, f"{TNS}SifraGreske").text = code
            etree.SubElement(greska, f"{TNS}PorukaGreske").text = message
    signer = LegacySha1Signer(
        method=signxml.methods.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA1 if sha1 else SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA1 if sha1 else DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_0,
    )
    signed = signer.sign(odgovor, key=key, cert=[certificate], reference_uri="#RacunOdgovor")
    body.replace(odgovor, signed)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize("sha1", [True, False], ids=["rsa-sha1", "rsa-sha256"])
def test_answers_are_byte_for_byte_what_signxml_alone_makes(
    service: ServiceCert, sha1: bool
) -> None:
    # RSA PKCS#1 v1.5 signatures are deterministic, so the bytes must be equal.
    key, certificate = service
    signer = AnswerSigner(key, certificate, sha1=sha1)
    cases: list[tuple[str, str | None, list[tuple[str, str]]]] = [
        (MESSAGE_ID, JIR, []),
        ("", None, [("s001", "Poruka <nije> & ']]>' čćž\r\n")]),
        (MESSAGE_ID, None, [("s004", "a"), ("", "")]),
        (MESSAGE_ID, JIR, []),  # the first again, after the others
    ]
    for message_id, jir, errors in cases:
        made = signer.racun_answer(message_id, NOW, jir=jir, errors=errors)
        assert made == answer_built_by_signxml_alone(
            service, message_id, sha1=sha1, jir=jir, errors=errors
        )


def test_each_answer_carries_only_its_own_content(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    key, certificate = service
    signer = AnswerSigner(key, certificate)
    refusal = signer.racun_answer("a" * 36, NOW, errors=[("s004", "Neispravan")])
    accepted = signer.racun_answer(MESSAGE_ID, NOW, jir=JIR)

    assert b"Greske" not in accepted and b"a" * 36 not in accepted
    assert accepted.count(b"<ds:Signature ") == 1
    assert parse_racun_answer(accepted, verifier, expected_message_id=MESSAGE_ID).jir == JIR
    assert parse_racun_answer(refusal, verifier).errors == (("s004", "Neispravan"),)


def test_a_tampered_answer_fails_after_the_same_answer_verified(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    document = answer(service)
    assert parse_racun_answer(document, verifier).jir == JIR  # certificate and trust cached
    other_jir = "11111111-2222-4333-8444-555555555555"

    with pytest.raises(AnswerInvalid, match="Digest mismatch"):
        parse_racun_answer(document.replace(JIR.encode(), other_jir.encode()), verifier)
    with pytest.raises(AnswerInvalid, match="Signature verification failed"):
        parse_racun_answer(
            document.replace(b"<ds:SignatureValue>", b"<ds:SignatureValue>AAAA"), verifier
        )
    assert parse_racun_answer(document, verifier).jir == JIR


def test_a_certificate_like_a_trusted_one_is_not_taken_for_it(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    # Same CA name, same service subject, another key: only the DER tells them apart.
    impostor = TestCA.create().issue_service_cert()
    assert impostor[1].subject == service[1].subject
    assert parse_racun_answer(answer(service), verifier).jir == JIR

    with pytest.raises(AnswerInvalid, match="not signed by the CIS"):
        parse_racun_answer(answer(impostor), verifier)
    with pytest.raises(UntrustedCertificate):
        CertificateTrust([service[1]]).check(impostor[1])


def test_the_certificate_is_the_one_the_signature_carries_every_time(
    service: ServiceCert,
) -> None:
    impostor = TestCA.create().issue_service_cert()

    def certificates_of(document: bytes) -> tuple[x509.Certificate, list[x509.Certificate]]:
        root = etree.fromstring(document)
        return signature_certificates(
            find(root, f"{{{SOAP_NS}}}Body/{TNS}RacunOdgovor/{SIGNATURE}")
        )

    first, _ = certificates_of(answer(service))
    again, _ = certificates_of(answer(service))
    other, _ = certificates_of(answer(impostor))
    # Broken into other lines, the same DER is the same certificate.
    rewrapped, _ = certificates_of(answer(service).replace(b"\n", b"\n  "))

    assert first is again  # parsed once
    assert first == service[1] and rewrapped == service[1]
    assert other == impostor[1]


def test_a_broken_certificate_fails_every_time(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    document = answer(service).replace(b"<ds:X509Certificate>MII", b"<ds:X509Certificate>MIJ")
    for _ in range(2):
        with pytest.raises(AnswerInvalid, match="not a certificate"):
            parse_racun_answer(document, verifier)


def test_a_certificate_with_a_garbled_name_is_refused_as_not_a_certificate(
    service: ServiceCert, verifier: AnswerVerifier
) -> None:
    # Well-formed DER whose issuer name is not valid UTF-8: cryptography loads it and
    # fails only when the name is read.
    der = service[1].public_bytes(Encoding.DER)
    name = service[1].issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    at = der.index(str(name).encode())
    garbled = der[:at] + b"\xff" + der[at + 1:]
    document = answer(service)
    text = base64.b64encode(der).decode()
    assert text.encode() in document.replace(b"\n", b"")
    root = etree.fromstring(document)
    for element in root.iter(f"{{{DS_NS}}}X509Certificate"):
        element.text = base64.b64encode(garbled).decode()

    with pytest.raises(AnswerInvalid, match="not a certificate"):
        parse_racun_answer(etree.tostring(root), verifier)


def test_verifying_leaves_the_answer_as_it_was(service: ServiceCert) -> None:
    root = etree.fromstring(answer(service))
    before = etree.tostring(root)
    odgovor = find(root, f"{{{SOAP_NS}}}Body/{TNS}RacunOdgovor")

    covered, _, _ = verify_signature(odgovor, WITH_SHA1)

    assert etree.tostring(root) == before
    assert covered is not odgovor
    assert covered.find(SIGNATURE) is None


@pytest.mark.parametrize(
    ("original", "replacement", "complaint"),
    [
        (b"</tns:RacunOdgovor>", b"</tns:RacunOdgovor>text after it", "XMLSyntaxError"),
        (b"</tns:RacunOdgovor>", b"</tns:RacunOdgovor>\n\t ", None),
        (b"<tns:Jir>", b"<tns:Jir>&e;", "XMLSyntaxError"),
    ],
    ids=["text-after", "whitespace-after", "entity"],
)
def test_what_does_not_survive_signxmls_copy_still_fails_as_before(
    service: ServiceCert,
    verifier: AnswerVerifier,
    original: bytes,
    replacement: bytes,
    complaint: str | None,
) -> None:
    document = answer(service)
    doctype = b'<!DOCTYPE soap:Envelope [<!ENTITY e "x">]>\n'
    document = document.replace(b"\n<soap:Envelope", b"\n" + doctype + b"<soap:Envelope", 1)
    changed = document.replace(original, replacement, 1)
    assert changed != document

    if complaint is None:
        assert parse_racun_answer(changed, verifier).jir == JIR
    else:
        with pytest.raises(AnswerInvalid, match=complaint):
            parse_racun_answer(changed, verifier)


def test_a_missing_part_of_the_signature_is_named_as_signxml_names_it(
    service: ServiceCert,
) -> None:
    root = etree.fromstring(answer(service))
    odgovor = find(root, f"{{{SOAP_NS}}}Body/{TNS}RacunOdgovor")
    signature = find(odgovor, SIGNATURE)
    signature.remove(find(signature, f"{{{DS_NS}}}SignatureValue"))

    # Without the xmldsig schema (as the sandbox checks requests) signxml itself finds it.
    with pytest.raises(signxml.InvalidInput, match="Expected to find XML element SignatureValue"):
        verify_signature(odgovor, WITH_SHA1, validate_schema=False)
