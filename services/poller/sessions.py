"""Each polled integration's Zoho session, kept in memory between polls.

A session holds the integration's access-token provider (so a token is refreshed only
when due, and the refreshed one is written back to the store), its API client, and the
versions already seen in the overlap (so the overlap is not fetched again). Rate
limiters are per Zoho organization and outlive sessions: a reconnect must not forget a
spent daily quota.

The store's grant is checked at every poll: after a Reconnect (new refresh token) or a
refresh by another poller instance (newer access token) the session is rebuilt from it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from connectors.zoho.budget import DailyBudget, plan_cap
from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.errors import ZohoApiError
from connectors.zoho.oauth import AccessTokenProvider, TokenSet, ZohoOAuth
from connectors.zoho.ratelimit import RateLimiter
from connectors.zoho.sync import Key
from runtime.store.store import Store
from runtime.store.tokens import OAuthTokens
from services.poller import metrics
from services.poller.schedule import Target
from services.poller.settings import PollerSettings

log = logging.getLogger("fiscobridge.poller")


class NotConfigured(Exception):
    """The poll cannot start: no OAuth client configured, or no grant stored."""


@dataclass
class Session:
    target: Target
    provider: AccessTokenProvider
    client: ZohoBooksClient
    seen: frozenset[Key] = field(default_factory=frozenset)

    def matches(self, target: Target, grant: OAuthTokens) -> bool:
        current = self.provider.tokens
        return (
            target == self.target
            and grant.refresh_token == current.refresh_token
            and grant.access_token in (None, current.access_token)
        )


class Sessions:
    def __init__(
        self,
        store: Store,
        http: httpx.AsyncClient,
        settings: PollerSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._http = http
        self._settings = settings
        self._clock = clock
        secret = settings.zoho.client_secret.get_secret_value()
        self._oauth = (
            ZohoOAuth(
                http,
                settings.zoho.client_id,
                secret,
                redirect_uri="",  # only refreshes happen here; they carry no redirect
                accounts_servers=settings.zoho.accounts_servers or None,
                clock=clock,
            )
            if settings.zoho.client_id and secret
            else None
        )
        self._sessions: dict[str, Session] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._zones: set[str] = set()  # organizations whose limiter knows their time zone

    @property
    def configured(self) -> bool:
        return self._oauth is not None

    def limiter(self, organization_id: str) -> RateLimiter:
        limiter = self._limiters.get(organization_id)
        if limiter is None:
            s = self._settings
            limiter = RateLimiter(
                per_minute=s.zoho_per_minute,
                window=s.zoho_window.total_seconds(),
                max_in_flight=s.zoho_max_in_flight,
                throttle_backoff=(None if s.zoho_throttle_backoff is None
                                  else s.zoho_throttle_backoff.total_seconds()),
                sleep=metrics.rate_limit_sleep,
                budget=DailyBudget(share=s.zoho_poll_share),
            )
            self._limiters[organization_id] = limiter
        return limiter

    async def open(self, target: Target) -> Session:
        """The integration's session, (re)built from the store's grant when needed."""
        if self._oauth is None:
            raise NotConfigured(
                "no Zoho OAuth client configured: set FISCOBRIDGE_ZOHO_CLIENT_ID and "
                "FISCOBRIDGE_ZOHO_CLIENT_SECRET"
            )
        grant = await self._store.tokens.get(target.uid)
        if grant is None:
            raise NotConfigured("the integration has a Zoho connection but no OAuth grant stored")
        session = self._sessions.get(target.uid)
        if session is not None and session.matches(target, grant):
            return session
        provider = AccessTokenProvider(
            self._oauth,
            TokenSet(
                # Without a stored access token the provider refreshes on first use.
                access_token=grant.access_token or "",
                refresh_token=grant.refresh_token,
                api_domain=target.api_domain,
                expires_at=grant.access_expires_at or self._clock(),
            ),
            target.accounts_server,
            on_refresh=self._persist(target.uid),
            clock=self._clock,
        )
        client = ZohoBooksClient(
            self._http,
            target.api_domain,
            target.organization_id,
            provider,
            self.limiter(target.organization_id),
        )
        seen: frozenset[Key] = frozenset()
        if session is not None and session.target.organization_id == target.organization_id:
            seen = session.seen  # still true after a reconnect to the same books
        session = Session(target, provider, client, seen)
        self._sessions[target.uid] = session
        return session

    def _persist(self, uid: str) -> Callable[[TokenSet], Awaitable[None]]:
        async def persist(tokens: TokenSet) -> None:
            metrics.TOKEN_REFRESHES.inc()
            await self._store.tokens.set_access(uid, tokens.access_token, tokens.expires_at)

        return persist

    async def learn_time_zone(self, session: Session) -> None:
        """Once per organization: its daily quota resets at its own midnight.

        One API call per organization and process. Zoho's quota headers, when sent, say
        the reset time anyway, so a refusal here (a grant without the settings scope)
        only logs; what would stop the poll too (throttling, an outage, a dead grant)
        is raised.
        """
        organization_id = session.target.organization_id
        if organization_id in self._zones:
            return
        try:
            organizations = await session.client.organizations()
        except ZohoApiError as error:
            if error.transient:
                raise
            log.warning(
                "organization time zone unknown; daily quota assumed to reset at UTC midnight",
                extra={"error": str(error)},
            )
            self._zones.add(organization_id)
            return
        self._zones.add(organization_id)
        found = next(
            (o for o in organizations if str(o.get("organization_id")) == organization_id), None
        )
        if found is None:
            log.warning(
                "the grant does not reach the connected organization; reconnect may be needed",
                extra={"organization_id": organization_id},
            )
            return
        budget = session.client.limiter.budget
        if not budget.from_headers:  # the plan's cap until Zoho's headers state the limit
            budget.cap = plan_cap(str(found.get("plan_name") or ""))
        try:
            session.client.limiter.day_tz = ZoneInfo(str(found.get("time_zone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            log.warning(
                "unknown organization time zone; daily quota assumed to reset at UTC midnight",
                extra={"time_zone": found.get("time_zone")},
            )

    def forget(self, uid: str) -> None:
        self._sessions.pop(uid, None)
