"""Zoho API clients per integration for the write-back stage, built from the store's
grant with the shared connector pieces (the poller keeps its own; services share code
through connectors/ and runtime/, never each other).

A refreshed access token is written back to the store, and a client is rebuilt when the
store holds a newer grant (a Reconnect, or a refresh by the poller), so both processes
mostly use the same token rather than each spending Zoho's refresh budget.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.oauth import AccessTokenProvider, TokenSet, ZohoOAuth
from connectors.zoho.ratelimit import RateLimiter
from runtime.store.integrations import IntegrationRecord
from runtime.store.store import Store
from runtime.store.tokens import OAuthTokens
from services.writeback.settings import WriteBackSettings


class NotConnected(Exception):
    """The integration cannot be written to now; the message says why (shown as waiting)."""


@dataclass
class _Session:
    organization_id: str
    api_domain: str
    provider: AccessTokenProvider
    client: ZohoBooksClient

    def matches(self, record: IntegrationRecord, grant: OAuthTokens) -> bool:
        current = self.provider.tokens
        return (
            record.zoho_organization_id == self.organization_id
            and record.zoho_api_domain == self.api_domain
            and grant.refresh_token == current.refresh_token
            and grant.access_token in (None, current.access_token)
        )


class ZohoSessions:
    def __init__(
        self, store: Store, http: httpx.AsyncClient, settings: WriteBackSettings,
        *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._http = http
        self._settings = settings
        self._clock = clock
        secret = settings.zoho.client_secret.get_secret_value()
        self._oauth = (
            ZohoOAuth(http, settings.zoho.client_id, secret, redirect_uri="",
                      accounts_servers=settings.zoho.accounts_servers or None, clock=clock)
            if settings.zoho.client_id and secret else None
        )
        self._sessions: dict[str, _Session] = {}
        self._limiters: dict[str, RateLimiter] = {}

    def _limiter(self, organization_id: str) -> RateLimiter:
        # Per organization and outliving sessions: a reconnect keeps what was spent.
        limiter = self._limiters.get(organization_id)
        if limiter is None:
            limiter = RateLimiter(per_minute=self._settings.zoho_per_minute,
                                  max_in_flight=self._settings.zoho_max_in_flight)
            self._limiters[organization_id] = limiter
        return limiter

    async def client(self, record: IntegrationRecord) -> ZohoBooksClient:
        if self._oauth is None:
            raise NotConnected("no Zoho OAuth client configured for the write-back stage")
        if not (record.zoho_organization_id and record.zoho_accounts_server
                and record.zoho_api_domain):
            raise NotConnected("the integration is not connected to a Zoho organization")
        grant = await self._store.tokens.get(record.uid)
        if grant is None:
            raise NotConnected("the integration has no Zoho authorization stored: reconnect")
        session = self._sessions.get(record.uid)
        if session is not None and session.matches(record, grant):
            return session.client
        provider = AccessTokenProvider(
            self._oauth,
            TokenSet(access_token=grant.access_token or "", refresh_token=grant.refresh_token,
                     api_domain=record.zoho_api_domain,
                     expires_at=grant.access_expires_at or self._clock()),
            record.zoho_accounts_server,
            on_refresh=self._persist(record.uid),
            clock=self._clock,
        )
        client = ZohoBooksClient(self._http, record.zoho_api_domain, record.zoho_organization_id,
                                 provider, self._limiter(record.zoho_organization_id))
        self._sessions[record.uid] = _Session(record.zoho_organization_id,
                                              record.zoho_api_domain, provider, client)
        return client

    def _persist(self, uid: str) -> Callable[[TokenSet], Awaitable[None]]:
        async def persist(tokens: TokenSet) -> None:
            await self._store.tokens.set_access(uid, tokens.access_token, tokens.expires_at)

        return persist
