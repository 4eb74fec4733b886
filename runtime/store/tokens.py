"""OAuth tokens of an integration's accounting-system connection, encrypted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from runtime.store.models import Integration, OAuthToken, secret_context
from runtime.store.repository import NotFound, Repository


@dataclass(frozen=True)
class OAuthTokens:
    refresh_token: str = field(repr=False)
    access_token: str | None = field(repr=False)
    access_expires_at: datetime | None
    updated_at: datetime


class Tokens(Repository):
    async def get(self, uid: str) -> OAuthTokens | None:
        async with self._tx() as session:
            row = await session.get(OAuthToken, uid)
            if row is None:
                return None
            access = (
                self._vault.decrypt(row.access_token, secret_context(row, "access_token"))
                if row.access_token is not None
                else None
            )
            return OAuthTokens(
                refresh_token=self._vault.decrypt(
                    row.refresh_token, secret_context(row, "refresh_token")
                ).decode(),
                access_token=access.decode() if access is not None else None,
                access_expires_at=row.access_expires_at,
                updated_at=row.updated_at,
            )

    async def set(
        self,
        uid: str,
        *,
        refresh_token: str,
        access_token: str | None = None,
        access_expires_at: datetime | None = None,
    ) -> None:
        """Store a fresh grant (after OAuth consent or reconnect), replacing any old one."""
        async with self._tx() as session:
            if await session.get(Integration, uid) is None:
                raise NotFound(f"no integration {uid!r}")
            row = await session.get(OAuthToken, uid) or OAuthToken(integration_uid=uid)
            row.refresh_token = self._vault.encrypt(
                refresh_token.encode(), secret_context(row, "refresh_token")
            )
            row.access_token = (
                self._vault.encrypt(access_token.encode(), secret_context(row, "access_token"))
                if access_token is not None
                else None
            )
            row.access_expires_at = access_expires_at
            row.updated_at = datetime.now(UTC)
            session.add(row)

    async def set_access(self, uid: str, access_token: str, expires_at: datetime) -> None:
        """Store a refreshed access token; the refresh token stays."""
        async with self._tx() as session:
            row = await session.get(OAuthToken, uid)
            if row is None:
                raise NotFound(f"integration {uid!r} has no OAuth grant to refresh")
            row.access_token = self._vault.encrypt(
                access_token.encode(), secret_context(row, "access_token")
            )
            row.access_expires_at = expires_at
            row.updated_at = datetime.now(UTC)

    async def delete(self, uid: str) -> bool:
        async with self._tx() as session:
            row = await session.get(OAuthToken, uid)
            if row is None:
                return False
            await session.delete(row)
            return True
