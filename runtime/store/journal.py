"""Reading the fiscal journal and license usage (the projection writes them).

The portal's invoice lists are keyset pages: every page is one bounded range scan of an
index per integration (and per state when states are chosen), merged and cut to the page
size, so the time of a page does not grow with the journal or with how deep one pages.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    func,
    literal,
    select,
    text,
    tuple_,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Select

from runtime.licensing import license_month
from runtime.store.models import JournalDaily, JournalEntry, JournalEvent, LicenseUsage
from runtime.store.projection import cents
from runtime.store.repository import InvalidInput, Repository
from runtime.store.types import UtcDateTime
from schemas.events import InvoiceState
from schemas.invoice import STORNO_SUFFIX


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
    fiscal_number: str | None
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
    kind: str
    customer: str | None
    total: Decimal | None
    issued_at: datetime
    late: bool = False


class InvoiceSort(StrEnum):
    ISSUED = "issued"  # the moment of issue
    FISCAL = "fiscal"  # the sequence number of the fiscal number (numbered invoices only)


@dataclass(frozen=True)
class InvoiceFilter:
    """What a list shows. Every bound is optional; dates are instants (the caller turns
    a day into the instants of its local midnight)."""

    states: tuple[InvoiceState, ...] = ()
    issued_from: datetime | None = None  # inclusive
    issued_before: datetime | None = None  # exclusive
    number: str | None = None  # the invoice number exactly
    customer: str | None = None  # the customer's name starts with (any case)
    amount_min: Decimal | None = None  # total in EUR, inclusive
    amount_max: Decimal | None = None
    first_seen_before: datetime | None = None  # retrying since before this
    late: bool = False  # only those past the delivery deadline (the status's late flag)


@dataclass(frozen=True)
class InvoiceRow:
    """One line of a list: no signed documents (they are the bulk of a journal row)."""

    integration_uid: str
    source_invoice_id: str
    invoice_number: str
    kind: str
    customer: str | None
    total: Decimal | None
    issued_at: datetime
    state: InvoiceState
    reason_code: str
    message: str
    fiscal_number: str | None
    fiscal_seq: int | None
    protection_code: str | None
    receipt_id: str | None
    fiscalized_at: datetime | None
    first_seen_at: datetime


@dataclass(frozen=True)
class InvoicePage:
    rows: list[InvoiceRow]
    newer: str | None  # cursor of the page before (towards the start of the order)
    older: str | None  # cursor of the page after
    sort: InvoiceSort
    descending: bool


class HistoryStep(StrEnum):
    """History steps that are not a status outcome (runtime/store/projection.py)."""

    RECEIVED = "received"  # first delivered out of draft by the source
    SIGNED = "signed"  # one signature of it for the tax authority
    EDITED = "edited"  # changed in the source after it was fiscalized




@dataclass(frozen=True)
class HistoryEntry:
    event_id: str
    state: InvoiceState | HistoryStep
    reason_code: str
    message: str
    attempt: int
    occurred_at: datetime
    storno: bool = False  # a step of the invoice's storno document


def _order(step: HistoryEntry) -> int:
    if step.state is HistoryStep.RECEIVED:
        return -1
    if step.state is HistoryStep.SIGNED:
        return 2 * step.attempt
    # An attempt's outcome follows its signature; unsigned outcomes (attempt 0: blocked,
    # duplicate, edited) keep the order they occurred in.
    return 2 * step.attempt + 1 if step.attempt else 1 << 30


def _step(value: str) -> InvoiceState | HistoryStep:
    try:
        return InvoiceState(value)
    except ValueError:
        return HistoryStep(value)


@dataclass
class DailyCounts:
    days: list[date]
    counts: dict[date, dict[InvoiceState, int]] = field(default_factory=dict)


_J = JournalEntry
_D = JournalDaily
DAILY_ZONE = "Europe/Zagreb"  # the day journal_daily counts by (the projection's)
_ROW_COLUMNS = (
    _J.integration_uid, _J.source_invoice_id, _J.invoice_number, _J.kind, _J.customer,
    _J.total_cents, _J.issued_at, _J.state, _J.reason_code, _J.message, _J.fiscal_number,
    _J.fiscal_seq, _J.protection_code, _J.receipt_id, _J.fiscalized_at, _J.first_seen_at,
)
# Above every character a name can start with: "starts with p" is p <= key < p + this
# (the column is compared bytewise: "C" collation on PostgreSQL, BINARY on SQLite).
_PREFIX_END = "\U0010ffff"
MAX_PAGE = 500
_DAILY_PG = text(
    "SELECT date(timezone(CAST(:zone AS TEXT), j.issued_at)) AS day, j.state, count(*) "
    "FROM (SELECT u, s FROM unnest(CAST(:uids AS VARCHAR[])) AS u, "
    "unnest(CAST(:states AS VARCHAR[])) AS s) AS k "
    "JOIN fiscal_journal AS j ON j.integration_uid = k.u AND j.state = k.s "
    "WHERE j.issued_at >= :start AND j.issued_at < :end GROUP BY 1, 2"
).bindparams(
    bindparam("uids", type_=postgresql.ARRAY(String)),
    bindparam("states", type_=postgresql.ARRAY(String)),
    bindparam("start", type_=UtcDateTime()), bindparam("end", type_=UtcDateTime()),
)


def encode_cursor(sort: InvoiceSort, row: InvoiceRow) -> str:
    key = row.issued_at.isoformat() if sort is InvoiceSort.ISSUED else row.fiscal_seq
    text = json.dumps([sort.value, key, row.integration_uid, row.source_invoice_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(sort: InvoiceSort, cursor: str) -> tuple[Any, str, str]:
    """(sort key, integration uid, source id), or InvalidInput for a damaged cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, key, uid, source = json.loads(raw)
        if kind != sort.value or not isinstance(uid, str) or not isinstance(source, str):
            raise ValueError(kind)
        if sort is InvoiceSort.ISSUED:
            key = datetime.fromisoformat(key)
            if key.tzinfo is None:
                raise ValueError(key)
        elif not isinstance(key, int):
            raise ValueError(key)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "the page link is damaged or belongs to another sort order; start from the "
            "first page"
        ) from None
    return key, uid, source


