"""What the sandbox CIS sends back: signed RacunOdgovor, EchoResponse, SOAP faults.

Answers look like the spec's examples (§9.4, §9.6): a SOAP 1.1 envelope whose
RacunOdgovor carries an `Id` and an enveloped signature over it with inclusive c14n,
made with the service's own certificate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import signxml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from fiscal.hr_cis.soap import ECHO_RESPONSE, F73_NS, RACUN_ODGOVOR, SOAP_NS

ZAGREB = ZoneInfo("Europe/Zagreb")
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
_TNS = f"{{{F73_NS}}}"
_ANSWER_ID = "RacunOdgovor"
# PorukaGreske is at most 500 characters (PorukaGreskeType); IdPoruke of an answer 36.
_MAX_MESSAGE = 500
_MAX_MESSAGE_ID = 36


class LegacySha1Signer(signxml.XMLSigner):
    """signxml refuses SHA-1 unless told otherwise; old CIS answers (and old clients)
    still sign with RSA-SHA1, and the sandbox must be able to produce both."""

    def check_deprecated_methods(self) -> None:
        return None


def cis_datetime(moment: datetime) -> str:
    """dd.MM.yyyyTHH:mm:ss in Croatian local time (DatumVrijemeType)."""
    return moment.astimezone(ZAGREB).strftime("%d.%m.%YT%H:%M:%S")


def _envelope(content: etree._Element) -> bytes:
    envelope = etree.Element(
        f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "xsd": XSD_NS, "xsi": XSI_NS}
    )
    etree.SubElement(envelope, f"{{{SOAP_NS}}}Body").append(content)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


class AnswerSigner:
    def __init__(
        self,
        key: rsa.RSAPrivateKey,
        certificate: x509.Certificate,
        *,
        sha1: bool = False,
    ) -> None:
        algorithm = SignatureMethod.RSA_SHA1 if sha1 else SignatureMethod.RSA_SHA256
        digest = DigestAlgorithm.SHA1 if sha1 else DigestAlgorithm.SHA256
        self._signer = LegacySha1Signer(
            method=signxml.methods.enveloped,
            signature_algorithm=algorithm,
            digest_algorithm=digest,
            c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_0,
        )
        self._key = key
        self._certificate = certificate

    def racun_answer(
        self,
        message_id: str,
        now: datetime,
        *,
        jir: str | None = None,
        errors: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        envelope = etree.Element(
            f"{{{SOAP_NS}}}Envelope", nsmap={"soap": SOAP_NS, "xsd": XSD_NS, "xsi": XSI_NS}
        )
        body = etree.SubElement(envelope, f"{{{SOAP_NS}}}Body")
        answer = etree.SubElement(body, RACUN_ODGOVOR, nsmap={"tns": F73_NS}, Id=_ANSWER_ID)
        header = etree.SubElement(answer, f"{_TNS}Zaglavlje")
        etree.SubElement(header, f"{_TNS}IdPoruke").text = message_id[:_MAX_MESSAGE_ID]
        etree.SubElement(header, f"{_TNS}DatumVrijeme").text = cis_datetime(now)
        if jir is not None:
            etree.SubElement(answer, f"{_TNS}Jir").text = jir
        if errors:
            greske = etree.SubElement(answer, f"{_TNS}Greske")
            for code, message in errors:
                greska = etree.SubElement(greske, f"{_TNS}Greska")
                etree.SubElement(greska, f"{_TNS}SifraGreske").text = code
                etree.SubElement(greska, f"{_TNS}PorukaGreske").text = message[:_MAX_MESSAGE]
        # Signed where it stands: the copy signxml signs carries the envelope's
        # namespace declarations, as inclusive c14n of the element in place does.
        signed = self._signer.sign(
            answer, key=self._key, cert=[self._certificate], reference_uri=f"#{_ANSWER_ID}"
        )
        body.replace(answer, signed)
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def echo_answer(text: str) -> bytes:
    echo = etree.Element(ECHO_RESPONSE, nsmap={"tns": F73_NS})
    echo.text = text
    return _envelope(echo)


def soap_fault(code: str, text: str) -> bytes:
    """A SOAP 1.1 Fault; `code` is Client (the request is wrong) or Server."""
    fault = etree.Element(f"{{{SOAP_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = text
    return _envelope(fault)
