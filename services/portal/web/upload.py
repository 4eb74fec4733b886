"""Checking a certificate upload (PFX, password, fiscal settings) before anything is stored.

Shared by the portal's Create Integration form and `fiscobridge integrations create`,
so both refuse the same uploads with the same reasons.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from fiscal.hr_cis.certificate import (
    CertificateError,
    FiscalCertificate,
    WrongPassword,
    load_certificate,
)
from fiscal.hr_cis.settings import FiscalSettings
from services.portal.web.trust import TrustedCAs, UntrustedIssuer

SETTINGS_REFUSED = "fiscal_settings"


class UploadRefused(ValueError):
    """What is wrong, per form field; `code` is the certificate error code or SETTINGS_REFUSED."""

    def __init__(self, problems: Mapping[str, str], code: str) -> None:
        self.problems = dict(problems)
        self.code = code
        super().__init__("; ".join(self.problems.values()))

    def __str__(self) -> str:
        reasons = "; ".join(self.problems.values())
        if self.code == SETTINGS_REFUSED:
            return f"fiscal settings refused: {reasons}"
        return f"certificate refused ({self.code}): {reasons}"


def check_upload(
    fields: Mapping[str, Any], pfx: bytes, password: str, *, now: datetime | None = None,
    trusted: TrustedCAs | None = None,
) -> tuple[FiscalSettings, FiscalCertificate]:
    """The settings and the certificate, or UploadRefused with the specific reason.

    The certificate is checked against the OIB of the settings, so they go first; then,
    when `trusted` is given, its chain against the environment's fiscal CAs.
    """
    try:
        settings = FiscalSettings.model_validate(dict(fields))
    except ValidationError as error:
        problems: dict[str, str] = {}
        for item in error.errors():
            field = str(item["loc"][0]) if item["loc"] else "settings"
            message = item["msg"].removeprefix("Value error, ")
            problems[field] = f"{problems[field]}; {message}" if field in problems else message
        raise UploadRefused(problems, SETTINGS_REFUSED) from None
    try:
        certificate = load_certificate(pfx, password, expected_oib=settings.oib, now=now)
    except CertificateError as error:
        field = "password" if isinstance(error, WrongPassword) else "pfx"
        raise UploadRefused({field: str(error)}, error.code) from None
    if trusted is not None:
        try:
            trusted.check(certificate.certificate, certificate.chain, now)
        except UntrustedIssuer as error:
            raise UploadRefused({"pfx": str(error)}, error.code) from None
    return settings, certificate
