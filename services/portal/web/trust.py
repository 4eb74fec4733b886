"""Which certification authorities a fiscal certificate may come from.

CIS accepts only certificates its environment trusts: FINA's fiscal CAs for production
and for the test environment, the sandbox's own CA in `dev`. A certificate from any other
issuer would be accepted by FiscoBridge and refused by CIS on every invoice, so it is
refused at upload, naming its issuer. The trusted CAs are a PEM bundle the operator
configures per environment (FISCOBRIDGE_PORTAL_FISCAL_CA_BUNDLE): roots and/or
intermediates; a chain ends at the first certificate found in the bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

MAX_CHAIN = 6


class TrustBundleError(ValueError):
    """The configured bundle cannot be used (the portal does not start with it)."""


class UntrustedIssuer(ValueError):
    code = "untrusted_issuer"


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


@dataclass(frozen=True)
class TrustedCAs:
    certificates: tuple[x509.Certificate, ...]
    source: str

    @classmethod
    def load(cls, path: Path) -> TrustedCAs:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise TrustBundleError(
                f"the fiscal CA bundle {path} cannot be read ({error.strerror})") from None
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise TrustBundleError(
                f"the fiscal CA bundle {path} holds no PEM certificates") from None
        for certificate in certificates:
            try:
                is_ca = certificate.extensions.get_extension_for_class(
                    x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                raise TrustBundleError(
                    f"the fiscal CA bundle {path} holds {_name(certificate.subject)!r}, "
                    "which is not a CA certificate")
        return cls(tuple(certificates), str(path))

    @property
    def names(self) -> list[str]:
        return [_name(c.subject) for c in self.certificates]

    def check(self, leaf: x509.Certificate, chain: Sequence[x509.Certificate],
              now: datetime | None = None) -> None:
        """Return when `leaf` chains (through `chain`, the PFX's other certificates) to a
        trusted CA, valid at `now`; raise UntrustedIssuer naming the issuer otherwise."""
        moment = now or datetime.now(UTC)
        current = leaf
        for _ in range(MAX_CHAIN):
            anchor = _issuer_among(current, self.certificates)
            if anchor is not None:
                if not anchor.not_valid_before_utc <= moment <= anchor.not_valid_after_utc:
                    raise UntrustedIssuer(
                        f"the issuing CA {_name(anchor.subject)!r} is not valid now (valid "
                        f"{anchor.not_valid_before_utc:%Y-%m-%d} to "
                        f"{anchor.not_valid_after_utc:%Y-%m-%d})")
                return
            intermediate = _issuer_among(current, chain)
            if intermediate is None or intermediate is current:
                break
            current = intermediate
        trusted = ", ".join(self.names)
        raise UntrustedIssuer(
            f"the certificate was issued by {_name(leaf.issuer)!r}, which is not a fiscal "
            f"certification authority of this environment (trusted: {trusted}); CIS would "
            "refuse every invoice signed with it. Upload the fiscal certificate FINA issued "
            "for this environment"
        )


def _issuer_among(certificate: x509.Certificate, candidates: Sequence[x509.Certificate]
                  ) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):  # signature, key type or name
            continue
        return candidate
    return None
