"""The projection of `invoices.status` and `integrations.events` into the store.

Rules, so that replays, duplicates and late deliveries all converge on one state:

- An event id is applied once (`processed_events`); the second delivery changes nothing.
- Invoice state: `fiscalized` outranks every other state, and among fiscalized events
  the *earliest* wins (the first receipt id is the legal one; a second can only come
  from the reporter's crash window and must not replace it). Among the others the
  latest `occurred_at` wins, and on a tie a final state beats `retrying`. An event that
  does not outrank the current one only updates attempt count and first/last seen.
- `journal_daily` counts the journal's rows per integration, day of issue (Croatian time)
  and state: each batch moves the rows it changed from their old day and state to their
  new ones, as the database holds them after the batch's writes.
- License usage counts an invoice once, in the license month of its fiscalization
  (`runtime/licensing.license_month`: the month in Europe/Zagreb, not at UTC midnight).
- Integration status: created -> pending, connected/reconnected -> active,
  token_invalid/deactivated -> inactive, removed -> removed. The latest event wins,
  except that removed is final. Other kinds (certificate, settings) leave status alone;
  tier follows the latest event that carries one.
- History: every status event applied (not a duplicate id) is kept in `journal_events`,
  whatever its rank; the journal row shows only the winner. Two steps are derived from
  the status events, so that a rebuild restores them: "signed", once per signature (its
  id is the message id), at the moment the signed request states (the CIS header's
  DatumVrijeme); and "edited" for a duplicate of a fiscalized invoice whose number,
  customer or total differs from the fiscalized one (a change the fiscal record no longer
  matches; a payment or the write-back's own fields change none of them). "received"
  rows come from `invoices.received` (`record_received`); `drop` keeps them, since that
  topic is not replayed.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    String,
    Table,
    TextClause,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import Insert, Update
from sqlalchemy.sql.selectable import TextualSelect

from runtime.licensing import license_month
from runtime.store.models import (
    Integration,
    IntegrationStatus,
    JournalDaily,
    JournalEntry,
    JournalEvent,
    LicenseUsage,
    ProcessedEvent,
)
from runtime.store.refetch import (
    STUCK_STATES,
    Document,
    document_of,
    queue,
    requeue_stuck,
)
from runtime.writeback_mapping import sets_mapping
from schemas.events import (
    Event,
    IntegrationEvent,
    IntegrationEventKind,
    InvoiceReceived,
    InvoiceState,
    InvoiceStatus,
)
from schemas.invoice import SourceStatus
from schemas.topics import INTEGRATIONS_EVENTS, INVOICES_STATUS

log = logging.getLogger(__name__)

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


def cents(amount: Decimal) -> int:
    """Euro cents of an amount (half away from zero, as CIS rounds to the cent)."""
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fiscal_seq(fiscal_number: str | None) -> int | None:
    """The sequence number of a printed fiscal number (57 of 57/POSL1/1)."""
    if not fiscal_number:
        return None
    head = fiscal_number.split("/", 1)[0]
    return int(head) if head.isdigit() else None


async def apply(session: AsyncSession, event: Event) -> Outcome:
    (outcome,) = await apply_batch(session, [event])
    return outcome


async def apply_batch(session: AsyncSession, events: Sequence[Event]) -> list[Outcome]:
    """Apply events in order within the caller's transaction; one outcome per event.

    A batch costs a fixed handful of set-based statements whatever its size: claim the
    event ids, read (on PostgreSQL: lock, in key order) the journal and integration rows
    the new events touch, fold the events into those rows in memory in delivery order,
    then write each kind of change with one executemany. The ORM is not involved: its
    per-object bookkeeping cost more CPU than the database did.
    """
    for event in events:
        if not isinstance(event, InvoiceStatus | IntegrationEvent):
            raise TypeError(f"the projection does not take {type(event).__name__} events")
    if not events:
        return []
    # One greenlet switch for the whole batch instead of one per statement.
    return await session.run_sync(_apply, events)


def _apply(session: Session, events: Sequence[Event]) -> list[Outcome]:
    # Whatever the caller left pending in the session reaches the database before the
    # projection's statements, as it did when the projection wrote through the ORM.
    session.flush()
    connection = session.connection()
    sql = _statements(connection.dialect.name)
    outcomes: list[Outcome | None] = [None] * len(events)
    fresh = _claim(connection, sql, events, outcomes)
    statuses = [(i, e) for i, e in fresh if isinstance(e, InvoiceStatus)]
    if statuses:
        _project_statuses(connection, sql, statuses, outcomes)
    changes = [(i, e) for i, e in fresh if isinstance(e, IntegrationEvent)]
    if changes:
        _project_integration_events(connection, sql, changes, outcomes)
    assert all(o is not None for o in outcomes)
    return cast(list[Outcome], outcomes)


def _claim(
    connection: Connection, sql: _Sql, events: Sequence[Event], outcomes: list[Outcome | None]
) -> list[tuple[int, Event]]:
    """Record the batch's event ids; return the events not applied before, in order.

    The database does the de-duplication (insert, skip on conflict): on PostgreSQL a
    concurrent applier of the same id waits for the other transaction to commit and
    then skips the id, so the two cannot both see it as new.
    """
    first: dict[str, int] = {}
    for i, event in enumerate(events):
        if event.event_id in first:
            outcomes[i] = Outcome.DUPLICATE
        else:
            first[event.event_id] = i
    # Key order, so that concurrent appliers take the key locks in one order.
    ids = sorted(first)
    uids = [events[first[event_id]].integration_uid for event_id in ids]
    topics = [_topic_of(events[first[event_id]]) for event_id in ids]
    now = datetime.now(UTC)
    params: dict[str, Any] | list[dict[str, Any]]
    if sql.claim_takes_arrays:
        params = {"event_ids": ids, "uids": uids, "topics": topics, "processed_at": now}
    else:
        params = [
            {"event_id": event_id, "integration_uid": uid, "topic": topic, "processed_at": now}
            for event_id, uid, topic in zip(ids, uids, topics, strict=True)
        ]
    claimed = set(connection.execute(sql.claim, params).scalars())
    fresh: list[tuple[int, Event]] = []
    for event_id, i in first.items():
        if event_id in claimed:
            fresh.append((i, events[i]))
        else:
            outcomes[i] = Outcome.DUPLICATE
    return fresh


def _topic_of(event: Event) -> str:
    return (INVOICES_STATUS if isinstance(event, InvoiceStatus) else INTEGRATIONS_EVENTS).name


@dataclass(slots=True)
class _Entry:
    """One fiscal journal row as the batch changes it.

    The evidence columns (receipt, protection code, message id, signed documents) of a
    stored row are not read: they are the bulk of the row and only ever replaced by a
    newer non-empty value. None stands for "what the row holds"; the update writes
    COALESCE(new, old), so the earlier attempt's evidence stays when the winning event
    does not repeat it.
    """

    integration_uid: str
    source_invoice_id: str
    state: InvoiceState
    attempts: int
    first_seen_at: datetime
    last_seen_at: datetime
    fiscalized_at: datetime | None
    last_event_id: str
    last_occurred_at: datetime
    stored: bool
    source_version: str = ""
    invoice_number: str = ""
    reason_code: str = ""
    message: str = ""
    protection_code: str | None = None
    fiscal_number: str | None = None
    receipt_id: str | None = None
    message_id: str | None = None
    signed_request: str | None = None
    signed_answer: str | None = None
    kind: str = "invoice"
    customer: str | None = None
    customer_key: str | None = None
    total_cents: int | None = None
    issued_at: datetime | None = None  # None: what the row holds (or first seen, new rows)
    fiscal_seq: int | None = None
    late: bool = False
    took_state: bool = False
    seen_changed: bool = False

    @classmethod
    def first(cls, event: InvoiceStatus) -> _Entry:
        at = event.occurred_at
        entry = cls(
            integration_uid=event.integration_uid,
            source_invoice_id=event.invoice.source_id,
            state=event.state,
            attempts=event.attempt,
            first_seen_at=at,
            last_seen_at=at,
            fiscalized_at=None,
            last_event_id=event.event_id,
            last_occurred_at=at,
            stored=False,
        )
        entry.take_state(event)
        return entry

    def take_state(self, event: InvoiceStatus) -> None:
        self.took_state = True
        self.state = event.state
        self.reason_code = event.reason_code
        self.message = event.message
        self.source_version = event.invoice.version
        self.invoice_number = event.invoice.number
        # Evidence from an earlier attempt stays when the winning event does not repeat it.
        self.receipt_id = event.receipt_id or self.receipt_id
        self.protection_code = event.protection_code or self.protection_code
        self.fiscal_number = event.fiscal_number or self.fiscal_number
        self.message_id = event.message_id or self.message_id
        self.signed_request = event.signed_request or self.signed_request
        self.signed_answer = event.signed_answer or self.signed_answer
        ref = event.invoice
        self.kind = ref.kind.value
        if ref.customer:
            self.customer = ref.customer[:200]
            self.customer_key = ref.customer.casefold()[:200]
        if ref.total is not None:
            self.total_cents = cents(ref.total)
        self.issued_at = ref.issued_at or self.issued_at
        self.fiscal_seq = fiscal_seq(event.fiscal_number) or self.fiscal_seq
        self.late = event.late
        self.fiscalized_at = event.occurred_at if event.state is InvoiceState.FISCALIZED else None
        self.last_event_id = event.event_id
        self.last_occurred_at = event.occurred_at

    def see(self, event: InvoiceStatus) -> None:
        at = event.occurred_at
        if event.attempt > self.attempts:
            self.attempts = event.attempt
            self.seen_changed = True
        if at < self.first_seen_at:
            self.first_seen_at = at
            self.seen_changed = True
        if at > self.last_seen_at:
            self.last_seen_at = at
            self.seen_changed = True

    def row(self) -> dict[str, Any]:
        return {
            "integration_uid": self.integration_uid,
            "source_invoice_id": self.source_invoice_id,
            "source_version": self.source_version,
            "invoice_number": self.invoice_number,
            "state": self.state.value,
            "reason_code": self.reason_code,
            "message": self.message,
            "protection_code": self.protection_code,
            "fiscal_number": self.fiscal_number,
            "receipt_id": self.receipt_id,
            "message_id": self.message_id,
            "signed_request": self.signed_request,
            "signed_answer": self.signed_answer,
            "attempts": self.attempts,
            "first_seen_at": self.first_seen_at,
            "last_seen_at": self.last_seen_at,
            "fiscalized_at": self.fiscalized_at,
            "last_event_id": self.last_event_id,
            "last_occurred_at": self.last_occurred_at,
            "kind": self.kind,
            "customer": self.customer,
            "customer_key": self.customer_key,
            "total_cents": self.total_cents,
            "issued_at": self.issued_at,
            "fiscal_seq": self.fiscal_seq,
            "late": self.late,
        }

    def new_row(self) -> dict[str, Any]:
        row = self.row()
        if row["issued_at"] is None:
            row["issued_at"] = self.first_seen_at
        return row

    def seen_params(self) -> dict[str, Any]:
        return {
            "k_uid": self.integration_uid,
            "k_source": self.source_invoice_id,
            "b_attempts": self.attempts,
            "b_first_seen_at": self.first_seen_at,
            "b_last_seen_at": self.last_seen_at,
        }

    def state_params(self) -> dict[str, Any]:
        params = {f"b_{k}": v for k, v in self.row().items() if k not in _JOURNAL_KEY}
        params["k_uid"], params["k_source"] = self.integration_uid, self.source_invoice_id
        return params


def _project_statuses(
    connection: Connection,
    sql: _Sql,
    statuses: list[tuple[int, InvoiceStatus]],
    outcomes: list[Outcome | None],
) -> None:
    # Rows are locked in key order, so two appliers of one invoice's events queue
    # instead of deadlocking.
    stored = connection.execute(
        sql.journal,
        {
            "uids": sorted({e.integration_uid for _, e in statuses}),
            "sources": sorted({e.invoice.source_id for _, e in statuses}),
        },
    ).all()
    entries: dict[tuple[str, str], _Entry] = {
        (r.integration_uid, r.source_invoice_id): _Entry(
            integration_uid=r.integration_uid,
            source_invoice_id=r.source_invoice_id,
            state=InvoiceState(r.state),
            attempts=r.attempts,
            first_seen_at=r.first_seen_at,
            last_seen_at=r.last_seen_at,
            fiscalized_at=r.fiscalized_at,
            last_event_id=r.last_event_id,
            last_occurred_at=r.last_occurred_at,
            stored=True,
        )
        for r in stored
    }
    facts: dict[tuple[str, str], _Facts] = {
        (r.integration_uid, r.source_invoice_id): (r.invoice_number, r.customer, r.total_cents)
        for r in stored
    }
    usage: Counter[tuple[str, str]] = Counter()
    history: list[dict[str, Any]] = []
    signatures: dict[str, dict[str, Any]] = {}
    for i, event in statuses:
        key = (event.integration_uid, event.invoice.source_id)
        entry = entries.get(key)
        edit = None
        if entry is not None and entry.state is InvoiceState.FISCALIZED:
            edit = _edit_after_fiscalization(facts.get(key), event)
        outcomes[i] = _fold_status(entries, usage, event)
        if outcomes[i] is Outcome.APPLIED:
            facts[key] = _merge_facts(facts.get(key), event)
        history.append({
            "event_id": event.event_id,
            "integration_uid": event.integration_uid,
            "source_invoice_id": event.invoice.source_id,
            "state": HISTORY_EDITED if edit else event.state.value,
            "reason_code": event.reason_code,
            "message": edit or event.message,
            "attempt": event.attempt,
            "occurred_at": event.occurred_at,
        })
        signed = _signature(event)
        if signed is not None:
            signatures.setdefault(signed["event_id"], signed)

    inserts: list[dict[str, Any]] = []
    taken: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []
    for _, entry in sorted(entries.items()):
        if not entry.stored:
            inserts.append(entry.new_row())
        elif entry.took_state:
            taken.append(entry.state_params())
        elif entry.seen_changed:
            seen.append(entry.seen_params())
    if inserts:
        connection.execute(sql.insert_entries, inserts)
    if taken:
        connection.execute(sql.take_state, taken)
    if seen:
        connection.execute(sql.see, seen)
    if inserts or taken or seen:
        before = {(r.integration_uid, r.source_invoice_id): (r.issued_at, r.state)
                  for r in stored}
        _count_days(connection, sql, before, [
            k for k, e in entries.items() if not e.stored or e.took_state or e.seen_changed])
    connection.execute(sql.insert_history, history)
    if signatures:
        connection.execute(_INSERT_STEP, [signatures[k] for k in sorted(signatures)])
    counts = [
        {"integration_uid": uid, "month": month, "fiscalized": delta}
        for (uid, month), delta in sorted(usage.items())
        if delta
    ]
    if counts:
        connection.execute(sql.count_usage, counts)
    _queue_refused_around_a_change(connection, sql, entries, [e for _, e in statuses])


def _queue_refused_around_a_change(
    connection: Connection, sql: _Sql, entries: dict[tuple[str, str], _Entry],
    statuses: list[InvoiceStatus],
) -> None:
    """An invoice shown refused before it was signed, decided before the latest change
    that can let it through but projected after it: the change's requeue did not see it,
    so it is queued now."""
    stuck = [e for e in statuses
             if e.message_id is None and e.state.value in STUCK_STATES
             and (entry := entries.get((e.integration_uid, e.invoice.source_id))) is not None
             and entry.state is e.state]
    if not stuck:
        return
    changed = {r.uid: r.let_through_at for r in connection.execute(
        sql.let_through, {"uids": sorted({e.integration_uid for e in stuck})})}
    documents: dict[str, list[Document]] = {}
    for event in stuck:
        at = changed.get(event.integration_uid)
        if at is not None and event.occurred_at <= at:
            documents.setdefault(event.integration_uid, []).append(
                document_of(event.invoice.source_id, event.invoice.kind.value))
    now = datetime.now(UTC)
    for uid, found in sorted(documents.items()):
        queue(connection, uid, found, now, "refused before a change that can let it through")


HISTORY_RECEIVED = "received"
HISTORY_SIGNED = "signed"
HISTORY_EDITED = "edited"
_ZAGREB = ZoneInfo("Europe/Zagreb")
# The CIS message header (Zaglavlje): IdPoruke, then DatumVrijeme, the moment the request
# was made and signed, in Croatian time. It precedes the invoice's own DatVrijeme.
_HEADER_TIME = re.compile(
    r"Zaglavlje>\s*<(?:[\w.-]+:)?IdPoruke>[^<]*</(?:[\w.-]+:)?IdPoruke>\s*"
    r"<(?:[\w.-]+:)?DatumVrijeme>(\d\d)\.(\d\d)\.(\d{4})T(\d\d):(\d\d):(\d\d)<"
)
_HEADER_SPAN = 4096  # the header sits at the start of the body; never scan a whole document

_Facts = tuple[str | None, str | None, int | None]  # invoice number, customer, total cents


def signed_at(document: str | None) -> datetime | None:
    """When a signed CIS request was made: its header's DatumVrijeme (None if it has none)."""
    if not document:
        return None
    found = _HEADER_TIME.search(document, 0, _HEADER_SPAN)
    if found is None:
        return None
    day, month, year, hour, minute, second = map(int, found.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=_ZAGREB).astimezone(UTC)
    except ValueError:
        return None


