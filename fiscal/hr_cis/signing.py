"""The enveloped XML signature of CIS requests (spec §7, algorithms of spec v2.7).

RSA-SHA256 over SHA-256 digests, exclusive c14n as CanonicalizationMethod and as
the Reference transform after enveloped-signature, Reference URI "#<root Id>",
KeyInfo/X509Data carrying the certificate and its issuer and serial number.

Everything that depends only on the certificate (the KeyInfo element with the
certificate's base64 DER) is prepared once per certificate in `RequestSigner`.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import XMLSigner, methods
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from fiscal.hr_cis.certificate import FiscalCertificate

DS = "http://www.w3.org/2000/09/xmldsig#"
SIGNATURE_METHOD = SignatureMethod.RSA_SHA256
DIGEST_METHOD = DigestAlgorithm.SHA256
CANONICALIZATION = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0


def _ds(name: str) -> str:
    return f"{{{DS}}}{name}"


class FreshRootSigner(XMLSigner):
    """signxml copies its input by serializing and reparsing it, to shed namespace
    declarations an element inherits from its ancestors. Our input is always a
    root element just built, with no ancestors, so a deep copy is equivalent and
    avoids a parse per copy.

    Of an enveloped input signxml takes two copies: the tree the signature is
    appended to and the one canonicalized for the digest. All the digest needs is
    that they are separate trees, so `sign_in_place` lets the input itself be the
    first and copies only for the second.

    signxml also makes the ds: name of each element of the signature anew every
    time (eleven per signature); the names never change, so they are kept.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._in_place: etree._Element | None = None
        self._ds_tags: dict[str, Any] = {}

    def sign_in_place(self, root: etree._Element, **options: Any) -> etree._Element:
        """`sign(root, ...)`, appending the signature to `root` itself."""
        if root.getparent() is not None:
            raise ValueError("only a root element can be signed in place")
        self._in_place = root
        try:
            signed: etree._Element = self.sign(root, **options)
        finally:
            self._in_place = None
        return signed

    def get_root(self, data: Any) -> Any:
        if data is self._in_place:
            self._in_place = None  # once: every later request gets a copy
            return data
        if isinstance(data, etree._Element) and data.getparent() is None:
            return copy.deepcopy(data)
        return super().get_root(data)

    def _ds_tag(self, tag: str) -> Any:
        name = self._ds_tags.get(tag)
        if name is None:
            name = self._ds_tags[tag] = super()._ds_tag(tag)
        return name


def key_info(certificate: FiscalCertificate) -> etree._Element:
    """<ds:KeyInfo><ds:X509Data> with X509Certificate and X509IssuerSerial, as in
    the spec's signed example."""
    cert = certificate.certificate
    root = etree.Element(_ds("KeyInfo"), nsmap={"ds": DS})
    data = etree.SubElement(root, _ds("X509Data"))
    der = cert.public_bytes(serialization.Encoding.DER)
    etree.SubElement(data, _ds("X509Certificate")).text = base64.b64encode(der).decode()
    issuer_serial = etree.SubElement(data, _ds("X509IssuerSerial"))
    etree.SubElement(issuer_serial, _ds("X509IssuerName")).text = cert.issuer.rfc4514_string()
    etree.SubElement(issuer_serial, _ds("X509SerialNumber")).text = str(cert.serial_number)
    return root


class RequestSigner:
    """Signs request documents with one certificate. Not shared between threads:
    build one per thread (it is cheap next to loading the certificate)."""

    def __init__(self, certificate: FiscalCertificate) -> None:
        self._key = certificate.private_key
        self._key_info = key_info(certificate)
        self._signer = FreshRootSigner(
            method=methods.enveloped,
            signature_algorithm=SIGNATURE_METHOD,
            digest_algorithm=DIGEST_METHOD,
            c14n_algorithm=CANONICALIZATION,
        )

    def sign(self, root: etree._Element) -> bytes:
        """The root element with its enveloped signature, serialized as UTF-8
        without an XML declaration (it is embedded in a SOAP body).

        `root` must be a root element the caller is done with: the signature is
        appended to it, not to a copy.
        """
        signed = self._signer.sign_in_place(
            root,
            key=self._key,
            # signxml moves the element into the signature, so each gets its own copy.
            key_info=copy.deepcopy(self._key_info),
        )
        return etree.tostring(signed, encoding="UTF-8")
