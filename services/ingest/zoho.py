"""The buyer's contact for a webhook's invoice, read from Zoho as the poller reads it.

A webhook whose invoice carries no tax number (connectors.zoho.mapping.buyer_contact_id)
costs one `GET /contacts/{id}` per contact and cache period (connectors.zoho.contacts),
so the webhook maps exactly as the poll of the same invoice does. The call is made with
the integration's stored grant: the access token the poller (or an earlier call here)
stored is reused while valid, and one refreshed here is stored for the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.contacts import ContactCache
from connectors.zoho.oauth import AccessTokenProvider, TokenSet, ZohoOAuth
from connectors.zoho.ratelimit import RateLimiter
from runtime.settings import ZohoClientSettings
from runtime.store.store import Store
from services.ingest.directory import WebhookTarget
from services.ingest.settings import IngestSettings

log = logging.getLogger("fiscobridge.ingest")

ContactReader = Callable[[WebhookTarget, str], Awaitable[Mapping[str, Any] | None]]


class ZohoContacts:
    """`await contacts(target, contact_id)`: the contact, None when it cannot be read
    (no OAuth client configured, no grant stored, no such contact, no contacts scope).
    Zoho's refusals that pass with time (throttling, outages) are raised."""

    def __init__(
        self,
        store: Store,
        http: httpx.AsyncClient,
        settings: IngestSettings,
        zoho: ZohoClientSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._http = http
        self._settings = settings
        self._clock = clock
        self._oauth = (
            ZohoOAuth(
                http, zoho.client_id, zoho.client_secret.get_secret_value(), redirect_uri="",
                accounts_servers=zoho.accounts_servers or None, clock=clock,
            )
            if zoho.configured
            else None
        )
        self.cache = ContactCache(ttl=settings.contact_cache, clock=clock)
        self._clients: dict[str, tuple[str, str | None, ZohoBooksClient]] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._warned = False

    async def __call__(self, target: WebhookTarget, contact_id: str) -> Mapping[str, Any] | None:
        if target.organization_id is None or target.api_domain is None \
                or target.accounts_server is None:
            return None
        cached = self.cache.peek(target.organization_id, contact_id)
        if cached is not None:
            return cached[0]
        client = await self._client(target)
        if client is None:
            return None
        return await self.cache.get(client, contact_id)

    async def _client(self, target: WebhookTarget) -> ZohoBooksClient | None:
        if self._oauth is None:
            if not self._warned:
                self._warned = True
                log.warning(
                    "no Zoho OAuth client configured (FISCOBRIDGE_ZOHO_CLIENT_ID, _SECRET): "
                    "webhook invoices without the buyer's tax number are mapped without "
                    "reading the contact"
                )
            return None
        grant = await self._store.tokens.get(target.uid)
        if grant is None:
            return None
        held = self._clients.get(target.uid)
        if held is not None and held[0] == grant.refresh_token and \
                grant.access_token in (None, held[1]) and \
                held[2].organization_id == target.organization_id:
            return held[2]
        assert target.api_domain is not None and target.accounts_server is not None
        assert target.organization_id is not None
        provider = AccessTokenProvider(
            self._oauth,
            TokenSet(
                access_token=grant.access_token or "",
                refresh_token=grant.refresh_token,
                api_domain=target.api_domain,
                expires_at=grant.access_expires_at or self._clock(),
            ),
            target.accounts_server,
            on_refresh=self._persist(target.uid),
            clock=self._clock,
        )
        limiter = self._limiters.setdefault(
            target.organization_id,
            RateLimiter(max_in_flight=self._settings.zoho_max_in_flight, wall=self._clock),
        )
        client = ZohoBooksClient(
            self._http, target.api_domain, target.organization_id, provider, limiter,
            throttle_retries=0,  # a throttled read fails the webhook (Zoho retries it)
        )
        self._clients[target.uid] = (grant.refresh_token, grant.access_token, client)
        return client

    def _persist(self, uid: str) -> Callable[[TokenSet], Awaitable[None]]:
        async def persist(tokens: TokenSet) -> None:
            await self._store.tokens.set_access(uid, tokens.access_token, tokens.expires_at)
            held = self._clients.get(uid)
            if held is not None:  # our own refresh: the stored token is ours
                self._clients[uid] = (held[0], tokens.access_token, held[2])

        return persist