def _signature(event: InvoiceStatus) -> dict[str, Any] | None:
    """The "signed" step of the attempt an outcome answers: one per message id, so every
    outcome of one signature (and every replay) names the same row."""
    at = signed_at(event.signed_request)
    if at is None or not event.message_id:
        return None
    return {
        "event_id": "signed:" + event.message_id[:100],
        "integration_uid": event.integration_uid,
        "source_invoice_id": event.invoice.source_id,
        "state": HISTORY_SIGNED,
        "reason_code": "signed",
        "message": f"Signed for the tax authority (attempt {event.attempt}, message id "
                   f"{event.message_id}, fiscal number {event.fiscal_number or 'none'}).",
        "attempt": event.attempt,
        "occurred_at": at,
    }


def _merge_facts(old: _Facts | None, event: InvoiceStatus) -> _Facts:
    # As the journal row keeps them: a winning event that does not carry one keeps the old.
    ref = event.invoice
    total = cents(ref.total) if ref.total is not None else None
    if old is None:
        return (ref.number, ref.customer, total)
    return (ref.number, ref.customer or old[1], total if total is not None else old[2])


def _money(total_cents: int) -> str:
    return f"{Decimal(total_cents) / 100:.2f}"


def _edit_after_fiscalization(fiscalized: _Facts | None, event: InvoiceStatus) -> str | None:
    """The history message for a duplicate of a fiscalized invoice that changed what the
    fiscal record states (number, customer, total); None when nothing of it changed."""
    if fiscalized is None or event.state is not InvoiceState.DUPLICATE:
        return None
    number, customer, total = fiscalized
    ref = event.invoice
    changes = []
    if number and ref.number != number:
        changes.append(f"number {number} -> {ref.number}")
    if customer and ref.customer and ref.customer[:200] != customer:
        changes.append(f"customer {customer} -> {ref.customer}")
    if total is not None and ref.total is not None and cents(ref.total) != total:
        changes.append(f"total {_money(total)} -> {_money(cents(ref.total))} EUR")
    if not changes:
        return None
    return (
        f"Edited in the source after fiscalization (version {ref.version}): "
        + "; ".join(changes)
        + ". The fiscalized record keeps the original; a fiscalized invoice cannot be "
        "changed: issue a credit note cancelling it and a new invoice instead."
    )


