"""The checks the CIS makes on a RacunZahtjev or a PromijeniPodatkeRacunaZahtjev, in
its order, each with its own code.

s001 schema, s004 signature (RSA-SHA1 included: the test service refuses it since
1 Jul 2026, spec v2.7), s002 certificate chain and validity, s003 OIB in the
certificate, s005 OIB in the message equal to the certificate's (spec §2.1.4); then
the 2026 restrictive rules (s013, `restrictive_errors`).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import signxml
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from fiscal.hr_cis.certificate import oib_of
from fiscal.hr_cis.soap import (
    F73_NS,
    SHA2_ONLY,
    WITH_SHA1,
    CertificateTrust,
    UntrustedCertificate,
    verify_signature,
)

SCHEMA_FILE = "FiskalizacijaSchema.xsd"
_TNS = f"{{{F73_NS}}}"

# The service's texts (spec v2.6 §2.1.4); s001's is followed by the schema's complaint.
MESSAGES = {
    "s001": "Poruka nije u skladu s XML shemom : ",
    "s002": "Certifikat nije izdan od strane produkcijskog potpisnika pouzdanog izdavatelja"
    " certifikata u RH ili je istekao ili je ukinut.",
    "s003": "Certifikat ne sadrži obvezan podatak 'OIB'.",
    "s004": "Neispravan digitalni potpis.",
    "s005": "OIB iz poruke zahtjeva nije jednak OIB-u iz certifikata.",
    "s006": "Sistemska pogreška prilikom obrade zahtjeva.",
    # promijeniPodatkeRacuna (spec v2.6 §2.1.5.4).
    "s011": "Datum izdavanja računa u poruci promjene podataka računa nije jednak trenutnom"
    " datumu.",
    "s012": "Podaci za račun u poruci promjene podataka računa razlikuju se od podataka"
    " fiskaliziranog računa ili račun nije fiskaliziran.",
    # The 2026 restrictive errors; the service's exact text is not in shared/specs
    # (*uncertain*), so the sandbox names the rule that failed after this prefix.
    "s013": "Restriktivna greška: ",
}


def default_spec_dir() -> Path:
    """The published CIS documents: `../shared/specs/hr-cis/` beside the repository."""
    explicit = os.environ.get("FISCOBRIDGE_CIS_SPEC_DIR")
    if explicit:
        return Path(explicit)
    return Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "hr-cis"


def load_schema(spec_dir: Path) -> etree.XMLSchema:
    path = spec_dir / SCHEMA_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: point --spec-dir (or FISCOBRIDGE_CIS_SPEC_DIR) at the folder"
            " holding the CIS XML schema"
        )
    # Parsed from its path so the schema's relative import of the xmldsig schema resolves.
    return etree.XMLSchema(etree.parse(str(path)))


# A sender signs every request with the same certificate; its OIB is read once.
# Keyed by the certificate, which cryptography compares by its DER.
@functools.lru_cache(maxsize=1024)
def _oib_of(certificate: x509.Certificate) -> str | None:
    return oib_of(certificate)


class Refusal(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.message = MESSAGES[code] + detail


@dataclass(frozen=True)
class AcceptedInvoice:
    message_id: str
    oib: str
    issued_at: str
    br_ozn_rac: str
    ozn_pos_pr: str
    ozn_nap_ur: str
    total: str
    zki: str
    nak_dost: bool
    sequence_mark: str = "P"
    in_vat_system: str = "true"
    payment: str = ""
    operator_oib: str = ""
    buyer_oib: str | None = None
    # The certificate that signed the request: not part of the ledger's record.
    signer: x509.Certificate | None = field(default=None, compare=False, repr=False)

    def fiscalized_data(self) -> tuple[str | None, ...]:
        """What a data change must repeat exactly as fiscalized (s012).

        The spec (§2.1.5) says the change carries "the data the issuer sent in the
        invoice request" plus the changed payment method and buyer OIB; which fields
        the service compares is not published (*uncertain*). The sandbox compares those
        that identify and protect the invoice, the original payment method and buyer
        OIB included (the data as first sent, not as changed since).
        """
        return (
            self.oib,
            self.in_vat_system,
            self.issued_at,
            self.sequence_mark,
            self.br_ozn_rac,
            self.ozn_pos_pr,
            self.ozn_nap_ur,
            self.total,
            self.payment,
            self.operator_oib,
            self.zki,
            self.buyer_oib,
        )


@dataclass(frozen=True)
class RequestedChange:
    """A promijeniPodatkeRacuna that passed the checks: the invoice as the message
    repeats it, and the new payment method and buyer OIB ("" removes the OIB)."""

    invoice: AcceptedInvoice
    payment: str
    buyer_oib: str


_ZKI_HASHES = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}


def expected_zki(key: rsa.RSAPrivateKey, invoice: AcceptedInvoice, hash_name: str) -> str:
    """The ZKI the spec's steps (§12) give for the invoice as received: OIB, DatVrijeme
    with a space for the T, BrOznRac, OznPosPr, OznNapUr, IznosUkupno, concatenated,
    UTF-8, signed RSA PKCS#1 v1.5 with `hash_name` (v2.6: SHA-1; v2.7 implementations:
    SHA-256, *uncertain*), MD5 of the signature in lowercase hex.

    Written here from the spec, not taken from fiscal/, so that it witnesses it."""
    text = (
        invoice.oib
        + invoice.issued_at.replace("T", " ")
        + invoice.br_ozn_rac
        + invoice.ozn_pos_pr
        + invoice.ozn_nap_ur
        + invoice.total
    )
    signature = key.sign(text.encode("utf-8"), padding.PKCS1v15(), _ZKI_HASHES[hash_name])
    return hashlib.md5(signature, usedforsecurity=False).hexdigest()


def restrictive_errors(payment: str, buyer_oib: str | None) -> str | None:
    """The 2026 restrictive rule the invoice data breaks, if any (answered s013).

    OibPrimateljaRacuna goes only with B2B invoices paid in cash (G) or by card (K);
    never with a transaction account (T): such an invoice is an e-invoice, not a CIS
    one (hr-fiscal-record.md, Which invoices go to CIS). Which code the service gives
    is not in shared/specs (*uncertain*): s013, the 2026 restrictive errors.
    """
    if buyer_oib and payment == "T":
        return (
            "OibPrimateljaRacuna se ne dostavlja uz način plaćanja T (transakcijski račun):"
            " B2B račun plaćen transakcijskim računom je eRačun."
        )
    return None


def message_id_of(request: etree._Element) -> str:
    """IdPoruke as sent, for answering even a request that fails the schema."""
    return (request.findtext(f"{_TNS}Zaglavlje/{_TNS}IdPoruke") or "").strip()


def _child_text(element: etree._Element, name: str, inner: str | None = None) -> str:
    """`findtext` of the tns path `name` or `name/inner`, stripped, "" when absent:
    the first match in document order, by lxml's child iteration, not ElementPath."""
    for child in element.iterchildren(f"{_TNS}{name}"):
        if inner is None:
            return (child.text or "").strip()
        for grandchild in child.iterchildren(f"{_TNS}{inner}"):
            return (grandchild.text or "").strip()
    return ""


