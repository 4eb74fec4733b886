"""Zoho grants in the connect flow: organizations they reach, carrying one until the user
picks an organization, and letting go of the ones we will not keep.

Until the user has chosen an organization, the new grant is not stored with the
integration: it rides in the session cookie, encrypted by the store's vault and bound
to that session and integration, so the store only ever holds grants of connected
integrations. Grants we drop are revoked: Zoho keeps at most 20 refresh tokens per
user and client and silently deletes the oldest beyond that, which could be the grant
of another integration of the same user.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.errors import OAuthError, ZohoError
from connectors.zoho.oauth import AccessTokenProvider, TokenSet, ZohoOAuth
from connectors.zoho.ratelimit import RateLimiter
from runtime.store import Store
from services.portal.web.context import PageError, log


def _context(session_id: str, uid: str) -> str:
    return f"portal.session.zoho_grant|{session_id}|{uid}"


def seal(store: Store, tokens: TokenSet, *, session_id: str, uid: str) -> str:
    if store.vault is None:
        raise RuntimeError("the portal needs the store's vault (FISCOBRIDGE_MASTER_KEY)")
    plain = json.dumps({
        "refresh_token": tokens.refresh_token,
        "access_token": tokens.access_token,
        "api_domain": tokens.api_domain,
        "expires_at": tokens.expires_at.isoformat(),
    }).encode()
    blob = store.vault.encrypt(plain, _context(session_id, uid))
    return base64.urlsafe_b64encode(blob).decode("ascii")


def unseal(store: Store, sealed: str, *, session_id: str, uid: str) -> TokenSet:
    if store.vault is None:
        raise RuntimeError("the portal needs the store's vault (FISCOBRIDGE_MASTER_KEY)")
    data: dict[str, Any] = json.loads(
        store.vault.decrypt(base64.urlsafe_b64decode(sealed), _context(session_id, uid))
    )
    return TokenSet(
        access_token=data["access_token"],
        refresh_token=data["refresh_token"],
        api_domain=data["api_domain"],
        expires_at=datetime.fromisoformat(data["expires_at"]),
    )


async def organizations(
    oauth: ZohoOAuth, http: Any, tokens: TokenSet, accounts_server: str
) -> list[dict[str, Any]]:
    """The organizations the grant reaches, at the grant's own api_domain."""
    provider = AccessTokenProvider(oauth, tokens, accounts_server)
    client = ZohoBooksClient(http, tokens.api_domain, "", provider, RateLimiter())
    try:
        found = await client.organizations()
    except ZohoError as error:
        log.warning("listing Zoho organizations failed", extra={"error": type(error).__name__})
        raise PageError(
            502,
            "Zoho Books did not answer",
            "Zoho accepted the sign-in, but listing your Zoho Books organizations failed "
            f"({error}). Nothing was changed; try connecting again in a few minutes.",
        ) from None
    return [org for org in found if str(org.get("organization_id") or "")]


async def revoke_quietly(
    oauth: ZohoOAuth | None, refresh_token: str | None, accounts_server: str | None, uid: str
) -> bool:
    """Revoke a grant we no longer keep. An unreachable Zoho is logged, never fatal."""
    if oauth is None or not refresh_token or not accounts_server:
        return False
    try:
        await oauth.revoke(refresh_token, accounts_server)
    except OAuthError as error:
        log.warning(
            "could not revoke a Zoho refresh token; it stays valid at Zoho until the user "
            "removes FiscoBridge under Zoho's connected apps",
            extra={"integration_uid": uid, "error": error.error,
                   "accounts_server": accounts_server},
        )
        return False
    return True