def _count_days(
    connection: Connection, sql: _Sql, before: dict[tuple[str, str], tuple[datetime, str]],
    changed: list[tuple[str, str]],
) -> None:
    """Move the changed rows in `journal_daily` from their old (day, state) to the new,
    read back after the writes: the SQL that sets a row's moment of issue decides it."""
    after = connection.execute(sql.days, {
        "uids": sorted({uid for uid, _ in changed}),
        "sources": sorted({source for _, source in changed}),
    })
    wanted = set(changed)
    delta: Counter[tuple[str, date, str]] = Counter()
    for row in after:
        key = (row.integration_uid, row.source_invoice_id)
        if key not in wanted:
            continue
        old = before.get(key)
        if old is not None:
            delta[(key[0], _day(old[0]), old[1])] -= 1
        delta[(key[0], _day(row.issued_at), row.state)] += 1
    counts = [
        {"integration_uid": uid, "day": day, "state": state, "invoices": n}
        for (uid, day, state), n in sorted(delta.items())
        if n
    ]
    if counts:
        connection.execute(_COUNT_DAYS, counts)


def _day(issued_at: datetime) -> date:
    return issued_at.astimezone(_ZAGREB).date()


def _fold_status(
    entries: dict[tuple[str, str], _Entry], usage: Counter[tuple[str, str]], event: InvoiceStatus
) -> Outcome:
    uid, key = event.integration_uid, (event.integration_uid, event.invoice.source_id)
    entry = entries.get(key)
    if entry is None:
        entries[key] = entry = _Entry.first(event)
        if entry.fiscalized_at is not None:
            usage[(uid, license_month(entry.fiscalized_at))] += 1
        return Outcome.APPLIED
    entry.see(event)
    current = _rank(entry.state, entry.last_occurred_at, entry.last_event_id)
    if _rank(event.state, event.occurred_at, event.event_id) <= current:
        return Outcome.STALE
    if entry.fiscalized_at is not None:
        usage[(uid, license_month(entry.fiscalized_at))] -= 1
    entry.take_state(event)
    if entry.fiscalized_at is not None:
        usage[(uid, license_month(entry.fiscalized_at))] += 1
    return Outcome.APPLIED


