"""A FINA-like certificate authority for the sandbox, tests and demos.

FINA issues the real fiscal certificates; locally we need look-alikes: PKCS#12
files whose certificate carries the business's OIB in the subject's O field
("<Company> HR<OIB>", CN "FISKAL 1"), issued by a CA the sandbox CIS trusts.
The CA is persisted so the CLI (`fiscobridge sandbox issue-cert`) and a running
sandbox agree on which issuer is trusted.
"""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from runtime.settings import home_dir

KEY_FILE = "ca.key.pem"
CERT_FILE = "ca.cert.pem"
# The sandbox CIS's own answer-signing certificate ("fiskalcis"), kept beside the CA so
# that `fiscobridge dev` and the tests can hand it to the reporter as its trust setting.
SERVICE_KEY_FILE = "fiskalcis.key.pem"
SERVICE_CERT_FILE = "fiskalcis.cert.pem"
# Keys of the fiscal certificates the CA issued, by serial, so the sandbox can check
# ZKIs (see `TestCA.issued_key`); test certificates only, like the PFX files themselves.
ISSUED_DIR = "issued"
# A persisted service certificate this close to its end is issued anew.
_SERVICE_RENEW_BEFORE = timedelta(days=30)
DEFAULT_COMPANY = "Sandbox Demo d.o.o."


def default_ca_dir() -> Path:
    return home_dir() / "sandbox-ca"


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _serial() -> int:
    return x509.random_serial_number()


class TestCA:
    """A self-signed issuing CA (RSA 2048) standing in for FINA's DEMO CA."""

    # Not a pytest test class, despite the name.
    __test__ = False

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey,
        certificate: x509.Certificate,
        directory: Path | None = None,
    ) -> None:
        self.private_key = private_key
        self.certificate = certificate
        self.directory = directory
        self._issued: dict[int, rsa.RSAPrivateKey] = {}

    @classmethod
    def create(cls, name: str = "FiscoBridge Sandbox DEMO CA") -> TestCA:
        key = _new_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "HR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FiscoBridge Sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        now = datetime.now(UTC)
        public = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @classmethod
    def load_or_create(cls, directory: Path) -> TestCA:
        """The CA persisted in `directory`, created there on first use.

        A lock file serialises first use, so two processes starting together
        (CLI and sandbox) cannot end up with a key from one and a cert from the other.
        """
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
            if key_path.exists() and cert_path.exists():
                ca = cls._load(key_path, cert_path)
            else:
                ca = cls.create()
                _write_private(key_path, ca.key_pem())
                cert_path.write_bytes(ca.cert_pem())
            ca.directory = directory
            return ca

    @classmethod
    def _load(cls, key_path: Path, cert_path: Path) -> TestCA:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{key_path} does not hold an RSA key")
        return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def _issue(
        self,
        subject: x509.Name,
        key: rsa.RSAPrivateKey,
        not_before: datetime,
        not_after: datetime,
        usages: list[x509.ObjectIdentifier],
    ) -> x509.Certificate:
        public = key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=True,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
            .sign(self.private_key, hashes.SHA256())
        )

    def issue_pfx(
        self,
        oib: str,
        password: str,
        *,
        cn: str = "FISKAL 1",
        company: str = DEFAULT_COMPANY,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        expired: bool = False,
        include_oib: bool = True,
    ) -> bytes:
        """A PKCS#12 file (key, certificate, CA certificate) like FINA's DEMO fiscal ones.

        `expired` makes one that ended yesterday; explicit bounds win over it.
        `include_oib=False` leaves the OIB out of the subject (the CIS answers s003).
        """
        now = datetime.now(UTC)
        if expired:
            default_start, default_end = now - timedelta(days=730), now - timedelta(days=1)
        else:
            default_start, default_end = now - timedelta(hours=1), now + timedelta(days=730)
        organization = f"{company} HR{oib}" if include_oib else company
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "HR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.LOCALITY_NAME, "ZAGREB"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        key = _new_key()
        certificate = self._issue(
            subject,
            key,
            not_before or default_start,
            not_after or default_end,
            [ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        self._remember(certificate.serial_number, key)
        return pkcs12.serialize_key_and_certificates(
            name=cn.lower().replace(" ", "").encode(),
            key=key,
            cert=certificate,
            cas=[self.certificate],
            encryption_algorithm=serialization.BestAvailableEncryption(password.encode()),
        )

    def _remember(self, serial: int, key: rsa.RSAPrivateKey) -> None:
        self._issued[serial] = key
        if self.directory is not None:
            issued = self.directory / ISSUED_DIR
            issued.mkdir(exist_ok=True)
            _write_private(
                issued / f"{serial:x}.key.pem",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )

    def issued_key(self, certificate: x509.Certificate) -> rsa.RSAPrivateKey | None:
        """The private key of a fiscal certificate this CA issued (this object, or any
        process sharing its directory), if known. The real CIS never has it, and so
        cannot check a ZKI; the sandbox uses it only to witness ZKIs in its ledger."""
        serial = certificate.serial_number
        key = self._issued.get(serial)
        if key is None and self.directory is not None:
            path = self.directory / ISSUED_DIR / f"{serial:x}.key.pem"
            if path.exists():
                loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
                if isinstance(loaded, rsa.RSAPrivateKey):
                    key = self._issued[serial] = loaded
        if key is None or key.public_key() != certificate.public_key():
            return None
        return key

    def issue_service_cert(
        self, cn: str = "fiskalcistest"
    ) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
        """Key and certificate the sandbox CIS signs its answers with."""
        now = datetime.now(UTC)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "HR"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FiscoBridge Sandbox CIS"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        key = _new_key()
        certificate = self._issue(
            subject,
            key,
            now - timedelta(hours=1),
            now + timedelta(days=730),
            [ExtendedKeyUsageOID.SERVER_AUTH],
        )
        return key, certificate


def load_or_create_service(
    ca: TestCA, directory: Path
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """The sandbox CIS's answer-signing key and certificate persisted in `directory`,
    issued by `ca` on first use, and again when the CA changed or the certificate is
    near its end. Locked like the CA, so the sandbox and `fiscobridge dev` agree."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / SERVICE_KEY_FILE, directory / SERVICE_CERT_FILE
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if (
                isinstance(key, rsa.RSAPrivateKey)
                and _issued_by(certificate, ca.certificate)
                and certificate.public_key() == key.public_key()
                and certificate.not_valid_after_utc - datetime.now(UTC) > _SERVICE_RENEW_BEFORE
            ):
                return key, certificate
        key, certificate = ca.issue_service_cert()
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return key, certificate


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
