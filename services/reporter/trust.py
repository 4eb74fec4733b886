"""Whom the reporter believes, and how it reaches CIS.

Trust in CIS's answers is always explicit (hr-fiscal-record.md, "Trust of CIS's
answers"): the environment's CIS signing certificate itself, or its subject and
issuer under the CA chain (FINA's in production). There is no default: a reporter
without either refuses to start, the sandbox included, so it can never end up
believing the sandbox (or anything a CA signed) by accident. `fiscobridge dev` and
the tests pass the sandbox's own "fiskalcis" certificate and `cis_sandbox`.

TLS toward CIS is 1.2 or newer: the service refuses TLS 1.1 since 2026 (spec v2.7),
and a client that offered less could be talked down to it.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cryptography import x509

from fiscal.authorities import CisAnswerVerifier, CisSigner
from services.reporter.settings import ReporterSettings

_PREFIX = "FISCOBRIDGE_REPORTER_"
MINIMUM_TLS = ssl.TLSVersion.TLSv1_2


class CisTrustError(SystemExit):
    """A trust or endpoint setting that keeps the reporter from starting; the message
    says which variable to set and how."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _certificates(path: Path, variable: str) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CisTrustError(f"{_PREFIX}{variable}: cannot read {path}: {exc.strerror}") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CisTrustError(
            f"{_PREFIX}{variable}: {path} holds no PEM certificate ({exc})"
        ) from None
    return certificates


def cis_signer(settings: ReporterSettings) -> CisSigner:
    """The CIS signer the settings name; CisTrustError when they name none, or both."""
    named = (settings.cis_ca, settings.cis_signer_subject, settings.cis_signer_issuer)
    if settings.cis_trust is not None and any(v is not None for v in named):
        raise CisTrustError(
            f"set either {_PREFIX}CIS_TRUST (the CIS signing certificate) or {_PREFIX}CIS_CA"
            f" with {_PREFIX}CIS_SIGNER_SUBJECT and {_PREFIX}CIS_SIGNER_ISSUER, not both"
        )
    if settings.cis_trust is not None:
        certificates = _certificates(settings.cis_trust, "CIS_TRUST")
        if len(certificates) != 1:
            raise CisTrustError(
                f"{_PREFIX}CIS_TRUST: {settings.cis_trust} holds {len(certificates)}"
                " certificates; it must hold only the CIS signing certificate"
            )
        try:
            return CisSigner.pinned(certificates[0])
        except ValueError as exc:
            raise CisTrustError(f"{_PREFIX}CIS_TRUST: {exc}") from None
    if all(v is None for v in named):
        hint = (
            " For the local sandbox that is <sandbox CA dir>/fiskalcis.cert.pem, which"
            " `fiscobridge sandbox cis` prints."
            if settings.cis_sandbox
            else ""
        )
        raise CisTrustError(
            "no trust for CIS's answers is configured: set"
            f" {_PREFIX}CIS_TRUST to the PEM of the CIS signing certificate (fiskalcis of"
            f" the environment), or {_PREFIX}CIS_CA to the PEM of its CA chain with"
            f" {_PREFIX}CIS_SIGNER_SUBJECT and {_PREFIX}CIS_SIGNER_ISSUER (RFC 4514)." + hint
        )
    missing = [
        f"{_PREFIX}{name}"
        for name, value in zip(
            ("CIS_CA", "CIS_SIGNER_SUBJECT", "CIS_SIGNER_ISSUER"), named, strict=True
        )
        if value is None or (isinstance(value, str) and not value.strip())
    ]
    if missing:
        raise CisTrustError(f"trusting the CIS signer by name needs {', '.join(missing)} as well")
    assert settings.cis_ca and settings.cis_signer_subject and settings.cis_signer_issuer
    try:
        return CisSigner.named(
            settings.cis_signer_subject,
            settings.cis_signer_issuer,
            _certificates(settings.cis_ca, "CIS_CA"),
        )
    except ValueError as exc:
        raise CisTrustError(f"{_PREFIX}CIS_SIGNER_*: {exc}") from None


def answer_verifier(settings: ReporterSettings) -> CisAnswerVerifier:
    """The verifier of CIS's answers; refuses (CisTrustError) what cannot start:
    no trust setting, or a plain-http CIS that is not declared to be the sandbox."""
    check_cis_url(settings)
    return CisAnswerVerifier(cis_signer(settings))


def check_cis_url(settings: ReporterSettings) -> None:
    scheme = urlsplit(settings.cis_url).scheme.lower()
    if scheme == "https":
        return
    if scheme == "http" and settings.cis_sandbox:
        return
    if scheme == "http":
        raise CisTrustError(
            f"{_PREFIX}CIS_URL {settings.cis_url} is plain http: CIS is reached over TLS"
            f" (https://...); only the local sandbox is plain http, and then"
            f" {_PREFIX}CIS_SANDBOX=true says so"
        )
    raise CisTrustError(f"{_PREFIX}CIS_URL {settings.cis_url!r} is not an http(s) URL")


def cis_tls_context() -> ssl.SSLContext:
    """httpx's default context (certifi's roots), never below TLS 1.2."""
    context = httpx.create_ssl_context()
    if context.minimum_version < MINIMUM_TLS:
        context.minimum_version = MINIMUM_TLS
    return context