def _rank(state: InvoiceState, at: datetime, event_id: str) -> tuple[int, int, int, str]:
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    if state is InvoiceState.FISCALIZED:
        return (1, -micros, 1, event_id)
    return (0, micros, int(state.is_final), event_id)


@dataclass(slots=True)
class _Integration:
    uid: str
    status: str
    status_reason: str | None
    status_event_id: str | None
    status_event_at: datetime | None
    tier: str
    tier_event_at: datetime | None
    starts_at: datetime | None
    zoho_organization_claim: str | None
    let_through_at: datetime | None = None
    changed: bool = False

    def params(self) -> dict[str, Any]:
        return {
            "k_uid": self.uid,
            "b_starts_at": self.starts_at,
            "b_zoho_organization_claim": self.zoho_organization_claim,
            "b_status": self.status,
            "b_status_reason": self.status_reason,
            "b_status_event_id": self.status_event_id,
            "b_status_event_at": self.status_event_at,
            "b_tier": self.tier,
            "b_tier_event_at": self.tier_event_at,
            "b_let_through_at": self.let_through_at,
        }


def _project_integration_events(
    connection: Connection,
    sql: _Sql,
    changes: list[tuple[int, IntegrationEvent]],
    outcomes: list[Outcome | None],
) -> None:
    stored = connection.execute(
        sql.integrations, {"uids": sorted({e.integration_uid for _, e in changes})}
    )
    rows = {
        r.uid: _Integration(
            uid=r.uid,
            status=r.status,
            status_reason=r.status_reason,
            status_event_id=r.status_event_id,
            status_event_at=r.status_event_at,
            tier=r.tier,
            tier_event_at=r.tier_event_at,
            starts_at=r.starts_at,
            zoho_organization_claim=r.zoho_organization_claim,
            let_through_at=r.let_through_at,
        )
        for r in stored
    }
    for i, event in changes:
        outcomes[i] = _fold_integration_event(rows.get(event.integration_uid), event)
    now = datetime.now(UTC)
    for _, event in changes:
        row = rows.get(event.integration_uid)
        if row is not None and may_let_through(event):
            why = f"{event.kind.value}: {event.reason}" if event.reason else event.kind.value
            requeue_stuck(connection, event.integration_uid, now, why)
            if row.let_through_at is None or event.occurred_at > row.let_through_at:
                row.let_through_at = event.occurred_at
                row.changed = True
    changed = [row.params() for _, row in sorted(rows.items()) if row.changed]
    if changed:
        connection.execute(sql.update_integrations, changed)


