"""What the sandbox CIS sends back: signed RacunOdgovor, EchoResponse, SOAP faults.

Answers look like the spec's examples (§9.4, §9.6): a SOAP 1.1 envelope whose
RacunOdgovor carries an `Id` and an enveloped signature over it with inclusive c14n,
made with the service's own certificate.

Everything that is the same in every answer (the envelope, the answer's header, the
KeyInfo with the service's certificate) is built once in `AnswerSigner`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import signxml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.util import strip_pem_header

from fiscal.hr_cis.signing import FreshRootSigner
from fiscal.hr_cis.soap import (
    DS_NS,
    ECHO_RESPONSE,
    F73_NS,
    PROMIJENI_PODATKE_ODGOVOR,
    RACUN_ODGOVOR,
    SOAP_NS,
)

ZAGREB = ZoneInfo("Europe/Zagreb")
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
_TNS = f"{{{F73_NS}}}"
# PorukaOdgovora of a successful promijeniPodatkeRacuna (spec v2.6 §2.1.5.4).
CHANGE_ACCEPTED = ("p005", "Uspješna prijava promjene podataka računa.")
# PorukaGreske is at most 500 characters (PorukaGreskeType); IdPoruke of an answer 36.
_MAX_MESSAGE = 500
_MAX_MESSAGE_ID = 36


class LegacySha1Signer(signxml.XMLSigner):
    """signxml refuses SHA-1 unless told otherwise; old CIS answers (and old clients)
    still sign with RSA-SHA1, and the sandbox must be able to produce both."""

    def check_deprecated_methods(self) -> None:
        return None


class _InPlaceSigner(FreshRootSigner, LegacySha1Signer):
    """Signs a root element just built, in place (fiscal/hr_cis/signing.py says why),
    with SHA-1 allowed. Holds the element being signed between calls into signxml:
    one per thread."""


def cis_datetime(moment: datetime) -> str:
    """dd.MM.yyyyTHH:mm:ss in Croatian local time (DatumVrijemeType)."""
    return moment.astimezone(ZAGREB).strftime("%d.%m.%YT%H:%M:%S")


_ENVELOPE_NSMAP = {"soap": SOAP_NS, "xsd": XSD_NS, "xsi": XSI_NS}


def _empty_envelope() -> etree._Element:
    envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap=_ENVELOPE_NSMAP)
    etree.SubElement(envelope, f"{{{SOAP_NS}}}Body")
    return envelope


def _envelope(content: etree._Element) -> bytes:
    envelope = _empty_envelope()
    envelope[0].append(content)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _answer_skeleton(tag: str = RACUN_ODGOVOR) -> etree._Element:
    """An answer (RacunOdgovor, PromijeniPodatkeRacunaOdgovor) with its header, texts
    left empty, as a root of its own; its Id is its name, as in the spec's examples.

    Inclusive c14n of the answer in its envelope sees the envelope's namespace
    declarations, so the root declares them too; once the answer is in the envelope
    lxml drops them again as redundant, leaving the answer's own `tns` alone.
    """
    answer = etree.Element(
        tag, nsmap={"tns": F73_NS, **_ENVELOPE_NSMAP}, Id=etree.QName(tag).localname
    )
    header = etree.SubElement(answer, f"{_TNS}Zaglavlje")
    etree.SubElement(header, f"{_TNS}IdPoruke")
    etree.SubElement(header, f"{_TNS}DatumVrijeme")
    return answer


def _text(text: str) -> str | None:
    """An empty text as no text: answers used to be reparsed before they were sent,
    which made `<x></x>` into `<x/>`, and they still look the same."""
    return text or None


def _key_info(certificate: x509.Certificate) -> etree._Element:
    """The KeyInfo signxml makes of `cert=[certificate]`, with the same certificate text."""
    ds = f"{{{DS_NS}}}"
    key_info = etree.Element(f"{ds}KeyInfo", nsmap={"ds": DS_NS})
    data = etree.SubElement(key_info, f"{ds}X509Data")
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    etree.SubElement(data, f"{ds}X509Certificate").text = strip_pem_header(pem)
    return key_info


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
        self._options: dict[str, Any] = {
            "method": signxml.methods.enveloped,
            "signature_algorithm": algorithm,
            "digest_algorithm": digest,
            "c14n_algorithm": CanonicalizationMethod.CANONICAL_XML_1_0,
        }
        self._signers = threading.local()
        self._key = key
        self._key_info = _key_info(certificate)
        self._skeleton = _answer_skeleton()
        self._change_skeleton = _answer_skeleton(PROMIJENI_PODATKE_ODGOVOR)
        self._empty = _empty_envelope()

    def _signer(self) -> _InPlaceSigner:
        signer: _InPlaceSigner | None = getattr(self._signers, "signer", None)
        if signer is None:
            signer = self._signers.signer = _InPlaceSigner(**self._options)
        return signer

    def racun_answer(
        self,
        message_id: str,
        now: datetime,
        *,
        jir: str | None = None,
        errors: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        return self._answer(self._skeleton, message_id, now, jir=jir, errors=errors)

    def change_answer(
        self,
        message_id: str,
        now: datetime,
        *,
        errors: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        """PromijeniPodatkeRacunaOdgovor: PorukaOdgovora p005 when there are no errors."""
        return self._answer(
            self._change_skeleton,
            message_id,
            now,
            message=None if errors else CHANGE_ACCEPTED,
            errors=errors,
        )

    def _answer(
        self,
        skeleton: etree._Element,
        message_id: str,
        now: datetime,
        *,
        jir: str | None = None,
        message: tuple[str, str] | None = None,
        errors: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        answer = copy.deepcopy(skeleton)
        header = answer[0]
        header[0].text = _text(message_id[:_MAX_MESSAGE_ID])
        header[1].text = _text(cis_datetime(now))
        if jir is not None:
            etree.SubElement(answer, f"{_TNS}Jir").text = _text(jir)
        if message is not None:
            poruka = etree.SubElement(answer, f"{_TNS}PorukaOdgovora")
            etree.SubElement(poruka, f"{_TNS}SifraPoruke").text = message[0]
            etree.SubElement(poruka, f"{_TNS}Poruka").text = message[1]
        if errors:
            greske = etree.SubElement(answer, f"{_TNS}Greske")
            for code, text in errors:
                greska = etree.SubElement(greske, f"{_TNS}Greska")
                etree.SubElement(greska, f"{_TNS}SifraGreske").text = _text(code)
                etree.SubElement(greska, f"{_TNS}PorukaGreske").text = _text(text[:_MAX_MESSAGE])
        # No reference_uri: signxml then names the signed element by its Id, the
        # same "#RacunOdgovor", without searching the tree for it and copying it again.
        signed = self._signer().sign_in_place(
            answer, key=self._key, key_info=copy.deepcopy(self._key_info)
        )
        envelope = copy.deepcopy(self._empty)
        envelope[0].append(signed)
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
