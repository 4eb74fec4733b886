"""Reading the fiscal journal and license usage (the projection writes them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select

from runtime.store.models import JournalEntry, LicenseUsage
from runtime.store.projection import license_month
from runtime.store.repository import Repository
from schemas.events import InvoiceState


@dataclass(frozen=True)
class JournalRecord:
    integration_uid: str
    source_invoice_id: str
    source_version: str
    invoice_number: str
    state: InvoiceState
    reason_code: str
    message: str
    protection_code: str | None
    receipt_id: str | None
    message_id: str | None
    signed_request: str | None
    signed_answer: str | None
    attempts: int
    first_seen_at: datetime
    last_seen_at: datetime
    fiscalized_at: datetime | None
    last_event_id: str
    last_occurred_at: datetime


class Journal(Repository):
    async def get(self, uid: str, source_id: str) -> JournalRecord | None:
        async with self._tx() as session:
            row = await session.get(JournalEntry, (uid, source_id))
            return _record(row) if row else None

    async def entries(
        self, uid: str, *, state: InvoiceState | None = None, limit: int = 100, offset: int = 0
    ) -> list[JournalRecord]:
        """Newest first (by the time of the event that set the state)."""
        query = (
            select(JournalEntry)
            .where(JournalEntry.integration_uid == uid)
            .order_by(JournalEntry.last_occurred_at.desc(), JournalEntry.source_invoice_id)
            .limit(limit)
            .offset(offset)
        )
        if state is not None:
            query = query.where(JournalEntry.state == state.value)
        async with self._tx() as session:
            return [_record(row) for row in await session.scalars(query)]

    async def counts(self, uid: str | None = None) -> dict[InvoiceState, int]:
        """Invoices per state, for one integration or all."""
        query = select(JournalEntry.state, func.count()).group_by(JournalEntry.state)
        if uid is not None:
            query = query.where(JournalEntry.integration_uid == uid)
        async with self._tx() as session:
            rows = (await session.execute(query)).tuples()
            return {InvoiceState(state): n for state, n in rows}


class Usage(Repository):
    async def count(self, uid: str, month: str | date | datetime | None = None) -> int:
        """Invoices fiscalized in a month ('YYYY-MM', a date in it, or now when None)."""
        async with self._tx() as session:
            value = await session.scalar(
                select(LicenseUsage.fiscalized).where(
                    LicenseUsage.integration_uid == uid, LicenseUsage.month == month_key(month)
                )
            )
            return value or 0


def month_key(month: str | date | datetime | None) -> str:
    if month is None:
        return license_month(datetime.now().astimezone())
    if isinstance(month, datetime):
        return license_month(month)
    if isinstance(month, date):
        return month.strftime("%Y-%m")
    return month


def _record(row: JournalEntry) -> JournalRecord:
    return JournalRecord(
        integration_uid=row.integration_uid,
        source_invoice_id=row.source_invoice_id,
        source_version=row.source_version,
        invoice_number=row.invoice_number,
        state=InvoiceState(row.state),
        reason_code=row.reason_code,
        message=row.message,
        protection_code=row.protection_code,
        receipt_id=row.receipt_id,
        message_id=row.message_id,
        signed_request=row.signed_request,
        signed_answer=row.signed_answer,
        attempts=row.attempts,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        fiscalized_at=row.fiscalized_at,
        last_event_id=row.last_event_id,
        last_occurred_at=row.last_occurred_at,
    )