# Changes on FiscoBridge's side that can let through what was refused before it was
# signed (runtime.store.refetch); the write-back mapping cannot.
_LETS_THROUGH = frozenset({
    IntegrationEventKind.CONNECTED, IntegrationEventKind.RECONNECTED,
    IntegrationEventKind.CERTIFICATE_REPLACED, IntegrationEventKind.TIER_CHANGED,
    IntegrationEventKind.SETTINGS_CHANGED,
})


def may_let_through(event: IntegrationEvent) -> bool:
    return event.kind in _LETS_THROUGH and not sets_mapping(event)


def _fold_integration_event(row: _Integration | None, event: IntegrationEvent) -> Outcome:
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
        if status is IntegrationStatus.REMOVED:
            row.zoho_organization_claim = None  # removal is final: the organization is free
    if status is IntegrationStatus.ACTIVE and row.starts_at is None:
        # The first activation starts the integration, unless the customer chose an
        # earlier start; `drop` keeps it, so a rebuild cannot move it.
        # Whole seconds, as Zoho stamps creation: an invoice created in the second the
        # integration started counts as after it.
        row.starts_at = event.occurred_at.replace(microsecond=0)
        changed = True
    if event.tier is not None and (
        row.tier_event_at is None or event.occurred_at >= row.tier_event_at
    ):
        row.tier = event.tier
        row.tier_event_at = event.occurred_at
        changed = True
    row.changed = row.changed or changed
    return Outcome.APPLIED if changed else Outcome.STALE


