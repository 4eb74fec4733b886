"""Whom a CIS answer must come from (hr-fiscal-record.md, "Trust of CIS's answers"):
the environment's CIS signing certificate itself, or its exact subject and issuer
under the CA chain; never just any certificate the CA issued, because every
business's own fiscal certificate comes from that same CA."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.soap import (
    AnswerInvalid,
    AnswerVerifier,
    CisSigner,
    UntrustedCertificate,
    parse_racun_answer,
)
from sandbox.cis.answers import AnswerSigner
from sandbox.cis.ca import TestCA

JIR = "6b1a7c9e-2f43-4d0e-9a51-0c2f5e8d7b31"
MESSAGE_ID = "5a3c1f1e-0000-4000-8000-000000000001"
NOW = datetime.now(UTC)

Keyed = tuple[rsa.RSAPrivateKey, x509.Certificate]


@pytest.fixture(scope="module")
def fiskalcis(test_ca: TestCA) -> Keyed:
    return test_ca.issue_service_cert()


def answer(signer: Keyed) -> bytes:
    key, certificate = signer
    return AnswerSigner(key, certificate).racun_answer(MESSAGE_ID, NOW, jir=JIR)


def forged(demo_certificate: FiscalCertificate) -> bytes:
    """An answer a business could make: signed with its own fiscal certificate, which
    the same CA issued."""
    return answer((demo_certificate.private_key, demo_certificate.certificate))


def by_name(certificate: x509.Certificate, anchors: list[x509.Certificate]) -> CisSigner:
    return CisSigner.named(
        certificate.subject.rfc4514_string(), certificate.issuer.rfc4514_string(), anchors
    )


def test_the_pinned_certificate_verifies_its_answer(fiskalcis: Keyed) -> None:
    verifier = AnswerVerifier(CisSigner.pinned(fiskalcis[1]))
    assert parse_racun_answer(answer(fiskalcis), verifier).jir == JIR


def test_an_answer_signed_by_a_client_certificate_of_the_same_ca_is_refused(
    fiskalcis: Keyed, demo_certificate: FiscalCertificate, test_ca: TestCA
) -> None:
    # The forged answer is well signed and chains to the very CA the CIS's does.
    assert demo_certificate.certificate.issuer == fiskalcis[1].issuer
    for signer in (CisSigner.pinned(fiskalcis[1]), by_name(fiskalcis[1], [test_ca.certificate])):
        with pytest.raises(AnswerInvalid, match=r"not signed by the CIS.*FISKAL 1"):
            parse_racun_answer(forged(demo_certificate), AnswerVerifier(signer))


def test_subject_and_issuer_under_the_ca_verify_the_cis_answer(
    fiskalcis: Keyed, test_ca: TestCA
) -> None:
    verifier = AnswerVerifier(by_name(fiskalcis[1], [test_ca.certificate]))
    assert parse_racun_answer(answer(fiskalcis), verifier).jir == JIR
    # A renewed certificate (new key, same names) is the CIS's as well.
    renewed = test_ca.issue_service_cert()
    assert parse_racun_answer(answer(renewed), verifier).jir == JIR


def test_the_same_names_from_another_ca_are_refused(fiskalcis: Keyed, test_ca: TestCA) -> None:
    # A look-alike CA with the same name issues a certificate with the same subject:
    # only the chain tells them apart.
    (common_name,) = test_ca.certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    impostor = TestCA.create(str(common_name.value)).issue_service_cert()
    assert (impostor[1].subject, impostor[1].issuer) == (fiskalcis[1].subject, fiskalcis[1].issuer)
    verifier = AnswerVerifier(by_name(fiskalcis[1], [test_ca.certificate]))
    with pytest.raises(AnswerInvalid, match=r"not signed by the CIS.*not trusted"):
        parse_racun_answer(answer(impostor), verifier)
    with pytest.raises(AnswerInvalid, match="not signed by the CIS"):
        parse_racun_answer(answer(impostor), AnswerVerifier(CisSigner.pinned(fiskalcis[1])))


def test_another_issuer_name_is_refused(fiskalcis: Keyed, test_ca: TestCA) -> None:
    signer = CisSigner.named(
        fiskalcis[1].subject.rfc4514_string(), "CN=Some Other CA,C=HR", [test_ca.certificate]
    )
    with pytest.raises(UntrustedCertificate, match="CN=Some Other CA"):
        signer.check(fiskalcis[1])


def test_a_pinned_certificate_out_of_its_validity_is_refused(fiskalcis: Keyed) -> None:
    signer = CisSigner.pinned(fiskalcis[1])
    signer.check(fiskalcis[1], now=NOW)
    with pytest.raises(UntrustedCertificate, match="valid only from"):
        signer.check(fiskalcis[1], now=fiskalcis[1].not_valid_after_utc + timedelta(seconds=1))


def test_a_ca_certificate_cannot_be_pinned(test_ca: TestCA) -> None:
    with pytest.raises(ValueError, match="is a CA certificate"):
        CisSigner.pinned(test_ca.certificate)


def test_a_list_of_anchors_is_no_longer_a_verifier(test_ca: TestCA) -> None:
    with pytest.raises(TypeError, match="CisSigner"):
        AnswerVerifier([test_ca.certificate])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("subject", "issuer", "anchors", "complaint"),
    [
        ("not a name", "CN=x", True, "RFC 4514"),
        ("", "CN=x", True, "subject is empty"),
        ("CN=fiskalcis", "CN=x", False, "CA certificates"),
    ],
)
def test_a_signer_by_name_needs_names_and_cas(
    test_ca: TestCA, subject: str, issuer: str, anchors: bool, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        CisSigner.named(subject, issuer, [test_ca.certificate] if anchors else [])
