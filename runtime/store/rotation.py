"""Checking and rotating the master key under every stored secret.

Rotation re-wraps each secret's data key under the current master key, one small
transaction per batch, while services keep running: each row is written only if it
still holds the ciphertext that was read (compare-and-set), so a token refreshed by
the poller meanwhile is never overwritten with an older one. Running it again finds
nothing left to do.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from runtime.store.models import ENCRYPTED, Base, secret_context
from runtime.vault import Vault, key_id_of

_MAX_CONFLICT_RETRIES = 5


@dataclass
class RotationReport:
    rewrapped: Counter[str] = field(default_factory=Counter)  # "table.column" -> count
    already_current: int = 0

    @property
    def total_rewrapped(self) -> int:
        return sum(self.rewrapped.values())


async def key_usage(sessions: async_sessionmaker[AsyncSession]) -> Counter[str]:
    """How many stored secrets each master key id protects."""
    usage: Counter[str] = Counter()
    async for _, _, blob in _ciphertexts(sessions, batch_size=500):
        usage[key_id_of(blob)] += 1
    return usage


async def verify(sessions: async_sessionmaker[AsyncSession], vault: Vault) -> Counter[str]:
    """Raise a VaultError unless every key id in use is present and decrypts its data."""
    usage: Counter[str] = Counter()
    tried: set[str] = set()
    async for row, column, blob in _ciphertexts(sessions, batch_size=500):
        key_id = key_id_of(blob)
        usage[key_id] += 1
        if key_id not in tried:
            vault.decrypt(blob, secret_context(row, column))
            tried.add(key_id)
    return usage


async def rotate(
    sessions: async_sessionmaker[AsyncSession], vault: Vault, *, batch_size: int = 50
) -> RotationReport:
    report = RotationReport()
    for model, columns in ENCRYPTED:
        (pk,) = model.__mapper__.primary_key
        last: Any = None
        while True:
            async with sessions.begin() as session:
                query = select(model).order_by(pk).limit(batch_size)
                if last is not None:
                    query = query.where(pk > last)
                rows = list(await session.scalars(query))
                for row in rows:
                    for column in columns:
                        await _rotate_one(session, vault, row, column, report)
            if len(rows) < batch_size:
                break
            last = getattr(rows[-1], pk.name)
    return report


async def _rotate_one(
    session: AsyncSession, vault: Vault, row: Base, column: str, report: RotationReport
) -> None:
    model = type(row)
    (pk,) = model.__mapper__.primary_key
    attribute = getattr(model, column)
    name = f"{model.__tablename__}.{column}"
    for _ in range(_MAX_CONFLICT_RETRIES):
        blob = getattr(row, column)
        if blob is None:
            return
        new = vault.rewrap(blob, secret_context(row, column))
        if new is None:
            report.already_current += 1
            return
        result = await session.execute(
            update(model)
            .where(pk == getattr(row, pk.name), attribute == blob)
            .values({column: new})
            .execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount == 1:
            report.rewrapped[name] += 1
            return
        # Written meanwhile by a service (a refreshed token): look again.
        await session.refresh(row, [column])
    raise RuntimeError(f"{name} of one row kept changing during rotation; run rotate again")


async def _ciphertexts(sessions: async_sessionmaker[AsyncSession], *, batch_size: int) -> Any:
    for model, columns in ENCRYPTED:
        (pk,) = model.__mapper__.primary_key
        last: Any = None
        while True:
            async with sessions.begin() as session:
                query = select(model).order_by(pk).limit(batch_size)
                if last is not None:
                    query = query.where(pk > last)
                rows = list(await session.scalars(query))
            for row in rows:
                for column in columns:
                    blob = getattr(row, column)
                    if blob is not None:
                        yield row, column, blob
            if len(rows) < batch_size:
                break
            last = getattr(rows[-1], pk.name)