def _status_wins(row: _Integration, status: IntegrationStatus, event: IntegrationEvent) -> bool:
    if row.status_event_at is None or row.status_event_id is None:
        return True
    removed = IntegrationStatus.REMOVED
    new = (status is removed, event.occurred_at, event.event_id)
    current = (row.status == removed.value, row.status_event_at, row.status_event_id)
    return new > current


async def record_received(session: AsyncSession, events: Sequence[InvoiceReceived]) -> int:
    """Keep the "received" step of each invoice: the earliest delivery of it out of draft
    (webhook, poll, replay), one row per invoice whatever the number of deliveries, so
    redelivery and any order converge. Returns the number of deliveries considered."""
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        invoice = event.invoice
        if invoice.status is SourceStatus.DRAFT:
            continue  # not an invoice yet: nothing is fiscalized from a draft
        row_id = received_id(event.integration_uid, invoice.source_id)
        kept = rows.get(row_id)
        if kept is not None and kept["occurred_at"] <= event.occurred_at:
            continue
        rows[row_id] = {
            "event_id": row_id,
            "integration_uid": event.integration_uid,
            "source_invoice_id": invoice.source_id,
            "state": HISTORY_RECEIVED,
            "reason_code": event.channel.value,
            "message": f"Received from {invoice.source} by {event.channel.value}"
                       f" (invoice {invoice.number}, version {invoice.version}).",
            "attempt": 0,
            "occurred_at": event.occurred_at,
        }
    if rows:
        await session.execute(_UPSERT_RECEIVED, [rows[k] for k in sorted(rows)])
    return len(rows)


def received_id(uid: str, source_id: str) -> str:
    """The id of an invoice's "received" row: one per invoice, within the column's size."""
    digest = hashlib.sha256(f"{uid}\x00{source_id}".encode()).hexdigest()[:40]
    return f"received:{digest}"


