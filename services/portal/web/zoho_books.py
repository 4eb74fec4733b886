"""A Zoho Books client on an integration's grant, for the pages that list what the
organization has (custom fields, taxes) so the owner can choose rather than type ids."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.oauth import AccessTokenProvider, TokenSet
from connectors.zoho.ratelimit import RateLimiter
from runtime.store import IntegrationRecord, IntegrationStatus
from services.portal.web.context import Portal


async def books_client(portal: Portal, record: IntegrationRecord) -> ZohoBooksClient | str:
    """The client, or why there is none (said to the owner as is)."""
    if record.status is not IntegrationStatus.ACTIVE or not (
            record.zoho_organization_id and record.zoho_api_domain
            and record.zoho_accounts_server):
        return "The integration is not connected to Zoho Books"
    grant = await portal.store.tokens.get(record.uid)
    if portal.oauth is None or grant is None:
        return "FiscoBridge holds no Zoho Books authorization for this integration"
    uid = record.uid

    async def persist(tokens: TokenSet) -> None:
        await portal.store.tokens.set_access(uid, tokens.access_token, tokens.expires_at)

    provider = AccessTokenProvider(
        portal.oauth,
        TokenSet(access_token=grant.access_token or "", refresh_token=grant.refresh_token,
                 api_domain=record.zoho_api_domain,
                 expires_at=grant.access_expires_at or datetime.now(UTC)),
        record.zoho_accounts_server, on_refresh=persist,
    )
    return ZohoBooksClient(portal.http, record.zoho_api_domain, record.zoho_organization_id,
                           provider, RateLimiter(per_minute=10))
