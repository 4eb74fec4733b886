"""Incremental sync: every invoice changed since a watermark, each fetched in detail once.

Zoho's `last_modified_time` list filter is not documented as "since", so the list is
read newest first (`sort_column=last_modified_time&sort_order=D`), 200 a page, until an
invoice older than `watermark - overlap` appears. The overlap re-reads the edges
(clock skew between Zoho's servers, edits committed while a page was read). Versions
are deduplicated by (invoice_id, last_modified_time): within a sync always, across
syncs when the caller hands the previous result's `seen` back (the poller keeps it in
memory; after a restart the overlap is fetched once more and the fiscalizer's
per-invoice state absorbs the duplicates).

Details are fetched oldest change first, so when the quota runs out part-way the
watermark can still advance over the unbroken run of fetched invoices: a daily cap
smaller than the backlog then makes progress every day instead of starting over.

A sync never raises a `ZohoError`: it returns what it fetched, the watermark that is
safe to store once those invoices are published, and in `interrupted` why it stopped
early (`DailyLimitReached` -> wait for `retry_at`; `TokenInvalid` -> reconnect; ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.zoho.client import MAX_PER_PAGE, ZohoBooksClient
from connectors.zoho.errors import ZohoApiError, ZohoError
from connectors.zoho.mapping import InvoiceMappingError, map_invoice, parse_datetime
from schemas.invoice import Invoice, PaymentMethod

Key = tuple[str, datetime]
"""(invoice_id, last_modified_time): one version of one invoice."""


@dataclass(frozen=True)
class Rejected:
    """An invoice that changed but cannot be delivered; the reason names the field."""

    invoice_id: str
    code: str
    reason: str


@dataclass(frozen=True)
class SyncResult:
    invoices: list[Invoice]
    new_watermark: datetime | None  # None only when nothing was ever seen
    api_calls: int
    rejected: list[Rejected] = field(default_factory=list)
    interrupted: ZohoError | None = None
    seen: frozenset[Key] = frozenset()  # pass to the next sync: the overlap is not re-fetched

    @property
    def complete(self) -> bool:
        return self.interrupted is None


@dataclass
class Listing:
    """What newest-first pages say changed since `since`, minus versions already seen."""

    since: datetime | None
    seen: AbstractSet[Key] = frozenset()
    changes: dict[str, datetime] = field(default_factory=dict)
    skipped: set[Key] = field(default_factory=set)
    rejected: list[Rejected] = field(default_factory=list)

    def take(self, items: Sequence[Mapping[str, Any]]) -> bool:
        """Add one page; True once an invoice older than `since` shows the end."""
        for item in items:
            invoice_id = str(item.get("invoice_id") or "")
            try:
                modified = parse_datetime(item.get("last_modified_time"), "last_modified_time")
            except InvoiceMappingError as error:
                self.rejected.append(Rejected(invoice_id, error.code, str(error)))
                continue
            if self.since is not None and modified < self.since:
                return True
            if not invoice_id:
                continue
            if (invoice_id, modified) in self.seen:
                self.skipped.add((invoice_id, modified))
            elif invoice_id not in self.changes or modified > self.changes[invoice_id]:
                self.changes[invoice_id] = modified
        return False


def safe_watermark(
    old: datetime | None, fetched_in_order: Sequence[tuple[datetime, bool]]
) -> datetime | None:
    """The latest change time up to which every change (oldest first) was fetched."""
    watermark = old
    for modified, fetched in fetched_in_order:
        if not fetched:
            break
        if watermark is None or modified > watermark:
            watermark = modified
    return watermark


async def changed_invoices(
    client: ZohoBooksClient,
    watermark: datetime | None,
    *,
    overlap: timedelta = timedelta(minutes=5),
    seen: AbstractSet[Key] = frozenset(),
    per_page: int = MAX_PER_PAGE,
    default_payment_method: PaymentMethod = PaymentMethod.OTHER,
) -> SyncResult:
    """`seen`: the previous result's `seen`; without it the overlap is fetched again
    (harmless downstream, but it costs one detail call per re-read invoice)."""
    calls_before = client.limiter.calls
    listing = Listing(watermark - overlap if watermark is not None else None, seen)
    page = 1
    try:
        while True:
            items, has_more = await client.list_invoices(page=page, per_page=per_page)
            if listing.take(items) or not has_more:
                break
            page += 1
    except ZohoError as error:
        # The newest pages alone prove nothing about older changes: keep the watermark.
        return SyncResult(
            [], watermark, client.limiter.calls - calls_before, [], error, frozenset(seen)
        )

    order = sorted(listing.changes.items(), key=lambda change: (change[1], change[0]))
    outcomes = await asyncio.gather(
        *(client.invoice(invoice_id) for invoice_id, _ in order), return_exceptions=True
    )
    invoices: dict[Key, Invoice] = {}
    progress: list[tuple[datetime, bool]] = []
    done: set[Key] = set(listing.skipped)
    rejected = listing.rejected
    interrupted: ZohoError | None = None
    for (invoice_id, modified), outcome in zip(order, outcomes, strict=True):
        if isinstance(outcome, ZohoApiError) and outcome.http_status == 404:
            progress.append((modified, True))  # deleted since it was listed
            done.add((invoice_id, modified))
            continue
        if isinstance(outcome, ZohoError):
            interrupted = interrupted or outcome
            progress.append((modified, False))
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        progress.append((modified, True))
        done.add((invoice_id, modified))
        try:
            invoice = map_invoice(outcome, default_payment_method=default_payment_method)
        except InvoiceMappingError as error:
            rejected.append(Rejected(invoice_id, error.code, str(error)))
            continue
        done.add((invoice.source_id, invoice.last_modified_at))
        invoices.setdefault((invoice.source_id, invoice.last_modified_at), invoice)

    new_watermark = safe_watermark(watermark, progress)
    horizon = new_watermark - overlap if new_watermark is not None else None
    return SyncResult(
        invoices=list(invoices.values()),
        new_watermark=new_watermark,
        api_calls=client.limiter.calls - calls_before,
        rejected=rejected,
        interrupted=interrupted,
        seen=frozenset(k for k in done if horizon is None or k[1] >= horizon),
    )