async def drop(session: AsyncSession) -> None:
    """Forget everything the events put in the store (before replaying them). The
    "received" steps stay: `invoices.received` is not replayed, so nothing restores them."""
    for model in (JournalEntry, JournalDaily, LicenseUsage, ProcessedEvent):
        await session.execute(delete(model))
    await session.execute(delete(JournalEvent).where(JournalEvent.state != HISTORY_RECEIVED))
    await session.execute(
        update(Integration).values(
            status=NEUTRAL_STATUS.value,
            status_reason=None,
            status_event_id=None,
            status_event_at=None,
            tier_event_at=None,
            let_through_at=None,
        )
    )


# -- statements -------------------------------------------------------------------------
# Built once per dialect: SQLAlchemy then finds their compiled form in its cache without
# constructing and hashing a new statement for every batch.

_JOURNAL = cast(Table, JournalEntry.__table__)
_USAGE = cast(Table, LicenseUsage.__table__)
_PROCESSED = cast(Table, ProcessedEvent.__table__)
_INTEGRATIONS = cast(Table, Integration.__table__)
_JOURNAL_KEY = ("integration_uid", "source_invoice_id")
_EVIDENCE = (
    "protection_code", "fiscal_number", "receipt_id", "message_id", "signed_request",
    "signed_answer",
    # What the invoice is found by: kept when a later winning event does not carry it.
    "customer", "customer_key", "total_cents", "issued_at", "fiscal_seq",
)
_HISTORY = cast(Table, JournalEvent.__table__)
_HISTORY_COLUMNS = ("event_id", "integration_uid", "source_invoice_id", "state", "reason_code",
                    "message", "attempt", "occurred_at")
_HISTORY_VALUES = (
    f"INSERT INTO journal_events ({', '.join(_HISTORY_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _HISTORY_COLUMNS)}) "
)
# A derived step (one per signature) is written by every outcome of it: the first stays.
_INSERT_STEP = text(_HISTORY_VALUES + "ON CONFLICT (event_id) DO NOTHING").bindparams(
    bindparam("occurred_at", type_=_HISTORY.c.occurred_at.type))
# The earliest delivery is the invoice's receipt, whatever order deliveries are applied in.
_UPSERT_RECEIVED = text(
    _HISTORY_VALUES + "ON CONFLICT (event_id) DO UPDATE SET occurred_at = excluded.occurred_at, "
    "reason_code = excluded.reason_code, message = excluded.message "
    "WHERE excluded.occurred_at < journal_events.occurred_at"
).bindparams(bindparam("occurred_at", type_=_HISTORY.c.occurred_at.type))


@dataclass(frozen=True)
class _Sql:
    claim: Insert | TextualSelect
    claim_takes_arrays: bool
    journal: Select[Any]
    insert_entries: Insert
    take_state: Update
    see: Update
    insert_history: Insert
    days: Select[Any]
    count_usage: TextClause
    integrations: Select[Any]
    update_integrations: Update
    let_through: Select[Any]


_SQL: dict[str, _Sql] = {}


def _statements(dialect: str) -> _Sql:
    sql = _SQL.get(dialect)
    if sql is None:
        sql = _SQL[dialect] = _build(dialect)
    return sql


def _claim_statement(dialect: str) -> Insert | TextualSelect:
    # Only cacheable statements here: the dialects' own insert constructs (ON CONFLICT)
    # have no cache key in SQLAlchemy 2.0, so they would be compiled again for every
    # batch. SQLite: a plain insert with the OR IGNORE prefix is cached and skips
    # the same rows (the other columns are never NULL, so only the key can conflict).
    # PostgreSQL: one text statement over arrays, cached, and one prepared statement
    # whatever the batch size.
    processed = _PROCESSED
    if dialect == "sqlite":
        return insert(processed).prefix_with("OR IGNORE").returning(processed.c.event_id)
    if dialect == "postgresql":
        return (
            text(
                "INSERT INTO processed_events (event_id, integration_uid, topic, processed_at) "
                "SELECT e, u, t, CAST(:processed_at AS TIMESTAMP WITH TIME ZONE) "
                "FROM unnest(CAST(:event_ids AS VARCHAR[]), CAST(:uids AS VARCHAR[]), "
                "CAST(:topics AS VARCHAR[])) AS v(e, u, t) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
            )
            .bindparams(
                bindparam("event_ids", type_=postgresql.ARRAY(String)),
                bindparam("uids", type_=postgresql.ARRAY(String)),
                bindparam("topics", type_=postgresql.ARRAY(String)),
                bindparam("processed_at", type_=processed.c.processed_at.type),
            )
            .columns(processed.c.event_id)
        )
    raise NotImplementedError(f"the projection does not support the {dialect} dialect")


