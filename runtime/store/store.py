"""The store: one object a service opens once and shares across its tasks."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from runtime.settings import StoreSettings
from runtime.store import migrate, projection, rotation
from runtime.store.accounts import Accounts
from runtime.store.engine import create_engine
from runtime.store.integrations import Integrations
from runtime.store.journal import Journal, Usage
from runtime.store.polling import Leases, Watermarks
from runtime.store.projection import Outcome
from runtime.store.refetch import Refetches
from runtime.store.tokens import Tokens
from runtime.store.writeback import WriteBacks
from runtime.vault import Vault
from schemas.events import Event, InvoiceReceived

log = logging.getLogger(__name__)

_APPLY_ATTEMPTS = 5


class Store:
    def __init__(self, engine: AsyncEngine, vault: Vault | None = None) -> None:
        self.engine = engine
        self.vault = vault
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.accounts = Accounts(self.sessions, vault)
        self.integrations = Integrations(self.sessions, vault)
        self.tokens = Tokens(self.sessions, vault)
        self.lease = Leases(self.sessions, vault)
        self.watermark = Watermarks(self.sessions, vault)
        self.journal = Journal(self.sessions, vault)
        self.usage = Usage(self.sessions, vault)
        self.writebacks = WriteBacks(self.sessions, vault)
        self.refetch = Refetches(self.sessions, vault)

    @classmethod
    def open(cls, url: str | None = None, *, vault: Vault | None = None) -> Store:
        """A store on `url` (default: FISCOBRIDGE_DATABASE_URL or the embedded SQLite file).

        Without a vault everything but the secrets is readable and writable (the
        projector needs no key).
        """
        return cls(create_engine(url or StoreSettings().url()), vault)

    async def close(self) -> None:
        await self.engine.dispose()

    async def migrate(self, revision: str = "head") -> None:
        await migrate.upgrade(self.engine, revision)

    async def require_schema(self) -> None:
        """Raise SchemaOutOfDate unless the database is at this code's revision."""
        await migrate.require_head(self.engine)

    async def verify_secrets(self) -> Counter[str]:
        """Fail at start-up, not mid-request, when the master key cannot read the store."""
        return await rotation.verify(self.sessions, self._require_vault())

    async def rotate_secrets(self, *, batch_size: int = 50) -> rotation.RotationReport:
        return await rotation.rotate(self.sessions, self._require_vault(), batch_size=batch_size)

    async def key_usage(self) -> Counter[str]:
        return await rotation.key_usage(self.sessions)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions.begin() as session:
            yield session

    async def apply(self, events: Sequence[Event]) -> Counter[Outcome]:
        """Apply events to the projection in one transaction (all or nothing).

        Retried when a concurrent applier (the CLI beside the projector) inserted the
        same row first; the retry then sees that work as done.
        """
        if not events:
            return Counter()
        for attempt in range(1, _APPLY_ATTEMPTS + 1):
            try:
                async with self.sessions.begin() as session:
                    return Counter(await projection.apply_batch(session, events))
            except DBAPIError as error:
                if attempt == _APPLY_ATTEMPTS or not _conflict(error):
                    raise
                log.info("projection conflict; retrying", extra={"attempt": attempt})
                await asyncio.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    async def record_received(self, events: Sequence[InvoiceReceived]) -> int:
        """Keep each invoice's first receipt for its history (projection.record_received)."""
        if not events:
            return 0
        async with self.sessions.begin() as session:
            return await projection.record_received(session, events)

    async def drop_projection(self) -> None:
        async with self.sessions.begin() as session:
            await projection.drop(session)

    def _require_vault(self) -> Vault:
        return self.integrations._vault


def _conflict(error: DBAPIError) -> bool:
    """A concurrent writer got there first (duplicate key, lock, deadlock): retry."""
    if isinstance(error, IntegrityError | OperationalError):
        return True
    sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
    return sqlstate in ("40001", "40P01", "55P03")