def _row(values: Any) -> InvoiceRow:
    (uid, source, number, kind, customer, total_cents, issued_at, state, reason, message,
     fiscal_number, fiscal_seq, zki, jir, fiscalized_at, first_seen_at) = values
    return InvoiceRow(
        integration_uid=uid, source_invoice_id=source, invoice_number=number, kind=kind,
        customer=customer,
        total=None if total_cents is None else Decimal(total_cents).scaleb(-2),
        issued_at=issued_at, state=InvoiceState(state), reason_code=reason, message=message,
        fiscal_number=fiscal_number, fiscal_seq=fiscal_seq, protection_code=zki,
        receipt_id=jir, fiscalized_at=fiscalized_at, first_seen_at=first_seen_at,
    )


def _conditions(uid: str, state: InvoiceState | None, f: InvoiceFilter) -> list[Any]:
    where: list[Any] = [_J.integration_uid == uid]
    if state is not None:
        where.append(_J.state == state.value)
    if f.issued_from is not None:
        where.append(_J.issued_at >= f.issued_from)
    if f.issued_before is not None:
        where.append(_J.issued_at < f.issued_before)
    if f.number:
        where.append(_J.invoice_number == f.number)
    if f.customer:
        prefix = f.customer.casefold()
        where.append(and_(_J.customer_key >= prefix, _J.customer_key < prefix + _PREFIX_END))
    if f.amount_min is not None:
        where.append(_J.total_cents >= cents(f.amount_min))
    if f.amount_max is not None:
        where.append(_J.total_cents <= cents(f.amount_max))
    if f.first_seen_before is not None:
        where.append(_J.first_seen_at < f.first_seen_before)
    if f.late:
        where.append(_J.late.is_(True))
    return where


def _key_column(sort: InvoiceSort) -> Any:
    return _J.issued_at if sort is InvoiceSort.ISSUED else _J.fiscal_seq


