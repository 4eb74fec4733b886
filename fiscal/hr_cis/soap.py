"""The CIS SOAP layer: envelopes around signed requests, reading and verifying answers.

SOAP 1.1 document/literal (spec §6, WSDL `FiskalizacijaService`). Requests carry an
enveloped signature made with exclusive c14n, so wrapping them in an envelope leaves
the signature intact as long as the element is inserted byte for byte. Answers are
signed by the service's own certificate with *inclusive* c14n, so they verify only
in the context of the envelope they arrived in, and may still use RSA-SHA1.
"""

from __future__ import annotations

import base64
import functools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import signxml
from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.util import namespaces as signxml_namespaces

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
F73_NS = "http://www.apis-it.hr/fin/2012/types/f73"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
SOAP_ACTION_BASE = (
    "http://e-porezna.porezna-uprava.hr/fiskalizacija/2012/services/FiskalizacijaService/"
)
RACUNI_ACTION = SOAP_ACTION_BASE + "racuni"
PROMIJENI_PODATKE_ACTION = SOAP_ACTION_BASE + "promijeniPodatkeRacuna"
ECHO_ACTION = SOAP_ACTION_BASE + "echo"

RACUN_ZAHTJEV = f"{{{F73_NS}}}RacunZahtjev"
RACUN_ODGOVOR = f"{{{F73_NS}}}RacunOdgovor"
# promijeniPodatkeRacuna (2026): payment method and/or buyer OIB of an invoice
# fiscalized the same day (spec v2.6 §2.1.5, XSD RacunPPType).
PROMIJENI_PODATKE_ZAHTJEV = f"{{{F73_NS}}}PromijeniPodatkeRacunaZahtjev"
PROMIJENI_PODATKE_ODGOVOR = f"{{{F73_NS}}}PromijeniPodatkeRacunaOdgovor"
ECHO_REQUEST = f"{{{F73_NS}}}EchoRequest"
ECHO_RESPONSE = f"{{{F73_NS}}}EchoResponse"
SIGNATURE = f"{{{DS_NS}}}Signature"
_BODY = f"{{{SOAP_NS}}}Body"
_ENVELOPE = f"{{{SOAP_NS}}}Envelope"
_FAULT = f"{{{SOAP_NS}}}Fault"

_ENVELOPE_OPEN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<soapenv:Envelope xmlns:soapenv="' + SOAP_NS.encode() + b'"><soapenv:Body>'
)
_ENVELOPE_CLOSE = b"</soapenv:Body></soapenv:Envelope>"
_XML_DECLARATION = re.compile(rb"^\s*<\?xml[^>]*\?>\s*")
_UUID = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")

_parsers = threading.local()


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted XML: no entity expansion, no network, no DTD loading.

    lxml parsers must not be shared between threads, hence one per thread.
    """
    parser = getattr(_parsers, "parser", None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
        _parsers.parser = parser
    return etree.fromstring(data, parser)


def _strip_declaration(document: bytes) -> bytes:
    if document.startswith(b"\xef\xbb\xbf"):
        document = document[3:]
    return _XML_DECLARATION.sub(b"", document, count=1)


def racuni_envelope(signed_document: bytes) -> bytes:
    """The SOAP request for `racuni`: the signed RacunZahtjev inserted as-is.

    Re-serializing the element could change bytes its signature covers (attribute
    quoting, namespace placement), so only the XML declaration is dropped. The envelope
    declares no default namespace, so nothing in the document changes meaning.
    """
    try:
        root = parse_xml(signed_document)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"the signed document is not well-formed XML: {exc}") from exc
    if root.tag != RACUN_ZAHTJEV:
        raise ValueError(f"expected a RacunZahtjev element, got {root.tag}")
    encoding = (root.getroottree().docinfo.encoding or "UTF-8").upper().replace("_", "-")
    if encoding not in ("UTF-8", "UTF8"):
        raise ValueError(f"the signed document must be UTF-8, not {encoding}")
    return _ENVELOPE_OPEN + _strip_declaration(signed_document) + _ENVELOPE_CLOSE


def change_envelope(signed_document: bytes) -> bytes:
    """The SOAP request for `promijeniPodatkeRacuna`, made as `racuni_envelope`'s."""
    root = parse_xml(signed_document)
    if root.tag != PROMIJENI_PODATKE_ZAHTJEV:
        raise ValueError(f"expected a PromijeniPodatkeRacunaZahtjev element, got {root.tag}")
    return _ENVELOPE_OPEN + _strip_declaration(signed_document) + _ENVELOPE_CLOSE


