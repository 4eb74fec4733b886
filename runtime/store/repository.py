"""What every repository shares: a session factory, the vault, and the store's errors."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runtime.vault import Vault, VaultError


class NotFound(LookupError):
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


class InvalidInput(ValueError):
    """Refused before anything was written."""


def new_id() -> str:
    """24 lowercase base32 characters (120 random bits): URL-safe, case-insensitive."""
    return base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()


class Repository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: Vault | None) -> None:
        self._sessions = sessions
        self._vault_or_none = vault

    @property
    def _vault(self) -> Vault:
        if self._vault_or_none is None:
            raise VaultError(
                "this store was opened without a vault (FISCOBRIDGE_MASTER_KEY); it can read "
                "and write everything except secrets"
            )
        return self._vault_or_none

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions.begin() as session:
            yield session