def _after(
    sort: InvoiceSort, uid: str, cursor: tuple[Any, str, str], forward: bool
) -> ColumnElement[bool]:
    """Rows of integration `uid` past the cursor in the order (key, uid, source id),
    ascending when `forward`. The uid is constant within one branch, so it is settled
    here and the database gets a plain range on (key, source id) of its index."""
    key, cursor_uid, source = cursor
    column = _key_column(sort)
    past_key = column > key if forward else column < key
    if uid == cursor_uid:
        # A row value, not "key < k OR (key = k AND source < s)": PostgreSQL starts the
        # index scan at a row comparison, while the OR form is a filter that reads every
        # row before the cursor (a deep page would cost as much as an OFFSET).
        pair = tuple_(column, _J.source_invoice_id)
        bound = tuple_(literal(key, column.type), literal(source, _J.source_invoice_id.type))
        return pair > bound if forward else pair < bound
    if (uid > cursor_uid) == forward:
        return column >= key if forward else column <= key
    return past_key


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

    async def page(
        self,
        uids: Sequence[str],
        f: InvoiceFilter = InvoiceFilter(),
        *,
        sort: InvoiceSort = InvoiceSort.ISSUED,
        descending: bool = True,
        after: str | None = None,
        before: str | None = None,
        size: int = 50,
    ) -> InvoicePage:
        """One page of the invoices of `uids` in the sort order, following `after` (the
        `older` cursor of the page before) or preceding `before` (a `newer` cursor)."""
        if not 1 <= size <= MAX_PAGE:
            raise InvalidInput(f"a page holds 1 to {MAX_PAGE} invoices")
        if after and before:
            raise InvalidInput("a page follows one cursor, not two")
        cursor = decode_cursor(sort, after or before or "") if (after or before) else None
        # Walking back (before) reads the order reversed and turns the rows round.
        backwards = before is not None
        forward = descending == backwards  # ascending scan?
        rows = await self._scan(uids, f, sort, forward, cursor, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        if backwards:
            rows.reverse()
        first_page = cursor is None or (backwards and not more)
        last_page = not backwards and not more
        return InvoicePage(
            rows=rows,
            newer=None if first_page or not rows else encode_cursor(sort, rows[0]),
            older=None if last_page or not rows else encode_cursor(sort, rows[-1]),
            sort=sort, descending=descending,
        )

    async def iterate(
        self, uids: Sequence[str], f: InvoiceFilter = InvoiceFilter(), *,
        sort: InvoiceSort = InvoiceSort.ISSUED, descending: bool = True, batch: int = 500,
    ) -> AsyncIterator[list[InvoiceRow]]:
        """Every matching row in order, in batches, each read in a short transaction of
        its own (an export of a million rows holds no transaction open)."""
        cursor: tuple[Any, str, str] | None = None
        while True:
            rows = await self._scan(uids, f, sort, not descending, cursor, batch)
            if rows:
                yield rows
            if len(rows) < batch:
                return
            last = rows[-1]
            key = last.issued_at if sort is InvoiceSort.ISSUED else last.fiscal_seq
            cursor = (key, last.integration_uid, last.source_invoice_id)

    async def _scan(
        self, uids: Sequence[str], f: InvoiceFilter, sort: InvoiceSort, forward: bool,
        cursor: tuple[Any, str, str] | None, limit: int,
    ) -> list[InvoiceRow]:
        if not uids:
            return []
        key = _key_column(sort)
        order = (
            (key.asc(), _J.integration_uid.asc(), _J.source_invoice_id.asc()) if forward
            else (key.desc(), _J.integration_uid.desc(), _J.source_invoice_id.desc())
        )
        branches: list[Select[Any]] = []
        for uid in sorted(set(uids)):
            for state in f.states or (None,):
                where = _conditions(uid, state, f)
                if sort is InvoiceSort.FISCAL:
                    where.append(_J.fiscal_seq.is_not(None))
                if cursor is not None:
                    where.append(_after(sort, uid, cursor, forward))
                branches.append(
                    select(*_ROW_COLUMNS).where(*where).order_by(*order).limit(limit)
                )
        if len(branches) == 1:
            query = branches[0]
        else:
            # Each branch is its own ordered, limited index scan; the merge sorts at most
            # branches x limit rows.
            merged = union_all(*(b.subquery().select() for b in branches)).subquery()
            m = merged.c
            mkey = m.issued_at if sort is InvoiceSort.ISSUED else m.fiscal_seq
            morder = (
                (mkey.asc(), m.integration_uid.asc(), m.source_invoice_id.asc()) if forward
                else (mkey.desc(), m.integration_uid.desc(), m.source_invoice_id.desc())
            )
            query = select(*(m[c.key] for c in _ROW_COLUMNS)).order_by(*morder).limit(limit)
        async with self._tx() as session:
            return [_row(values) for values in (await session.execute(query)).all()]

    async def count(
        self, uids: Sequence[str], f: InvoiceFilter = InvoiceFilter(), *, cap: int = 10_000
    ) -> tuple[int, bool]:
        """How many invoices match, counting at most `cap` + 1: (count, more than cap)."""
        if not uids:
            return 0, False
        branches = [
            select(_J.source_invoice_id).where(*_conditions(uid, state, f))
            for uid in sorted(set(uids)) for state in (f.states or (None,))
        ]
        inner = (union_all(*branches) if len(branches) > 1 else branches[0]).limit(cap + 1)
        async with self._tx() as session:
            n = await session.scalar(select(func.count()).select_from(inner.subquery()))
        return min(n or 0, cap), (n or 0) > cap

    async def history(self, uid: str, source_id: str) -> list[HistoryEntry]:
        """Every step the invoice went through, oldest first: received, each signature
        and outcome, edits after fiscalization, and its storno's steps (`storno`)."""
        sources = [source_id]
        if not source_id.endswith(STORNO_SUFFIX):
            sources.append(source_id + STORNO_SUFFIX)
        query = (
            select(JournalEvent)
            .where(JournalEvent.integration_uid == uid,
                   JournalEvent.source_invoice_id.in_(sources))
            .order_by(JournalEvent.occurred_at, JournalEvent.event_id)
        )
        async with self._tx() as session:
            steps = [
                HistoryEntry(e.event_id, _step(e.state), e.reason_code, e.message,
                             e.attempt, e.occurred_at,
                             storno=e.source_invoice_id != source_id)
                for e in await session.scalars(query)
            ]
        # A signed request states whole seconds: within one second, the receipt comes
        # first, then each attempt's signature before its outcome.
        return sorted(steps, key=lambda h: (h.occurred_at.replace(microsecond=0), _order(h)))

    async def daily(
        self, uids: Sequence[str], first_day: date, days: int, zone: ZoneInfo
    ) -> DailyCounts:
        """Invoices per local day of issue and state, `days` days from `first_day`."""
        result = DailyCounts([first_day + timedelta(days=i) for i in range(days)])
        for day in result.days:
            result.counts[day] = {}
        if not uids:
            return result
        start = datetime.combine(first_day, datetime.min.time(), tzinfo=zone)
        end = datetime.combine(first_day + timedelta(days=days), datetime.min.time(),
                               tzinfo=zone)
        in_range = (_J.integration_uid.in_(sorted(set(uids))), _J.issued_at >= start,
                    _J.issued_at < end)
        async with self._tx() as session:
            if zone.key == DAILY_ZONE:
                # The projection keeps these counts (journal_daily): one short range per
                # integration, whatever the journal's size.
                found = await session.execute(
                    select(_D.day, _D.state, func.sum(_D.invoices))
                    .where(_D.integration_uid.in_(sorted(set(uids))), _D.day >= first_day,
                           _D.day < first_day + timedelta(days=days))
                    .group_by(_D.day, _D.state))
                tallies = [(day, state, int(n)) for day, state, n in found.all() if n]
            elif session.get_bind().dialect.name == "postgresql":
                # One index-only range scan per integration and state (the state index
                # leads with both); with the uids alone PostgreSQL read every state's
                # entries of the integrations between them (2.5x slower at 1M rows).
                rows = (await session.execute(_DAILY_PG, {
                    "uids": sorted(set(uids)), "states": [s.value for s in InvoiceState],
                    "zone": zone.key, "start": start, "end": end,
                })).all()
                tallies = [(day, state, n) for day, state, n in rows]
            else:
                # SQLite knows no time zones: the embedded store is small, count here.
                found = await session.execute(select(_J.issued_at, _J.state).where(*in_range))
                tally: dict[tuple[date, str], int] = {}
                for issued_at, state in found.all():
                    k = (issued_at.astimezone(zone).date(), state)
                    tally[k] = tally.get(k, 0) + 1
                tallies = [(d, s, n) for (d, s), n in tally.items()]
        for day, state, n in tallies:
            if day in result.counts:
                result.counts[day][InvoiceState(state)] = n
        return result

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
        fiscal_number=row.fiscal_number,
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
        kind=row.kind,
        customer=row.customer,
        total=None if row.total_cents is None else Decimal(row.total_cents).scaleb(-2),
        issued_at=row.issued_at,
        late=row.late,
    )
