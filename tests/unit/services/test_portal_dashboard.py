"""The dashboard's certificate warning: from 30 days before expiry, to the minute."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from services.portal.web.dashboard import CertificateState


def state(left: timedelta) -> CertificateState:
    # Only the time left decides; the record and the certificate are only shown.
    return CertificateState(cast(Any, None), cast(Any, None), left)


def test_the_warning_starts_thirty_days_before_expiry() -> None:
    assert not state(timedelta(days=30, minutes=1)).warn
    assert state(timedelta(days=30)).warn
    assert state(timedelta(days=29, hours=23)).warn
    assert state(timedelta(days=29, hours=23)).days_left == 29
    assert not state(timedelta(seconds=1)).expired
    expired = state(-timedelta(seconds=1))
    assert expired.expired and expired.warn
