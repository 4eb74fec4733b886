"""What can go wrong talking to Zoho, as exceptions a caller can branch on.

OAuth failures and API failures are separate families: an invalid refresh token turns
the integration Inactive until the user reconnects, a throttled call only waits.
"""

from __future__ import annotations

from datetime import datetime


class ZohoError(Exception):
    """Base of every failure raised by the Zoho connector."""


class OAuthError(ZohoError):
    """The accounts server refused or failed a token request for another reason."""

    def __init__(self, message: str, *, error: str | None = None, transient: bool = False):
        super().__init__(message)
        self.error = error
        self.transient = transient


class TokenInvalid(OAuthError):
    """The grant is gone: code used/expired, or the refresh token revoked/expired.

    Zoho reports all of these as `invalid_code` (often under HTTP 200); the only way
    back is a new authorization (Reconnect).
    """


class ClientInvalid(OAuthError):
    """Wrong client id/secret, or the token was issued by another data centre."""


class RefreshLimitReached(OAuthError):
    """Refreshing now would exceed Zoho's 10 access tokens per refresh token per 10 min."""

    def __init__(self, message: str, *, retry_at: datetime):
        super().__init__(message, error="refresh_limit", transient=True)
        self.retry_at = retry_at


class ZohoApiError(ZohoError):
    """The Books API answered with a non-zero `code` (or no usable body)."""

    def __init__(self, code: int, message: str, *, http_status: int | None = None):
        super().__init__(f"Zoho Books error {code}: {message} (HTTP {http_status})")
        self.code = code
        self.message = message
        self.http_status = http_status

    @property
    def transient(self) -> bool:
        return self.http_status is not None and self.http_status >= 500


class SortNotHonoured(ZohoApiError):
    """A list came back in another order than asked (its `page_context` says so)."""


class ZohoUnavailable(ZohoApiError):
    """No answer at all (connection refused, timeout): try again later."""

    @property
    def transient(self) -> bool:
        return True


class RateLimited(ZohoApiError):
    """HTTP 429: code 44 (per-minute), 45 (daily) or 1070 (too many concurrent calls)."""

    def __init__(
        self, code: int, message: str, *, retry_at: datetime, http_status: int | None = 429
    ):
        super().__init__(code, message, http_status=http_status)
        self.retry_at = retry_at

    @property
    def transient(self) -> bool:
        return True


class DailyLimitReached(RateLimited):
    """The organization's daily API quota is spent: stop and resume at `retry_at`."""