def echo_envelope(text: str) -> bytes:
    envelope = etree.Element(_ENVELOPE, nsmap={"soapenv": SOAP_NS})
    body = etree.SubElement(envelope, _BODY)
    echo = etree.SubElement(body, ECHO_REQUEST, nsmap={"tns": F73_NS})
    echo.text = text
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


class AnswerInvalid(ValueError):
    """The answer cannot be trusted or understood: not SOAP, a SOAP fault, a missing,
    broken or untrusted signature, or an answer to another message."""


def open_envelope(body: bytes) -> etree._Element:
    """The element inside a SOAP 1.1 Body; a Fault raises AnswerInvalid with its text."""
    try:
        root = parse_xml(body)
    except etree.XMLSyntaxError as exc:
        raise AnswerInvalid(f"the answer is not XML: {exc}") from exc
    if root.tag != _ENVELOPE:
        raise AnswerInvalid(f"the answer is not a SOAP 1.1 envelope (root {root.tag})")
    soap_body = root.find(_BODY)
    if soap_body is None:
        raise AnswerInvalid("the SOAP envelope has no Body")
    content = next((child for child in soap_body if isinstance(child.tag, str)), None)
    if content is None:
        raise AnswerInvalid("the SOAP Body is empty")
    if content.tag == _FAULT:
        code = (content.findtext("faultcode") or "").strip()
        text = (content.findtext("faultstring") or "").strip()
        raise AnswerInvalid(f"SOAP fault {code}: {text}")
    return content


class UntrustedCertificate(ValueError):
    pass


