"""The business's fiscal certificate: a PKCS#12 (.pfx/.p12) file and its password.

Loading checks everything the CIS would refuse the certificate for that we can
see locally (expired, not yet valid, no OIB, OIB of another business), so the
person uploading it hears why at once instead of after the first s002/s003/s005.
Error messages never contain the password.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from fiscal.authority import CredentialsError


class CertificateError(CredentialsError):
    code = "certificate_error"


class NotPkcs12(CertificateError):
    code = "not_pkcs12"


class WrongPassword(CertificateError):
    code = "wrong_password"


class NoPrivateKey(CertificateError):
    code = "no_private_key"


class NoCertificate(CertificateError):
    code = "no_certificate"


class UnsupportedKey(CertificateError):
    code = "unsupported_key"


class KeyMismatch(CertificateError):
    code = "key_mismatch"


class CertificateExpired(CertificateError):
    code = "certificate_expired"


class CertificateNotYetValid(CertificateError):
    code = "certificate_not_yet_valid"


class NoOibInCertificate(CertificateError):
    code = "no_oib_in_certificate"


class OibMismatch(CertificateError):
    code = "oib_mismatch"


@dataclass(frozen=True)
class FiscalCertificate:
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    subject: str
    issuer: str
    serial: int
    oib: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str

    def check(self, *, expected_oib: str | None = None, now: datetime | None = None) -> None:
        """Raise the CertificateError the certificate deserves at `now` (default: now)."""
        moment = now or datetime.now(UTC)
        if moment < self.not_before:
            raise CertificateNotYetValid(
                f"the certificate is valid only from {self.not_before:%Y-%m-%d %H:%M} UTC;"
                " upload one that is valid now"
            )
        if moment > self.not_after:
            raise CertificateExpired(
                f"the certificate expired on {self.not_after:%Y-%m-%d %H:%M} UTC;"
                " renew it with FINA and upload the new one"
            )
        if expected_oib is not None and expected_oib != self.oib:
            raise OibMismatch(
                f"the certificate belongs to OIB {self.oib}, but this integration is for"
                f" OIB {expected_oib}; upload the certificate issued to {expected_oib}"
                " or correct the OIB"
            )


# "<Company> HR<OIB>" in O is FINA's layout; ETSI EN 319 412-1 organizationIdentifier
# ("VATHR-<OIB>") and serialNumber carry it in certificates of other Croatian trust
# service providers, which the CIS accepts since spec v2.6.
_OIB_IN_ORGANIZATION = re.compile(r"(?:^|\s)HR([0-9]{11})$")
_OIB_IN_IDENTIFIER = re.compile(r"^(?:VATHR-|NTRHR-|HR)([0-9]{11})$")


def oib_of(cert: x509.Certificate) -> str | None:
    subject = cert.subject
    for attribute in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        match = _OIB_IN_ORGANIZATION.search(str(attribute.value).strip())
        if match:
            return match.group(1)
    for oid in (NameOID.ORGANIZATION_IDENTIFIER, NameOID.SERIAL_NUMBER):
        for attribute in subject.get_attributes_for_oid(oid):
            match = _OIB_IN_IDENTIFIER.match(str(attribute.value).strip())
            if match:
                return match.group(1)
    return None


def _looks_like_pkcs12(data: bytes) -> bool:
    """PFX is DER: SEQUENCE { INTEGER 3, ... } (RFC 7292). Enough to tell a wrong
    password (cryptography reports both alike) from a file of another kind."""
    if len(data) < 8 or data[0] != 0x30:
        return False
    length_byte = data[1]
    offset = 2 if length_byte < 0x80 else 2 + (length_byte & 0x7F)
    return data[offset : offset + 3] == b"\x02\x01\x03"


def _not_pkcs12_message(data: bytes) -> str:
    if data.lstrip().startswith(b"-----BEGIN"):
        return (
            "this is a PEM text file, not a PKCS#12 certificate; upload the .pfx or .p12"
            " file FINA issued (it holds both the certificate and its private key)"
        )
    if not data:
        return "the certificate file is empty; upload the .pfx or .p12 file FINA issued"
    return "this file is not a PKCS#12 certificate; upload the .pfx or .p12 file FINA issued"


def _parse(pfx: bytes, password: str) -> FiscalCertificate:
    if not _looks_like_pkcs12(pfx):
        raise NotPkcs12(_not_pkcs12_message(pfx))
    candidates: list[bytes | None] = [password.encode()]
    if not password:
        candidates.append(None)
    loaded = None
    for candidate in candidates:
        try:
            loaded = pkcs12.load_key_and_certificates(pfx, candidate)
            break
        except ValueError:
            continue
    if loaded is None:
        raise WrongPassword(
            "the password does not open this certificate file; check the password FINA"
            " gave with it (it is case-sensitive)"
        )
    key, certificate, extra = loaded
    if key is None:
        if certificate is None and not extra:
            raise NotPkcs12("the PKCS#12 file is empty; export the certificate with its key again")
        raise NoPrivateKey(
            "the PKCS#12 file holds a certificate but not its private key; export it again"
            " including the private key"
        )
    if certificate is None:
        raise NoCertificate(
            "the PKCS#12 file holds a private key but not its certificate; export it again"
            " with the certificate issued for that key"
        )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UnsupportedKey(
            "the certificate's key is not an RSA key; the tax authority accepts RSA only"
        )
    if key.public_key().public_numbers() != _rsa_public(certificate).public_numbers():
        raise KeyMismatch(
            "the private key in the file does not belong to its certificate; export the"
            " certificate again together with its own key"
        )
    oib = oib_of(certificate)
    if oib is None:
        raise NoOibInCertificate(
            f"the certificate ({certificate.subject.rfc4514_string()}) carries no OIB;"
            " the tax authority needs a fiscal certificate issued to the business's OIB"
        )
    return FiscalCertificate(
        private_key=key,
        certificate=certificate,
        chain=tuple(extra),
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial=certificate.serial_number,
        oib=oib,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
    )


def _rsa_public(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise UnsupportedKey(
            "the certificate's key is not an RSA key; the tax authority accepts RSA only"
        )
    return public


def load_certificate(
    pfx: bytes,
    password: str,
    *,
    expected_oib: str | None = None,
    now: datetime | None = None,
) -> FiscalCertificate:
    certificate = _parse(pfx, password)
    certificate.check(expected_oib=expected_oib, now=now)
    return certificate


class CertificateCache:
    """Parses each (PFX, password) once: a PKCS#12 load costs tens of milliseconds.

    Validity and OIB are checked on every `get`, since a cached certificate can
    expire while the process runs. Entries are keyed by a digest, so the cache holds
    no password; the least recently used ones go beyond `max_entries`.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, FiscalCertificate] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(pfx: bytes, password: str) -> bytes:
        digest = hashlib.sha256()
        digest.update(len(pfx).to_bytes(8, "big"))
        digest.update(pfx)
        digest.update(password.encode())
        return digest.digest()

    def get(
        self,
        pfx: bytes,
        password: str,
        expected_oib: str | None = None,
        *,
        now: datetime | None = None,
    ) -> FiscalCertificate:
        key = self._key(pfx, password)
        with self._lock:
            certificate = self._entries.get(key)
            if certificate is None:
                # Parsing under the lock: concurrent first uses of one certificate
                # would otherwise each pay the load; other certificates wait briefly.
                certificate = _parse(pfx, password)
                self._entries[key] = certificate
                if len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
            else:
                self._entries.move_to_end(key)
        certificate.check(expected_oib=expected_oib, now=now)
        return certificate

    def __len__(self) -> int:
        return len(self._entries)
