"""The projection of `invoices.status` and `integrations.events` into the store.

Rules, so that replays, duplicates and late deliveries all converge on one state:

- An event id is applied once (`processed_events`); the second delivery changes nothing.
- Invoice state: `fiscalized` outranks every other state, and among fiscalized events
  the *earliest* wins (the first receipt id is the legal one; a second can only come
  from the reporter's crash window and must not replace it). Among the others the
  latest `occurred_at` wins, and on a tie a final state beats `retrying`. An event that
  does not outrank the current one only updates attempt count and first/last seen.
- License usage counts an invoice once, in the month of its fiscalization in
  Europe/Zagreb: the monthly limit is sold to Croatian businesses, whose month (and
  whose invoices' dates) turn at local midnight, not at UTC midnight.
- Integration status: created -> pending, connected/reconnected -> active,
  token_invalid/deactivated -> inactive, removed -> removed. The latest event wins,
  except that removed is final. Other kinds (certificate, settings) leave status alone;
  tier follows the latest event that carries one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from runtime.store.models import (
    Integration,
    IntegrationStatus,
    JournalEntry,
    LicenseUsage,
    ProcessedEvent,
)
from schemas.events import (
    Event,
    IntegrationEvent,
    IntegrationEventKind,
    InvoiceState,
    InvoiceStatus,
)
from schemas.topics import INTEGRATIONS_EVENTS, INVOICES_STATUS

log = logging.getLogger(__name__)

LICENSE_TIMEZONE = ZoneInfo("Europe/Zagreb")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

STATUS_OF: dict[IntegrationEventKind, IntegrationStatus] = {
    IntegrationEventKind.CREATED: IntegrationStatus.PENDING,
    IntegrationEventKind.CONNECTED: IntegrationStatus.ACTIVE,
    IntegrationEventKind.RECONNECTED: IntegrationStatus.ACTIVE,
    IntegrationEventKind.TOKEN_INVALID: IntegrationStatus.INACTIVE,
    IntegrationEventKind.DEACTIVATED: IntegrationStatus.INACTIVE,
    IntegrationEventKind.REMOVED: IntegrationStatus.REMOVED,
}
NEUTRAL_STATUS = IntegrationStatus.PENDING


class Outcome(StrEnum):
    APPLIED = "applied"
    STALE = "stale"  # recorded, but the state already shown outranks it
    DUPLICATE = "duplicate"  # this event id was applied before
    UNKNOWN_INTEGRATION = "unknown_integration"


def license_month(at: datetime) -> str:
    return at.astimezone(LICENSE_TIMEZONE).strftime("%Y-%m")


async def apply(session: AsyncSession, event: Event) -> Outcome:
    (outcome,) = await apply_batch(session, [event])
    return outcome


async def apply_batch(session: AsyncSession, events: Sequence[Event]) -> list[Outcome]:
    """Apply events in order within the caller's transaction; one outcome per event.

    A batch costs a handful of statements whatever its size: the rows it touches are
    read (and, on PostgreSQL, locked in key order) up front, changed in memory, and
    written by one flush.
    """
    for event in events:
        if not isinstance(event, InvoiceStatus | IntegrationEvent):
            raise TypeError(f"the projection does not take {type(event).__name__} events")
    batch = await _Batch.load(session, events)
    outcomes = [batch.apply(event) for event in events]
    await session.flush()
    for (uid, month), delta in sorted(batch.usage.items()):
        if delta:
            await _count_usage(session, uid, month, delta)
    return outcomes


@dataclass
class _Batch:
    session: AsyncSession
    journal: dict[tuple[str, str], JournalEntry]
    integrations: dict[str, Integration]
    seen: set[str]
    usage: Counter[tuple[str, str]] = field(default_factory=Counter)

    @classmethod
    async def load(cls, session: AsyncSession, events: Sequence[Event]) -> _Batch:
        statuses = [e for e in events if isinstance(e, InvoiceStatus)]
        uids = sorted({e.integration_uid for e in events if isinstance(e, IntegrationEvent)})
        # Rows are locked before the event ids are read, so a concurrent applier of the
        # same events waits here and then finds them processed.
        journal: dict[tuple[str, str], JournalEntry] = {}
        if statuses:
            rows = await session.scalars(
                select(JournalEntry)
                .where(
                    JournalEntry.integration_uid.in_({e.integration_uid for e in statuses}),
                    JournalEntry.source_invoice_id.in_({e.invoice.source_id for e in statuses}),
                )
                .order_by(JournalEntry.integration_uid, JournalEntry.source_invoice_id)
                .with_for_update()
            )
            journal = {(r.integration_uid, r.source_invoice_id): r for r in rows}
        integrations: dict[str, Integration] = {}
        if uids:
            rows_i = await session.scalars(
                select(Integration).where(Integration.uid.in_(uids))
                .order_by(Integration.uid).with_for_update()
            )
            integrations = {r.uid: r for r in rows_i}
        seen = set(
            await session.scalars(
                select(ProcessedEvent.event_id).where(
                    ProcessedEvent.event_id.in_({e.event_id for e in events})
                )
            )
        )
        return cls(session, journal, integrations, seen)

    def apply(self, event: Event) -> Outcome:
        if event.event_id in self.seen:
            return Outcome.DUPLICATE
        self.seen.add(event.event_id)
        topic = INVOICES_STATUS if isinstance(event, InvoiceStatus) else INTEGRATIONS_EVENTS
        self.session.add(
            ProcessedEvent(
                event_id=event.event_id,
                integration_uid=event.integration_uid,
                topic=topic.name,
                processed_at=datetime.now(UTC),
            )
        )
        if isinstance(event, InvoiceStatus):
            return self._invoice_status(event)
        assert isinstance(event, IntegrationEvent)
        return self._integration_event(event)

    def _invoice_status(self, event: InvoiceStatus) -> Outcome:
        uid, at = event.integration_uid, event.occurred_at
        entry = self.journal.get((uid, event.invoice.source_id))
        if entry is None:
            entry = JournalEntry(
                integration_uid=uid,
                source_invoice_id=event.invoice.source_id,
                attempts=event.attempt,
                first_seen_at=at,
                last_seen_at=at,
            )
            _take_state(entry, event)
            self.session.add(entry)
            self.journal[(uid, event.invoice.source_id)] = entry
            if event.state is InvoiceState.FISCALIZED:
                self.usage[(uid, license_month(at))] += 1
            return Outcome.APPLIED

        entry.attempts = max(entry.attempts, event.attempt)
        entry.first_seen_at = min(entry.first_seen_at, at)
        entry.last_seen_at = max(entry.last_seen_at, at)
        current = _rank(InvoiceState(entry.state), entry.last_occurred_at, entry.last_event_id)
        if _rank(event.state, at, event.event_id) <= current:
            return Outcome.STALE
        if entry.fiscalized_at is not None:
            self.usage[(uid, license_month(entry.fiscalized_at))] -= 1
        _take_state(entry, event)
        if entry.fiscalized_at is not None:
            self.usage[(uid, license_month(entry.fiscalized_at))] += 1
        return Outcome.APPLIED

    def _integration_event(self, event: IntegrationEvent) -> Outcome:
        row = self.integrations.get(event.integration_uid)
        if row is None:
            # Recorded as processed all the same: a replay would find no row either.
            log.warning(
                "integration event for an integration this store does not know; ignored",
                extra={"integration_uid": event.integration_uid, "event_id": event.event_id},
            )
            return Outcome.UNKNOWN_INTEGRATION
        changed = False
        status = STATUS_OF.get(event.kind)
        if status is not None and _status_wins(row, status, event):
            row.status = status.value
            row.status_reason = event.reason
            row.status_event_id = event.event_id
            row.status_event_at = event.occurred_at
            changed = True
        if event.tier is not None and (
            row.tier_event_at is None or event.occurred_at >= row.tier_event_at
        ):
            row.tier = event.tier
            row.tier_event_at = event.occurred_at
            changed = True
        return Outcome.APPLIED if changed else Outcome.STALE


def _rank(state: InvoiceState, at: datetime, event_id: str) -> tuple[int, int, int, str]:
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    if state is InvoiceState.FISCALIZED:
        return (1, -micros, 1, event_id)
    return (0, micros, int(state.is_final), event_id)


def _take_state(entry: JournalEntry, event: InvoiceStatus) -> None:
    fiscalized = event.state is InvoiceState.FISCALIZED
    entry.state = event.state.value
    entry.reason_code = event.reason_code
    entry.message = event.message
    entry.source_version = event.invoice.version
    entry.invoice_number = event.invoice.number
    # Evidence from an earlier attempt stays when the winning event does not repeat it.
    entry.receipt_id = event.receipt_id or entry.receipt_id
    entry.protection_code = event.protection_code or entry.protection_code
    entry.message_id = event.message_id or entry.message_id
    entry.signed_request = event.signed_request or entry.signed_request
    entry.signed_answer = event.signed_answer or entry.signed_answer
    entry.fiscalized_at = event.occurred_at if fiscalized else None
    entry.last_event_id = event.event_id
    entry.last_occurred_at = event.occurred_at


async def _count_usage(session: AsyncSession, uid: str, month: str, delta: int) -> None:
    result = await session.execute(
        update(LicenseUsage)
        .where(LicenseUsage.integration_uid == uid, LicenseUsage.month == month)
        .values(fiscalized=LicenseUsage.fiscalized + delta)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount == 0:
        session.add(LicenseUsage(integration_uid=uid, month=month, fiscalized=delta))
        await session.flush()


def _status_wins(row: Integration, status: IntegrationStatus, event: IntegrationEvent) -> bool:
    if row.status_event_at is None or row.status_event_id is None:
        return True
    removed = IntegrationStatus.REMOVED
    new = (status is removed, event.occurred_at, event.event_id)
    current = (row.status == removed.value, row.status_event_at, row.status_event_id)
    return new > current


async def drop(session: AsyncSession) -> None:
    """Forget everything the events put in the store (before replaying them)."""
    for model in (JournalEntry, LicenseUsage, ProcessedEvent):
        await session.execute(delete(model))
    await session.execute(
        update(Integration).values(
            status=NEUTRAL_STATUS.value,
            status_reason=None,
            status_event_id=None,
            status_event_at=None,
            tier_event_at=None,
        )
    )
