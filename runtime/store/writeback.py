"""The latest write-back outcome per invoice, as the projector applies it and the portal
reads it. An older outcome delivered late never replaces a newer one (occurred_at, then
event id, decide), so replays and redeliveries are harmless."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.store.journal import JournalRecord
from runtime.store.journal import _record as journal_record
from runtime.store.models import JournalEntry, WriteBackRecord
from runtime.store.repository import Repository
from schemas.events import InvoiceState, WriteBackStatus


@dataclass(frozen=True)
class WriteBackOutcome:
    state: str  # written_back | waiting | failed
    reason: str | None
    fiscal_number: str | None
    occurred_at: datetime


class WriteBacks(Repository):
    async def apply(
        self, *, integration_uid: str, source_id: str, state: str, reason: str | None,
        fiscal_number: str | None, event_id: str, occurred_at: datetime,
    ) -> bool:
        """Record the outcome unless a newer one is stored; True when it was stored.

        Two writers apply outcomes (the write-back stage once the broker has one, the
        projector from the topic): when both insert an invoice's first row at once, the
        one that loses reads the row the other stored and compares, as on any later
        outcome, instead of failing."""
        try:
            return await self._apply(integration_uid, source_id, state, reason,
                                     fiscal_number, event_id, occurred_at)
        except IntegrityError:
            return await self._apply(integration_uid, source_id, state, reason,
                                     fiscal_number, event_id, occurred_at)

    async def apply_many(self, outcomes: Sequence[WriteBackStatus]) -> None:
        """Each outcome as `apply` records it, all in one transaction (a projector batch);
        IntegrityError when another writer inserted one of the rows meanwhile (then
        apply them one by one)."""
        async with self._tx() as session:
            for o in outcomes:
                await self._put(session, o.integration_uid, o.source_id, o.state.value,
                                o.reason, o.fiscal_number, o.event_id, o.occurred_at)

    async def _apply(
        self, integration_uid: str, source_id: str, state: str, reason: str | None,
        fiscal_number: str | None, event_id: str, occurred_at: datetime,
    ) -> bool:
        async with self._tx() as session:
            return await self._put(session, integration_uid, source_id, state, reason,
                                   fiscal_number, event_id, occurred_at)

    @staticmethod
    async def _put(
        session: AsyncSession, integration_uid: str, source_id: str, state: str,
        reason: str | None, fiscal_number: str | None, event_id: str, occurred_at: datetime,
    ) -> bool:
        row = await session.get(WriteBackRecord, (integration_uid, source_id))
        if row is None:
            session.add(WriteBackRecord(
                integration_uid=integration_uid, source_invoice_id=source_id,
                writeback_state=state, writeback_reason=reason,
                fiscal_number=fiscal_number, event_id=event_id, occurred_at=occurred_at,
            ))
            return True
        if (occurred_at, event_id) <= (row.occurred_at, row.event_id):
            return False
        row.writeback_state, row.writeback_reason = state, reason
        row.fiscal_number, row.event_id, row.occurred_at = fiscal_number, event_id, occurred_at
        return True

    async def get(self, integration_uid: str, source_id: str) -> WriteBackOutcome | None:
        async with self._tx() as session:
            row = await session.scalar(select(WriteBackRecord).where(
                WriteBackRecord.integration_uid == integration_uid,
                WriteBackRecord.source_invoice_id == source_id,
            ))
            if row is None:
                return None
            return WriteBackOutcome(row.writeback_state, row.writeback_reason,
                                    row.fiscal_number, row.occurred_at)

    async def waiting(self, integration_uid: str) -> list[JournalRecord]:
        """The integration's fiscalized invoices whose latest write-back outcome is
        `waiting`, with what the journal keeps of their fiscalization (number, ZKI, JIR,
        total, moment of issue): what to write back again once the wait is over."""
        async with self._tx() as session:
            rows = await session.scalars(
                select(JournalEntry)
                .join(WriteBackRecord, (WriteBackRecord.integration_uid
                                        == JournalEntry.integration_uid)
                      & (WriteBackRecord.source_invoice_id == JournalEntry.source_invoice_id))
                .where(JournalEntry.integration_uid == integration_uid,
                       JournalEntry.state == InvoiceState.FISCALIZED.value,
                       JournalEntry.receipt_id.is_not(None),
                       WriteBackRecord.writeback_state == "waiting")
                .order_by(JournalEntry.issued_at, JournalEntry.source_invoice_id)
            )
            return [journal_record(row) for row in rows]
