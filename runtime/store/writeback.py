"""The latest write-back outcome per invoice, as the projector applies it and the portal
reads it. An older outcome delivered late never replaces a newer one (occurred_at, then
event id, decide), so replays and redeliveries are harmless."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError

from runtime.store.journal import JournalRecord
from runtime.store.journal import _record as journal_record
from runtime.store.models import JournalEntry, WriteBackRecord
from runtime.store.repository import Repository
from schemas.events import InvoiceState, WriteBackStatus


@dataclass(frozen=True)
class _Outcome:
    integration_uid: str
    source_id: str
    state: str
    reason: str | None
    fiscal_number: str | None
    event_id: str
    occurred_at: datetime

    @classmethod
    def of(cls, o: WriteBackStatus) -> _Outcome:
        return cls(o.integration_uid, o.source_id, o.state.value, o.reason, o.fiscal_number,
                   o.event_id, o.occurred_at)


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
        return await self._apply_one(_Outcome(integration_uid, source_id, state, reason,
                                              fiscal_number, event_id, occurred_at))

    async def apply_many(self, outcomes: Sequence[WriteBackStatus]) -> None:
        """Each outcome as `apply` records it, all in one transaction (a batch); when
        another writer inserted one of the rows meanwhile, they are applied one by one."""
        batch = [_Outcome.of(o) for o in outcomes]
        try:
            await self._apply(batch)
        except IntegrityError:
            for outcome in batch:
                await self._apply_one(outcome)

    async def _apply_one(self, outcome: _Outcome) -> bool:
        try:
            return (await self._apply([outcome]))[0]
        except IntegrityError:  # the other writer inserted it meanwhile: compare with it
            return (await self._apply([outcome]))[0]

    async def _apply(self, outcomes: Sequence[_Outcome]) -> list[bool]:
        """One transaction: the stored rows read in one query, each outcome compared with
        the newest row of its invoice (stored or applied earlier in this batch)."""
        keys = {(o.integration_uid, o.source_id) for o in outcomes}
        async with self._tx() as session:
            rows = {
                (row.integration_uid, row.source_invoice_id): row
                for row in await session.scalars(select(WriteBackRecord).where(
                    tuple_(WriteBackRecord.integration_uid,
                           WriteBackRecord.source_invoice_id).in_(sorted(keys))))
            }
            stored = []
            for o in outcomes:
                key = (o.integration_uid, o.source_id)
                row = rows.get(key)
                if row is None:
                    rows[key] = WriteBackRecord(
                        integration_uid=o.integration_uid, source_invoice_id=o.source_id,
                        writeback_state=o.state, writeback_reason=o.reason,
                        fiscal_number=o.fiscal_number, event_id=o.event_id,
                        occurred_at=o.occurred_at,
                    )
                    session.add(rows[key])
                    stored.append(True)
                elif (o.occurred_at, o.event_id) <= (row.occurred_at, row.event_id):
                    stored.append(False)
                else:
                    row.writeback_state, row.writeback_reason = o.state, o.reason
                    row.fiscal_number, row.event_id = o.fiscal_number, o.event_id
                    row.occurred_at = o.occurred_at
                    stored.append(True)
            return stored

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


class OutcomeRecorder:
    """Outcomes applied as they come, those handed in together in one transaction: while
    one transaction runs, the outcomes that arrive meanwhile gather for the next.
    `record` returns once its outcome is applied, or raises what applying it raised."""

    def __init__(self, writebacks: WriteBacks) -> None:
        self._writebacks = writebacks
        self._gathering: list[tuple[WriteBackStatus, asyncio.Future[None]]] = []
        self._applying: asyncio.Task[None] | None = None

    async def record(self, outcome: WriteBackStatus) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gathering.append((outcome, done))
        if self._applying is None or self._applying.done():
            self._applying = asyncio.create_task(self._apply())
        await done

    async def _apply(self) -> None:
        while self._gathering:
            group, self._gathering = self._gathering, []
            try:
                await self._writebacks.apply_many([outcome for outcome, _ in group])
            except Exception:  # one outcome's fault must not be the others': one by one
                for outcome, done in group:
                    try:
                        await self._writebacks.apply_many([outcome])
                    except Exception as error:
                        _settle(done, error)
                    else:
                        _settle(done, None)
            else:
                for _, done in group:
                    _settle(done, None)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():  # its caller stopped waiting
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
