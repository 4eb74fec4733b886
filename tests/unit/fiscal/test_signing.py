"""RequestSigner: what it saves on top of signxml must not change what it signs."""

from __future__ import annotations

import copy

import pytest
import signxml
from lxml import etree
from signxml import XMLSigner, XMLVerifier, methods

from fiscal.hr_cis import signing
from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.document import build_request
from tests.unit.fiscal.conftest import NS, racun_fields


def unsigned(vat_rows: int = 2) -> etree._Element:
    return build_request(
        racun_fields(vat_rows, total="23.80"),
        message_id="2d6b9f5e-4a53-4f7e-9a51-1c2f0e1a7b3c", sent_at="25.11.2026T10:30:05",
    )


def plain_signxml(root: etree._Element, certificate: FiscalCertificate) -> bytes:
    """The same signature made by signxml as it comes, for comparison."""
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm=signing.SIGNATURE_METHOD,
        digest_algorithm=signing.DIGEST_METHOD,
        c14n_algorithm=signing.CANONICALIZATION,
    )
    signed = signer.sign(root, key=certificate.private_key, key_info=signing.key_info(certificate))
    return etree.tostring(signed, encoding="UTF-8")


@pytest.mark.parametrize("vat_rows", [0, 1, 2])
def test_the_same_bytes_as_plain_signxml(
    demo_certificate: FiscalCertificate, vat_rows: int
) -> None:
    # RSA PKCS#1 v1.5 signatures are deterministic, so equal input gives equal bytes.
    root = unsigned(vat_rows)
    expected = plain_signxml(copy.deepcopy(root), demo_certificate)
    assert signing.RequestSigner(demo_certificate).sign(root) == expected


def test_successive_signatures_are_each_complete(demo_certificate: FiscalCertificate) -> None:
    # The signer keeps state between signatures (names, the tree signed in place):
    # each signature must still cover its own document only.
    signer = signing.RequestSigner(demo_certificate)
    documents = [signer.sign(unsigned(rows)) for rows in (2, 0, 2, 1)]
    for rows, document in zip((2, 0, 2, 1), documents, strict=True):
        root = etree.fromstring(document)
        assert len(list(root.iter(f"{{{signing.DS}}}Signature"))) == 1
        result = XMLVerifier().verify(
            root,
            x509_cert=demo_certificate.certificate,
            expect_config=signxml.SignatureConfiguration(
                signature_methods=frozenset({signing.SIGNATURE_METHOD}),
                digest_algorithms=frozenset({signing.DIGEST_METHOD}),
            ),
        )
        assert isinstance(result, signxml.VerifyResult)
        signed = result.signed_xml
        assert signed is not None
        assert len(signed.findall(f"{{{NS}}}Racun/{{{NS}}}Pdv/{{{NS}}}Porez")) == rows


def test_only_a_root_element_is_signed_in_place(demo_certificate: FiscalCertificate) -> None:
    parent = etree.Element("parent")
    parent.append(unsigned())
    with pytest.raises(ValueError, match="root element"):
        signing.RequestSigner(demo_certificate).sign(parent[0])