class RequestChecks:
    def __init__(
        self, schema: etree.XMLSchema, trust: CertificateTrust, *, allow_sha1: bool = False
    ) -> None:
        self._schema = schema
        self._trust = trust
        self._signature_config = WITH_SHA1 if allow_sha1 else SHA2_ONLY

    def check(self, request: etree._Element, now: datetime) -> AcceptedInvoice:
        """A RacunZahtjev through s001-s005 and the restrictive rules (s013)."""
        invoice, _ = self._check(request, now)
        refusal = restrictive_errors(invoice.payment, invoice.buyer_oib)
        if refusal is not None:
            raise Refusal("s013", refusal)
        return invoice

    def check_change(self, request: etree._Element, now: datetime) -> RequestedChange:
        """A PromijeniPodatkeRacunaZahtjev through s001-s005 and the restrictive rules
        on the changed data (s013). Whether it matches a fiscalized invoice of today
        (s011, s012) is the ledger's question."""
        invoice, racun = self._check(request, now)
        payment = _child_text(racun, "PromijenjeniNacinPlac")
        buyer_oib = _child_text(racun, "PromijenjeniOibPrimateljaRacuna")
        refusal = restrictive_errors(payment, buyer_oib or None)
        if refusal is not None:
            raise Refusal("s013", refusal)
        return RequestedChange(invoice, payment, buyer_oib)

    def _check(
        self, request: etree._Element, now: datetime
    ) -> tuple[AcceptedInvoice, etree._Element]:
        if not self._schema.validate(request):
            # lxml-stubs do not describe the error log.
            error = self._schema.error_log.last_error  # type: ignore[attr-defined]
            raise Refusal("s001", error.message if error is not None else "")
        try:
            # The whole request, ds:Signature included, has just passed the schema.
            signed, certificate, others = verify_signature(
                request, self._signature_config, validate_schema=False
            )
        except signxml.exceptions.SignXMLException as exc:
            raise Refusal("s004") from exc
        try:
            self._trust.check(certificate, others, now=now)
        except UntrustedCertificate as exc:
            raise Refusal("s002") from exc
        certificate_oib = _oib_of(certificate)
        if certificate_oib is None:
            raise Refusal("s003")
        # Read from what the signature covers, not from the document as received.
        racun = signed.find(f"{_TNS}Racun")
        assert racun is not None  # the schema requires it
        oib = _child_text(racun, "Oib")
        if oib != certificate_oib:
            raise Refusal("s005")
        invoice = AcceptedInvoice(
            message_id=message_id_of(signed),
            oib=oib,
            issued_at=_child_text(racun, "DatVrijeme"),
            br_ozn_rac=_child_text(racun, "BrRac", "BrOznRac"),
            ozn_pos_pr=_child_text(racun, "BrRac", "OznPosPr"),
            ozn_nap_ur=_child_text(racun, "BrRac", "OznNapUr"),
            total=_child_text(racun, "IznosUkupno"),
            zki=_child_text(racun, "ZastKod"),
            nak_dost=_child_text(racun, "NakDost") in ("true", "1"),
            sequence_mark=_child_text(racun, "OznSlijed"),
            in_vat_system=_child_text(racun, "USustPdv"),
            payment=_child_text(racun, "NacinPlac"),
            operator_oib=_child_text(racun, "OibOper"),
            buyer_oib=_child_text(racun, "OibPrimateljaRacuna") or None,
            signer=certificate,
        )
        return invoice, racun
