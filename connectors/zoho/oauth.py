"""Zoho OAuth 2.0 across data centres: authorize URL, code exchange, refresh, revoke.

The `accounts-server` on the redirect is chosen by whoever sent the browser back, so a
code (and our client secret) is only ever posted to a known accounts server: Zoho's
own data centres, or the ones a deployment configures (the sandbox).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from connectors.zoho.errors import (
    ClientInvalid,
    OAuthError,
    RefreshLimitReached,
    TokenInvalid,
)

__all__ = [
    "DATA_CENTRES",
    "AccessTokenProvider",
    "ClientInvalid",
    "DataCentre",
    "OAuthError",
    "RefreshLimitReached",
    "TokenInvalid",
    "TokenSet",
    "ZohoOAuth",
    "authorization_url",
    "data_centre_of",
]

DEFAULT_SCOPES: tuple[str, ...] = (
    "ZohoBooks.invoices.READ",
    "ZohoBooks.settings.READ",
    # Credit notes are fiscalized as storno invoices.
    "ZohoBooks.creditnotes.READ",
    # The buyer's tax number when the invoice does not carry it (connectors/zoho/contacts).
    "ZohoBooks.contacts.READ",
    # Write-back: fiscal number, ZKI, JIR and QR URL into the invoice's custom fields
    # (UPDATE), and a comment on the invoice when that fails (CREATE).
    "ZohoBooks.invoices.UPDATE",
    "ZohoBooks.invoices.CREATE",
    # Write-back of a credit note's storno into the credit note's own custom fields.
    "ZohoBooks.creditnotes.UPDATE",
)
REFRESH_WINDOW = timedelta(minutes=10)
"""Zoho's window for at most 10 access tokens per refresh token."""


@dataclass(frozen=True)
class DataCentre:
    location: str  # the `location` parameter on the redirect, e.g. "eu"
    accounts_server: str
    api_domain: str


