"""Poll watermarks and leases: which poller instance polls an integration, and how far.

Both are single conditional UPDATEs, atomic on SQLite and PostgreSQL alike: the row
count says whether this caller won, so no read-then-write race exists.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Update, or_, select, update

from runtime.store.models import PollState
from runtime.store.repository import Repository


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


class Leases(Repository):
    async def acquire(
        self, uid: str, holder: str, ttl: timedelta, *, now: datetime | None = None
    ) -> bool:
        """Take (or extend) the lease for `ttl`; False while another holder's lease lasts."""
        now = _now(now)
        statement = (
            update(PollState)
            .where(
                PollState.integration_uid == uid,
                or_(
                    PollState.lease_holder.is_(None),
                    PollState.lease_holder == holder,
                    PollState.lease_expires_at < now,
                ),
            )
            .values(lease_holder=holder, lease_expires_at=now + ttl)
        )
        return await self._changed(statement)

    async def release(self, uid: str, holder: str) -> bool:
        statement = (
            update(PollState)
            .where(PollState.integration_uid == uid, PollState.lease_holder == holder)
            .values(lease_holder=None, lease_expires_at=None)
        )
        return await self._changed(statement)

    async def holder(self, uid: str, *, now: datetime | None = None) -> str | None:
        async with self._tx() as session:
            row = await session.get(PollState, uid)
            if row is None or row.lease_holder is None or row.lease_expires_at is None:
                return None
            return row.lease_holder if row.lease_expires_at >= _now(now) else None

    async def _changed(self, statement: Update) -> bool:
        return await _changed(self, statement)


class Unread(enum.Enum):
    """No watermark was read before the advance (it is not compared)."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD


class Watermarks(Repository):
    async def get(self, uid: str) -> datetime | None:
        async with self._tx() as session:
            return await session.scalar(
                select(PollState.watermark).where(PollState.integration_uid == uid)
            )

    async def advance(
        self,
        uid: str,
        to: datetime,
        *,
        holder: str | None = None,
        now: datetime | None = None,
        read: datetime | Unread | None = UNREAD,
    ) -> bool:
        """Move the watermark forward to `to` (never back).

        With `holder`, only while that holder's lease is unexpired: a poller that lost
        its lease mid-cycle must not overwrite the progress of the one that took over.
        With `read`, only if the watermark is still the one the poll started from: an
        earlier start chosen during the poll moved it back, and the next poll must read
        from there.
        """
        conditions = [
            PollState.integration_uid == uid,
            or_(PollState.watermark.is_(None), PollState.watermark < to),
        ]
        if not isinstance(read, Unread):
            conditions.append(
                PollState.watermark.is_(None) if read is None else PollState.watermark == read
            )
        if holder is not None:
            conditions += [
                PollState.lease_holder == holder,
                PollState.lease_expires_at >= _now(now),
            ]
        return await _changed(self, update(PollState).where(*conditions).values(watermark=to))


async def _changed(repository: Repository, statement: Update) -> bool:
    """Run a conditional UPDATE of one row; True if it matched."""
    async with repository._tx() as session:
        result = await session.execute(
            statement.execution_options(synchronize_session=False)
        )
        return cast(CursorResult[Any], result).rowcount == 1