class CertificateTrust:
    """Whether a certificate chains to one of `trusted` and is valid now.

    A trusted certificate may be a CA or the very certificate that signs (pinned).
    A successful chain check is cached per certificate with the window in which the
    whole chain is valid, so later checks of the same certificate compare two times.
    The cache is keyed by the certificate itself: cryptography hashes and compares
    certificates by their DER, which is cheaper than a fingerprint and as exact.
    """

    def __init__(self, trusted: Sequence[x509.Certificate], *, max_entries: int = 4096) -> None:
        if not trusted:
            raise ValueError("at least one trusted certificate is needed")
        self._store = verification.Store(list(trusted))
        self._max_entries = max_entries
        self._windows: dict[x509.Certificate, tuple[datetime, datetime]] = {}
        self._lock = threading.Lock()

    def check(
        self,
        certificate: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        now: datetime | None = None,
    ) -> None:
        moment = now or datetime.now(UTC)
        window = self._windows.get(certificate)
        if window is None:
            window = self._verify_chain(certificate, intermediates, moment)
            with self._lock:
                if len(self._windows) >= self._max_entries:
                    self._windows.pop(next(iter(self._windows)))
                self._windows[certificate] = window
        valid_from, valid_until = window
        if not valid_from <= moment <= valid_until:
            raise UntrustedCertificate(
                f"certificate {certificate.subject.rfc4514_string()} (or its issuer) is valid"
                f" only from {valid_from:%Y-%m-%d %H:%M} to {valid_until:%Y-%m-%d %H:%M} UTC"
            )

    def _verify_chain(
        self,
        certificate: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        moment: datetime,
    ) -> tuple[datetime, datetime]:
        # The signer's certificate is an application certificate, not a TLS one: its
        # key usages are the issuer's business, so only CAs get web-PKI extension checks.
        verifier = (
            verification.PolicyBuilder()
            .store(self._store)
            .time(moment)
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            chain = verifier.verify(certificate, list(intermediates)).chain
        except verification.VerificationError as exc:
            raise UntrustedCertificate(
                f"certificate {certificate.subject.rfc4514_string()} issued by"
                f" {certificate.issuer.rfc4514_string()} is not trusted: {exc}"
            ) from exc
        return (
            max(c.not_valid_before_utc for c in chain),
            min(c.not_valid_after_utc for c in chain),
        )


_X509_CERTIFICATES = f"{{{DS_NS}}}KeyInfo/{{{DS_NS}}}X509Data/{{{DS_NS}}}X509Certificate"


def signature_certificates(
    signature: etree._Element,
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The signing certificate in KeyInfo/X509Data and any others sent along with it."""
    texts = tuple(element.text or "" for element in signature.iterfind(_X509_CERTIFICATES))
    if not texts:
        raise signxml.InvalidInput("the signature carries no X509Certificate")
    leaf, others = _certificates_of(texts)
    return leaf, list(others)


# Every message of a sender carries the same certificate text: it is decoded, parsed
# and sorted into signer and others once per distinct text (a failure is not cached,
# so a bad text fails alike every time).
@functools.lru_cache(maxsize=1024)
def _certificates_of(
    texts: tuple[str, ...],
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
    certificates = []
    try:
        for text in texts:
            der = base64.b64decode("".join(text.split()), validate=True)
            certificates.append(x509.load_der_x509_certificate(der))
        # cryptography parses names when first asked, so a garbled one fails only here.
        issuers = {c.issuer for c in certificates}
        # The signer is the one certificate that issued none of the others.
        leaf = next((c for c in certificates if c.subject not in issuers), certificates[0])
    except ValueError as exc:
        raise signxml.InvalidInput(f"X509Certificate is not a certificate: {exc}") from exc
    return leaf, tuple(c for c in certificates if c is not leaf)


_XML_WHITESPACE = " \t\r\n"
_NAME = re.compile(r"^(?:([A-Za-z_][\w.-]*):)?([A-Za-z_][\w.-]*)$")
_clark_paths: dict[tuple[str, str], str | None] = {}


def _clark_path(xpath: str, query: str) -> str | None:
    """signxml's `xpath` + "prefix:Name" query with the prefix resolved, if it is that
    simple; None for anything else."""
    key = (xpath, query)
    if key in _clark_paths:
        return _clark_paths[key]
    path = None
    match = _NAME.match(query)
    if match is not None and xpath in ("", "./", ".//"):
        uri = signxml_namespaces.get(match.group(1) or "ds")
        if uri is not None:
            path = f"{xpath}{{{uri}}}{match.group(2)}"
    # The keys are signxml's own literal queries and the configured location: few.
    _clark_paths[key] = path
    return path


class _Verifier(signxml.XMLVerifier):
    """signxml's verifier, without its first copy of an element it is given.

    signxml serializes and reparses its input once to detach it from its ancestors,
    and then again, from that copy, for each reference it checks (the tree whose
    signature the enveloped transform removes). The second copy made straight from
    the element is the same tree: a sub-element serializes with every namespace
    declared on its ancestors, so both see the same namespace context. signxml only
    reads the element, never changes it.

    The first copy also refuses what does not survive the round trip (an entity
    reference our parser kept, text after the element), before anything else; such
    an element still gets it, so it fails as before.
    """

    def _find(self, element: Any, query: str, require: bool = True, xpath: str = "") -> Any:
        # signxml finds each part of the signature by a prefixed path, which lxml
        # resolves against signxml's namespace map on every call: resolved once, the
        # same path finds the same element. A miss goes to signxml for its error.
        path = _clark_path(xpath, query)
        if path is None:
            return super()._find(element, query, require=require, xpath=xpath)
        result = element.find(path)
        if result is None and require:
            return super()._find(element, query, require=require, xpath=xpath)
        return result

    def get_root(self, data: Any) -> Any:
        if (
            isinstance(data, etree._Element)
            and not (data.tail or "").strip(_XML_WHITESPACE)
            and next(data.iter(etree.Entity), None) is None
        ):
            return data
        return super().get_root(data)


_RSA = frozenset(
    {SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA384, SignatureMethod.RSA_SHA512}
)
_DIGESTS = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})
# location "./": the signature must be a child of the signed element (enveloped).
SHA2_ONLY = signxml.SignatureConfiguration(
    location="./", expect_references=1, signature_methods=_RSA, digest_algorithms=_DIGESTS
)
WITH_SHA1 = signxml.SignatureConfiguration(
    location="./",
    expect_references=1,
    signature_methods=_RSA | {SignatureMethod.RSA_SHA1},
    digest_algorithms=_DIGESTS | {DigestAlgorithm.SHA1},
)


def verify_signature(
    element: etree._Element,
    config: signxml.SignatureConfiguration,
    *,
    validate_schema: bool = True,
) -> tuple[etree._Element, x509.Certificate, list[x509.Certificate]]:
    """Verify the signature enveloped in `element` with the certificate it carries.

    Returns what the signature covers (never the unsigned input: see what is signed),
    the signer's certificate and any others sent along. Whether that certificate is
    trusted is the caller's next question (`CertificateTrust.check`): the CIS answers
    the two failures with different codes (s004, s002). Raises signxml's exceptions.
    """
    signature = element.find(SIGNATURE)
    if signature is None:
        raise signxml.InvalidInput(f"{etree.QName(element).localname} is not signed")
    leaf, others = signature_certificates(signature)
    # lxml serializes a sub-element with every namespace declared on its ancestors,
    # which is exactly the namespace context inclusive c14n sees in the document.
    try:
        result = _Verifier().verify(
            element, x509_cert=leaf, expect_config=config, validate_schema=validate_schema
        )
    except signxml.exceptions.SignXMLException:
        raise
    except (ValueError, TypeError, etree.LxmlError) as exc:
        # signxml lets some malformed input through as plain errors: an algorithm URI
        # it does not know (ValueError), a key that does not fit the method (TypeError).
        raise signxml.InvalidInput(f"unusable signature: {exc!r}") from exc
    assert isinstance(result, signxml.VerifyResult)  # expect_references=1
    # The reference must name this very element: another one with the same name could
    # sit inside ds:Object, signed, while the unsigned outer element says something else.
    # signxml refuses an Id that resolves to more than one element.
    reference = result.signature_xml.find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
    uri = reference.get("URI") if reference is not None else None
    own_id = element.get("Id")
    covers_element = uri == "" or (own_id is not None and uri == f"#{own_id}")
    if not covers_element or result.signed_xml is None:
        raise signxml.InvalidSignature(
            f"the signature does not cover the {etree.QName(element).localname} element"
        )
    return result.signed_xml, leaf, others


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.value.ca)


def _describe(certificate: x509.Certificate) -> str:
    return (
        f"{certificate.subject.rfc4514_string()} (issuer {certificate.issuer.rfc4514_string()},"
        f" serial {certificate.serial_number:x})"
    )


class CisSigner:
    """Who may sign the CIS's answers: the environment's CIS signing certificate
    ("fiskalcis") itself, or a certificate with its exact subject and issuer that
    chains to the given CAs (FINA's chain in production). Never just any certificate
    under a CA: a business's own fiscal certificate comes from the same CA, and an
    answer it signed must not pass for the tax authority's.
    """

    def __init__(
        self,
        *,
        certificate: x509.Certificate | None = None,
        subject: x509.Name | None = None,
        issuer: x509.Name | None = None,
        anchors: Sequence[x509.Certificate] = (),
    ) -> None:
        if certificate is not None:
            if subject is not None or issuer is not None or anchors:
                raise ValueError(
                    "give the CIS certificate itself, or its subject and issuer"
                    " with the CAs, not both"
                )
            if _is_ca(certificate):
                raise ValueError(
                    f"{_describe(certificate)} is a CA certificate: trust the CIS signing"
                    " certificate itself, or its subject and issuer under this CA"
                )
        elif subject is None or issuer is None or not anchors:
            raise ValueError(
                "the CIS signer needs its certificate, or its subject, its issuer and the CA"
                " certificates its chain ends in"
            )
        self.certificate = certificate
        self.subject = subject
        self.issuer = issuer
        self._chain = CertificateTrust(anchors) if certificate is None else None

    @classmethod
    def pinned(cls, certificate: x509.Certificate) -> CisSigner:
        return cls(certificate=certificate)

    @classmethod
    def named(
        cls, subject: str | x509.Name, issuer: str | x509.Name, anchors: Sequence[x509.Certificate]
    ) -> CisSigner:
        """Subject and issuer as RFC 4514 strings (`openssl x509 -nameopt rfc2253`)."""
        return cls(
            subject=_name(subject, "subject"), issuer=_name(issuer, "issuer"), anchors=anchors
        )

    def describe(self) -> str:
        if self.certificate is not None:
            return f"the certificate {_describe(self.certificate)}"
        assert self.subject is not None and self.issuer is not None
        return f"subject {self.subject.rfc4514_string()} issued by {self.issuer.rfc4514_string()}"

    def check(
        self,
        signer: x509.Certificate,
        others: Sequence[x509.Certificate] = (),
        *,
        now: datetime | None = None,
    ) -> None:
        """Raises UntrustedCertificate unless `signer` is the CIS signer, valid now."""
        moment = now or datetime.now(UTC)
        if self.certificate is not None:
            if signer != self.certificate:  # cryptography compares the DER
                raise UntrustedCertificate(
                    f"signed by {_describe(signer)}, not by the CIS certificate"
                    f" {_describe(self.certificate)}"
                )
            if not signer.not_valid_before_utc <= moment <= signer.not_valid_after_utc:
                raise UntrustedCertificate(
                    f"the CIS certificate {_describe(signer)} is valid only from"
                    f" {signer.not_valid_before_utc:%Y-%m-%d %H:%M} to"
                    f" {signer.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
                )
            return
        if signer.subject != self.subject or signer.issuer != self.issuer:
            raise UntrustedCertificate(
                f"signed by {_describe(signer)}, not by the CIS signer ({self.describe()})"
            )
        assert self._chain is not None
        self._chain.check(signer, others, now=moment)


# Attribute names `openssl x509 -nameopt rfc2253` prints that RFC 4514 does not define;
# CIS's own certificate has organizationIdentifier (its OIB, "HR" + 11 digits).
_OPENSSL_NAMES = {
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "givenName": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
}


def _name(value: str | x509.Name, what: str) -> x509.Name:
    if isinstance(value, x509.Name):
        return value
    try:
        name = x509.Name.from_rfc4514_string(value, _OPENSSL_NAMES)
    except ValueError as exc:
        raise ValueError(
            f"the CIS signer's {what} {value!r} is not an RFC 4514 name like"
            f" 'CN=fiskalcis,O=FINA,C=HR': {exc}"
        ) from exc
    if not list(name):
        raise ValueError(f"the CIS signer's {what} is empty")
    return name


class AnswerVerifier:
    """Checks the CIS answer's enveloped signature, made by the CIS signer (`CisSigner`).

    Accepts RSA-SHA1 as well as SHA-2: the service still signs some answers the old way.
    """

    def __init__(self, signer: CisSigner) -> None:
        if not isinstance(signer, CisSigner):
            raise TypeError(
                "AnswerVerifier needs a CisSigner: the CIS certificate, or its"
                " subject and issuer with the CAs"
            )
        self.signer = signer

    def verify(self, answer: bytes) -> etree._Element:
        content = open_envelope(answer)
        try:
            signed, signer, others = verify_signature(content, WITH_SHA1)
            self.signer.check(signer, others)
        except signxml.exceptions.SignXMLException as exc:
            raise AnswerInvalid(f"the answer's signature is invalid: {exc}") from exc
        except UntrustedCertificate as exc:
            raise AnswerInvalid(f"the answer is not signed by the CIS: {exc}") from exc
        return signed


@dataclass(frozen=True)
class CisAnswer:
    message_id: str | None
    jir: str | None
    errors: tuple[tuple[str, str], ...]
    document: bytes


def _text(element: etree._Element, path: str) -> str | None:
    found = element.find(path)
    if found is None:
        return None
    return " ".join((found.text or "").split())


def parse_racun_answer(
    body: bytes, verifier: AnswerVerifier | None, *, expected_message_id: str | None = None
) -> CisAnswer:
    """Read a `racuni` answer; with a verifier, only from what its signature covers."""
    answer = verifier.verify(body) if verifier is not None else open_envelope(body)
    if answer.tag != RACUN_ODGOVOR:
        raise AnswerInvalid(f"expected RacunOdgovor, got {etree.QName(answer).localname}")
    ns = f"{{{F73_NS}}}"
    message_id = _text(answer, f"{ns}Zaglavlje/{ns}IdPoruke") or None
    jir = _text(answer, f"{ns}Jir") or None
    errors = tuple(
        (_text(greska, f"{ns}SifraGreske") or "", _text(greska, f"{ns}PorukaGreske") or "")
        for greska in answer.iterfind(f"{ns}Greske/{ns}Greska")
    )
    if jir is None and not errors:
        raise AnswerInvalid("the answer has neither a JIR nor errors")
    if jir is not None and not _UUID.match(jir):
        raise AnswerInvalid(f"the JIR {jir!r} is not a UUID")
    if expected_message_id is not None and message_id != expected_message_id:
        # A refusal of a request the service could not read carries an empty IdPoruke
        # (the schema allows it there): it cannot name our message, but it is ours.
        if not (message_id is None and jir is None):
            raise AnswerInvalid(
                f"the answer is for message {message_id}, not {expected_message_id}"
            )
    return CisAnswer(message_id=message_id, jir=jir, errors=errors, document=body)


@dataclass(frozen=True)
class ChangeAnswer:
    """The answer to promijeniPodatkeRacuna: PorukaOdgovora (p005) or Greske."""

    message_id: str | None
    code: str | None
    message: str | None
    errors: tuple[tuple[str, str], ...]
    document: bytes

    @property
    def accepted(self) -> bool:
        return self.code is not None and not self.errors


def parse_change_answer(
    body: bytes, verifier: AnswerVerifier | None, *, expected_message_id: str | None = None
) -> ChangeAnswer:
    """Read a `promijeniPodatkeRacuna` answer; with a verifier, only from what its
    signature covers."""
    answer = verifier.verify(body) if verifier is not None else open_envelope(body)
    if answer.tag != PROMIJENI_PODATKE_ODGOVOR:
        raise AnswerInvalid(
            f"expected PromijeniPodatkeRacunaOdgovor, got {etree.QName(answer).localname}"
        )
    ns = f"{{{F73_NS}}}"
    message_id = _text(answer, f"{ns}Zaglavlje/{ns}IdPoruke") or None
    code = _text(answer, f"{ns}PorukaOdgovora/{ns}SifraPoruke") or None
    errors = tuple(
        (_text(greska, f"{ns}SifraGreske") or "", _text(greska, f"{ns}PorukaGreske") or "")
        for greska in answer.iterfind(f"{ns}Greske/{ns}Greska")
    )
    if code is None and not errors:
        raise AnswerInvalid("the answer has neither a PorukaOdgovora nor errors")
    if expected_message_id is not None and message_id not in (expected_message_id, None):
        raise AnswerInvalid(f"the answer is for message {message_id}, not {expected_message_id}")
    return ChangeAnswer(
        message_id=message_id,
        code=code,
        message=_text(answer, f"{ns}PorukaOdgovora/{ns}Poruka"),
        errors=errors,
        document=body,
    )


def parse_echo_answer(body: bytes) -> str:
    answer = open_envelope(body)
    if answer.tag != ECHO_RESPONSE:
        raise AnswerInvalid(f"expected EchoResponse, got {etree.QName(answer).localname}")
    return answer.text or ""