DATA_CENTRES: tuple[DataCentre, ...] = (
    DataCentre("us", "https://accounts.zoho.com", "https://www.zohoapis.com"),
    DataCentre("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    DataCentre("in", "https://accounts.zoho.in", "https://www.zohoapis.in"),
    DataCentre("au", "https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    DataCentre("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    DataCentre("ca", "https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    DataCentre("sa", "https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    DataCentre("uk", "https://accounts.zoho.uk", "https://www.zohoapis.uk"),
    DataCentre("cn", "https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
)


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()


def data_centre_of(
    accounts_server: str, data_centres: Sequence[DataCentre] = DATA_CENTRES
) -> DataCentre | None:
    origin = _origin(accounts_server)
    return next((dc for dc in data_centres if _origin(dc.accounts_server) == origin), None)


def authorization_url(
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
    state: str,
    accounts_base: str = "https://accounts.zoho.com",
) -> str:
    """Where to send the browser; Zoho redirects the user to their own data centre."""
    if not state:
        raise ValueError("state is required: it binds the redirect to the portal session")
    query = urlencode(
        {
            "scope": ",".join(scopes),
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "access_type": "offline",
            "prompt": "consent",
            "state": state,
        }
    )
    return f"{accounts_base.rstrip('/')}/oauth/v2/auth?{query}"


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    api_domain: str
    expires_at: datetime

    def __repr__(self) -> str:  # tokens are secrets: keep them out of logs and tracebacks
        return f"TokenSet(api_domain={self.api_domain!r}, expires_at={self.expires_at!r})"


class ZohoOAuth:
    """The token endpoint of whichever accounts server an integration belongs to."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        *,
        accounts_servers: Collection[str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._http = http
        self._client_id = client_id
        self._client_secret = client_secret
        self._redirect_uri = redirect_uri
        allowed = accounts_servers or [dc.accounts_server for dc in DATA_CENTRES]
        self._allowed = {_origin(server) for server in allowed}
        self._clock = clock

    def _server(self, accounts_server: str) -> str:
        origin = _origin(accounts_server)
        if origin not in self._allowed:
            raise ClientInvalid(
                f"{accounts_server!r} is not a known Zoho accounts server; refusing to send "
                "the client secret there",
                error="unknown_accounts_server",
            )
        return origin

    async def exchange_code(self, code: str, accounts_server: str) -> TokenSet:
        """The redirect's `code`, exchanged at the redirect's `accounts-server`."""
        body = await self._post(
            self._server(accounts_server),
            "/oauth/v2/token",
            {
                "grant_type": "authorization_code",
                "code": code,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "redirect_uri": self._redirect_uri,
            },
        )
        if not body.get("refresh_token"):
            raise OAuthError(
                "no refresh token in the answer: authorize with access_type=offline",
                error="no_refresh_token",
            )
        return self._token_set(body, refresh_token=str(body["refresh_token"]))

    async def refresh(
        self, refresh_token: str, accounts_server: str, *, api_domain: str | None = None
    ) -> TokenSet:
        """A new access token; the answer carries no refresh token, so the old one is kept."""
        body = await self._post(
            self._server(accounts_server),
            "/oauth/v2/token",
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
        )
        return self._token_set(body, refresh_token=refresh_token, api_domain=api_domain)

    async def revoke(self, token: str, accounts_server: str) -> None:
        """Revoke a refresh token (on Remove). An already dead token counts as revoked."""
        try:
            await self._post(
                self._server(accounts_server), "/oauth/v2/token/revoke", {"token": token}
            )
        except TokenInvalid:
            return

    async def _post(self, origin: str, path: str, params: dict[str, str]) -> dict[str, Any]:
        # Zoho documents the parameters in the query string of a POST.
        try:
            response = await self._http.post(f"{origin}{path}", params=params)
        except httpx.HTTPError as failure:
            raise OAuthError(
                f"accounts server {origin} unreachable: {type(failure).__name__}",
                error="unreachable",
                transient=True,
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise OAuthError(
                f"accounts server {origin} answered HTTP {response.status_code} without JSON",
                error="bad_response",
                transient=response.status_code >= 500,
            )
        error = body.get("error")
        if error is None and response.status_code < 400:
            return body
        # Errors often come under HTTP 200; the `error` field is what counts.
        description = body.get("error_description") or error or f"HTTP {response.status_code}"
        if str(error).strip().lower() == "access denied":
            # Zoho's answer to too many token requests, often under HTTP 200: nothing
            # helps but waiting out its 10-minute window.
            raise RefreshLimitReached(
                f"{origin} refused the token request ({description}); retrying after"
                f" Zoho's {REFRESH_WINDOW} token window",
                retry_at=self._clock() + REFRESH_WINDOW,
            )
        if error == "invalid_code":
            raise TokenInvalid(
                "the authorization code or refresh token is invalid, used, expired or "
                "revoked: the user must reconnect",
                error=error,
            )
        if error in ("invalid_client", "invalid_client_secret", "unauthorized_client"):
            raise ClientInvalid(
                f"client rejected by {origin} ({error}): wrong client id/secret, or the grant "
                "belongs to another data centre",
                error=error,
            )
        raise OAuthError(
            f"token request refused by {origin}: {description}",
            error=str(error) if error else None,
            transient=response.status_code >= 500 or response.status_code == 429,
        )

    def _token_set(
        self, body: dict[str, Any], *, refresh_token: str, api_domain: str | None = None
    ) -> TokenSet:
        access_token = body.get("access_token")
        domain = body.get("api_domain") or api_domain
        if not access_token or not domain:
            raise OAuthError("token answer lacks access_token or api_domain", error="bad_response")
        try:
            lifetime = int(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600
        return TokenSet(
            access_token=str(access_token),
            refresh_token=refresh_token,
            api_domain=str(domain).rstrip("/"),
            expires_at=self._clock() + timedelta(seconds=lifetime),
        )


class AccessTokenProvider:
    """One integration's access token: cached, refreshed when due or after a 401.

    Zoho issues at most 10 access tokens per refresh token per 10 minutes; the budget
    is tracked here, per process (the poller's lease keeps one process per integration),
    and a refresh beyond it raises `RefreshLimitReached` without calling Zoho.
    """

    def __init__(
        self,
        oauth: ZohoOAuth,
        tokens: TokenSet,
        accounts_server: str,
        *,
        on_refresh: Callable[[TokenSet], Awaitable[None]] | None = None,
        refresh_margin: timedelta = timedelta(minutes=5),
        max_refreshes: int = 10,
        refresh_window: timedelta = REFRESH_WINDOW,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        if not tokens.refresh_token:
            raise ValueError("an access token provider needs a refresh token")
        self._oauth = oauth
        self._tokens = tokens
        self._accounts_server = accounts_server
        self._on_refresh = on_refresh
        self._margin = refresh_margin
        self._max_refreshes = max_refreshes
        self._window = refresh_window
        self._clock = clock
        self._refreshed_at: deque[datetime] = deque()
        self._refused_until: datetime | None = None
        self._stale: str | None = None
        self._lock = asyncio.Lock()
        self._due = self._due_time(clock())

    def _due_time(self, fetched_at: datetime) -> datetime:
        # Refresh `margin` before expiry, but never spend more than half a token's life
        # waiting: a short-lived token must not make every call a refresh.
        lifetime = self._tokens.expires_at - fetched_at
        return self._tokens.expires_at - min(self._margin, lifetime / 2)

    @property
    def api_domain(self) -> str:
        return self._tokens.api_domain

    @property
    def tokens(self) -> TokenSet:
        return self._tokens

    @property
    def refresh_count(self) -> int:
        """Refreshes made in the current window (observability and tests)."""
        self._forget_old(self._clock())
        return len(self._refreshed_at)

    async def access_token(self) -> str:
        async with self._lock:
            now = self._clock()
            current = self._tokens.access_token
            if current != self._stale and now < self._due:
                return current
            await self._refresh(now)
            return self._tokens.access_token

    def invalidate(self, access_token: str) -> None:
        """Zoho answered 401 to `access_token`: the next caller refreshes (only once)."""
        if access_token == self._tokens.access_token:
            self._stale = access_token

    async def _refresh(self, now: datetime) -> None:
        self._forget_old(now)
        if self._refused_until is not None and now < self._refused_until:
            raise RefreshLimitReached(
                f"Zoho refused a token refresh; not asking again before"
                f" {self._refused_until.isoformat()}",
                retry_at=self._refused_until,
            )
        if len(self._refreshed_at) >= self._max_refreshes:
            retry_at = self._refreshed_at[0] + self._window
            raise RefreshLimitReached(
                f"{self._max_refreshes} token refreshes in the last {self._window}; Zoho "
                f"would refuse another before {retry_at.isoformat()}",
                retry_at=retry_at,
            )
        assert self._tokens.refresh_token is not None
        try:
            fresh = await self._oauth.refresh(
                self._tokens.refresh_token,
                self._accounts_server,
                api_domain=self._tokens.api_domain,
            )
        except RefreshLimitReached as refused:
            self._refused_until = refused.retry_at
            raise
        self._refreshed_at.append(now)
        self._tokens = fresh
        self._due = self._due_time(now)
        self._stale = None
        if self._on_refresh is not None:
            await self._on_refresh(fresh)

    def _forget_old(self, now: datetime) -> None:
        while self._refreshed_at and self._refreshed_at[0] <= now - self._window:
            self._refreshed_at.popleft()