# Text, unlike the dialects' ON CONFLICT constructs, is cached; SQLite and PostgreSQL
# spell this upsert the same way.
_COUNT_USAGE = text(
    "INSERT INTO license_usage (integration_uid, month, fiscalized) "
    "VALUES (:integration_uid, :month, :fiscalized) "
    "ON CONFLICT (integration_uid, month) "
    "DO UPDATE SET fiscalized = license_usage.fiscalized + excluded.fiscalized"
)


_DAILY = cast(Table, JournalDaily.__table__)
_COUNT_DAYS = text(
    "INSERT INTO journal_daily (integration_uid, day, state, invoices) "
    "VALUES (:integration_uid, :day, :state, :invoices) "
    "ON CONFLICT (integration_uid, day, state) "
    "DO UPDATE SET invoices = journal_daily.invoices + excluded.invoices"
).bindparams(bindparam("day", type_=_DAILY.c.day.type))


def _param(table: Table, column: str) -> Any:
    return bindparam(f"b_{column}", type_=table.c[column].type)


def _build(dialect: str) -> _Sql:
    j, i = _JOURNAL, _INTEGRATIONS
    journal_key = (
        (j.c.integration_uid == bindparam("k_uid"))
        & (j.c.source_invoice_id == bindparam("k_source"))
    )
    state_values: dict[str, Any] = {
        c.name: (
            func.coalesce(_param(j, c.name), c) if c.name in _EVIDENCE else _param(j, c.name)
        )
        for c in j.c
        if c.name not in _JOURNAL_KEY
    }
    # A row whose events never carried the moment of issue shows when it was first seen,
    # and follows `first_seen_at` when an earlier event arrives late (so the value does
    # not depend on delivery order). A moment of issue equal to the old first sighting is
    # taken for that stand-in.
    issued_fallback = case(
        (j.c.issued_at == j.c.first_seen_at, _param(j, "first_seen_at")), else_=j.c.issued_at
    )
    state_values["issued_at"] = func.coalesce(_param(j, "issued_at"), issued_fallback)
    return _Sql(
        claim=_claim_statement(dialect),
        claim_takes_arrays=dialect == "postgresql",
        journal=select(
            j.c.integration_uid,
            j.c.source_invoice_id,
            j.c.state,
            j.c.attempts,
            j.c.first_seen_at,
            j.c.last_seen_at,
            j.c.fiscalized_at,
            j.c.last_event_id,
            j.c.last_occurred_at,
            j.c.invoice_number,
            j.c.customer,
            j.c.total_cents,
            j.c.issued_at,
        )
        .where(
            j.c.integration_uid.in_(bindparam("uids", expanding=True)),
            j.c.source_invoice_id.in_(bindparam("sources", expanding=True)),
        )
        .order_by(j.c.integration_uid, j.c.source_invoice_id)
        .with_for_update(),
        insert_entries=j.insert(),
        take_state=update(j).where(journal_key).values(state_values),
        see=update(j)
        .where(journal_key)
        .values(
            attempts=_param(j, "attempts"),
            first_seen_at=_param(j, "first_seen_at"),
            last_seen_at=_param(j, "last_seen_at"),
            issued_at=issued_fallback,
        ),
        insert_history=_HISTORY.insert(),
        days=select(j.c.integration_uid, j.c.source_invoice_id, j.c.issued_at, j.c.state).where(
            j.c.integration_uid.in_(bindparam("uids", expanding=True)),
            j.c.source_invoice_id.in_(bindparam("sources", expanding=True)),
        ),
        count_usage=_COUNT_USAGE,
        integrations=select(
            i.c.uid,
            i.c.status,
            i.c.status_reason,
            i.c.status_event_id,
            i.c.status_event_at,
            i.c.tier,
            i.c.tier_event_at,
            i.c.starts_at,
            i.c.zoho_organization_claim,
            i.c.let_through_at,
        )
        .where(i.c.uid.in_(bindparam("uids", expanding=True)))
        .order_by(i.c.uid)
        .with_for_update(),
        let_through=select(i.c.uid, i.c.let_through_at).where(
            i.c.uid.in_(bindparam("uids", expanding=True)), i.c.let_through_at.is_not(None)),
        update_integrations=update(i)
        .where(i.c.uid == bindparam("k_uid"))
        .values(
            {
                name: _param(i, name)
                for name in (
                    "status",
                    "status_reason",
                    "status_event_id",
                    "status_event_at",
                    "tier",
                    "tier_event_at",
                    "starts_at",
                    "zoho_organization_claim",
                    "let_through_at",
                )
            }
        ),
    )
