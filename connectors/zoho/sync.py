"""Incremental sync: every invoice and credit note changed since a watermark, each fetched
in detail once.

Listing uses Zoho's documented incremental filter, `last_modified_time=<time>` ("modified
after", `2013-11-18T02:02:51-0800`), with `watermark - overlap`: the overlap re-reads the
edges (clock skew between Zoho's servers, edits committed while a page was read). It
does not lean on `sort_column=last_modified_time`, which is not a documented sort
column (Zoho ignores it and sorts by created_time, as `page_context` then says): pages
are read by `created_time` ascending, an order an edit cannot change, so a record
edited while the pages are read is neither skipped nor moved, and new records land on
the last page. The client checks `page_context` echoes that order.

Whether Zoho's filter includes the instant itself, or is ignored altogether, is
*uncertain*: rows modified before `watermark - overlap` are dropped here too, and
versions are deduplicated by (id, last_modified_time) within a sync always, across
syncs when the caller hands the previous result's `seen` back (the poller keeps it in
memory; after a restart the overlap is fetched once more and the fiscalizer's
per-invoice state absorbs the duplicates).

Details are fetched oldest change first, so when the quota runs out part-way the
watermark can still advance over the unbroken run of fetched records: a daily cap
smaller than the backlog then makes progress every day instead of starting over. An
invoice with payments recorded costs one more call, `GET /invoices/{id}/payments`
(its detail carries none), for the payment method; a document without the buyer's tax
number, one `GET /contacts/{id}` per contact and cache period (connectors.zoho.contacts).

A sync never raises a `ZohoError`: it returns what it fetched, the watermark that is
safe to store once those records are published, and in `interrupted` why it stopped
early (`DailyLimitReached` -> wait for `retry_at`; `TokenInvalid` -> reconnect; ...).
A grant without the credit-notes scope (connected before it was asked for) still syncs
invoices; the credit notes are reported as rejected until the customer reconnects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.zoho.client import MAX_PER_PAGE, ZohoBooksClient
from connectors.zoho.contacts import ContactCache
from connectors.zoho.errors import ZohoApiError, ZohoError
from connectors.zoho.mapping import (
    InvoiceMappingError,
    MappingOptions,
    buyer_contact_id,
    map_credit_note,
    map_invoice,
    parse_datetime,
)
from connectors.zoho.rejected import Rejected, rejected_document
from schemas.invoice import Invoice, PaymentMethod

Key = tuple[str, datetime]
"""(record id, last_modified_time): one version of one record. Credit notes' ids carry
the prefix `creditnote:`."""

CREDIT_NOTE = "creditnote:"
SORT_COLUMN = "created_time"
SORT_ORDER = "A"
SCOPE_MISSING = 57


@dataclass(frozen=True)
class SyncResult:
    invoices: list[Invoice]
    new_watermark: datetime | None  # None only when nothing was ever seen
    api_calls: int
    rejected: list[Rejected] = field(default_factory=list)
    interrupted: ZohoError | None = None
    seen: frozenset[Key] = frozenset()  # pass to the next sync: the overlap is not re-fetched
    list_calls: int = 0  # of api_calls, those that read lists (the rest: one per change)

    @property
    def complete(self) -> bool:
        return self.interrupted is None


@dataclass
class Listing:
    """What the filtered pages say changed since `since`, minus versions already seen."""

    since: datetime | None
    seen: AbstractSet[Key] = frozenset()
    changes: dict[str, datetime] = field(default_factory=dict)
    skipped: set[Key] = field(default_factory=set)
    rejected: list[Rejected] = field(default_factory=list)

    def take(self, items: Sequence[Mapping[str, Any]], id_key: str = "invoice_id") -> None:
        """Add one page of list rows (`id_key`: invoice_id or creditnote_id)."""
        prefix = CREDIT_NOTE if id_key == "creditnote_id" else ""
        for item in items:
            record_id = str(item.get(id_key) or "")
            try:
                modified = parse_datetime(item.get("last_modified_time"), "last_modified_time")
            except InvoiceMappingError as error:
                self.rejected.append(Rejected(record_id, error.code, str(error)))
                continue
            if not record_id or (self.since is not None and modified < self.since):
                continue  # older than asked for: Zoho's filter read more loosely than ours
            key = prefix + record_id
            if (key, modified) in self.seen:
                self.skipped.add((key, modified))
            elif key not in self.changes or modified > self.changes[key]:
                self.changes[key] = modified


def filter_time(since: datetime) -> str:
    """Zoho's filter format, whole seconds with a colon-less offset."""
    return since.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%S%z")


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


async def _read_list(
    lister: Callable[..., Awaitable[tuple[list[dict[str, Any]], bool]]],
    listing: Listing,
    id_key: str,
    per_page: int,
) -> None:
    filters = {} if listing.since is None else {"last_modified_time": filter_time(listing.since)}
    page = 1
    while True:
        items, has_more = await lister(
            page=page,
            per_page=per_page,
            sort_column=SORT_COLUMN,
            sort_order=SORT_ORDER,
            **filters,
        )
        listing.take(items, id_key)
        if not has_more:
            return
        page += 1


def has_payments(document: Mapping[str, Any]) -> bool:
    status = str(document.get("status") or "").lower()
    if status in ("draft", "void"):
        return False
    try:
        return Decimal(str(document.get("payment_made") or 0)) > 0
    except ArithmeticError:
        return False


Fetched = tuple[dict[str, Any], list[Any] | None, Mapping[str, Any] | None]


async def _fetch(
    client: ZohoBooksClient, key: str, contacts: ContactCache | None, buyer_tax_field: str | None
) -> Fetched:
    payments = None
    if key.startswith(CREDIT_NOTE):
        document = await client.credit_note(key.removeprefix(CREDIT_NOTE))
    else:
        document = await client.invoice(key)
        payments = await client.invoice_payments(key) if has_payments(document) else None
    contact = None
    contact_id = buyer_contact_id(document, buyer_tax_field) if contacts is not None else None
    if contacts is not None and contact_id is not None:
        contact = await contacts.get(client, contact_id)
    return document, payments, contact


def _map(key: str, fetched: Fetched, options: MappingOptions) -> Invoice | Rejected:
    """The canonical document, or the refusal identified so that the channel can show it
    blocked (connectors.zoho.rejected)."""
    document, payments, contact = fetched
    try:
        if key.startswith(CREDIT_NOTE):
            return map_credit_note(document, contact=contact, **options.kwargs())
        return map_invoice(document, payments=payments, contact=contact, **options.kwargs())
    except InvoiceMappingError as error:
        kind = "creditnote" if key.startswith(CREDIT_NOTE) else "invoice"
        refused = rejected_document(kind, document, error, base_currency=options.base_currency)
        if not refused.invoice_id:  # the detail lacks its id: the key names it
            refused = replace(refused, invoice_id=key.removeprefix(CREDIT_NOTE))
        return refused


@dataclass(frozen=True)
class Refetched:
    """Documents read again by id (runtime.store.refetch), whatever their last change."""

    invoices: list[Invoice]
    rejected: list[Rejected]
    done: list[str]  # the keys read (mapped or refused) or gone from Zoho (404)
    api_calls: int
    interrupted: ZohoError | None = None


async def documents_by_id(
    client: ZohoBooksClient,
    keys: Sequence[str],
    *,
    options: MappingOptions | None = None,
    contacts: ContactCache | None = None,
) -> Refetched:
    """Each document (an invoice id, or `creditnote:` and a credit note's id) fetched in
    detail and mapped as a sync maps it. A key whose fetch failed is not in `done`."""
    options = options or MappingOptions()
    calls_before = client.limiter.calls
    outcomes = await asyncio.gather(
        *(_fetch(client, key, contacts, options.buyer_tax_field) for key in keys),
        return_exceptions=True,
    )
    invoices: list[Invoice] = []
    rejected: list[Rejected] = []
    done: list[str] = []
    interrupted: ZohoError | None = None
    for key, outcome in zip(keys, outcomes, strict=True):
        if isinstance(outcome, ZohoApiError) and outcome.http_status == 404:
            done.append(key)  # deleted in Zoho: nothing left to fiscalize
            continue
        if isinstance(outcome, ZohoError):
            interrupted = interrupted or outcome
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        done.append(key)
        mapped = _map(key, outcome, options)
        if isinstance(mapped, Rejected):
            rejected.append(mapped)
        else:
            invoices.append(mapped)
    return Refetched(invoices, rejected, done, client.limiter.calls - calls_before, interrupted)


async def changed_invoices(
    client: ZohoBooksClient,
    watermark: datetime | None,
    *,
    overlap: timedelta = timedelta(minutes=5),
    seen: AbstractSet[Key] = frozenset(),
    per_page: int = MAX_PER_PAGE,
    default_payment_method: PaymentMethod = PaymentMethod.OTHER,
    options: MappingOptions | None = None,
    credit_notes: bool = True,
    contacts: ContactCache | None = None,
) -> SyncResult:
    """`seen`: the previous result's `seen`; without it the overlap is fetched again
    (harmless downstream, but it costs one detail call per re-read record).
    `contacts`: read the buyer's contact (cached) for a document that carries no tax
    number itself; without it only the document's own fields are read."""
    options = options or MappingOptions(default_payment_method=default_payment_method)
    calls_before = client.limiter.calls
    listing = Listing(watermark - overlap if watermark is not None else None, seen)
    try:
        await _read_list(client.list_invoices, listing, "invoice_id", per_page)
    except ZohoError as error:
        # A partial listing proves nothing about other changes: keep the watermark.
        return SyncResult(
            [], watermark, client.limiter.calls - calls_before, [], error, frozenset(seen)
        )
    if credit_notes and "creditnotes" not in client.scopes_missing:
        try:
            await _read_list(client.list_credit_notes, listing, "creditnote_id", per_page)
        except ZohoApiError as error:
            if not (error.http_status == 401 and error.code == SCOPE_MISSING):
                return SyncResult(
                    [], watermark, client.limiter.calls - calls_before, [], error, frozenset(seen)
                )
            client.scopes_missing.add("creditnotes")  # asked once per session, not every poll
            listing.rejected.append(
                Rejected(
                    "creditnotes",
                    "scope_missing",
                    "the Zoho connection cannot read credit notes"
                    " (ZohoBooks.creditnotes.READ): reconnect Zoho Books to fiscalize them",
                )
            )
        except ZohoError as error:
            return SyncResult(
                [], watermark, client.limiter.calls - calls_before, [], error, frozenset(seen)
            )

    list_calls = client.limiter.calls - calls_before
    order = sorted(listing.changes.items(), key=lambda change: (change[1], change[0]))
    outcomes = await asyncio.gather(
        *(_fetch(client, key, contacts, options.buyer_tax_field) for key, _ in order),
        return_exceptions=True,
    )
    invoices: dict[Key, Invoice] = {}
    progress: list[tuple[datetime, bool]] = []
    done: set[Key] = set(listing.skipped)
    rejected = listing.rejected
    interrupted: ZohoError | None = None
    for (key, modified), outcome in zip(order, outcomes, strict=True):
        if isinstance(outcome, ZohoApiError) and outcome.http_status == 404:
            progress.append((modified, True))  # deleted since it was listed
            done.add((key, modified))
            continue
        if isinstance(outcome, ZohoError):
            interrupted = interrupted or outcome
            progress.append((modified, False))
            continue
        if isinstance(outcome, BaseException):
            raise outcome
        progress.append((modified, True))
        done.add((key, modified))
        mapped = _map(key, outcome, options)
        if isinstance(mapped, Rejected):
            rejected.append(mapped)
            continue
        prefix = CREDIT_NOTE if key.startswith(CREDIT_NOTE) else ""
        version = (prefix + mapped.source_id, mapped.last_modified_at)
        done.add(version)
        invoices.setdefault(version, mapped)

    new_watermark = safe_watermark(watermark, progress)
    horizon = new_watermark - overlap if new_watermark is not None else None
    return SyncResult(
        invoices=list(invoices.values()),
        new_watermark=new_watermark,
        api_calls=client.limiter.calls - calls_before,
        rejected=rejected,
        interrupted=interrupted,
        seen=frozenset(k for k in done if horizon is None or k[1] >= horizon),
        list_calls=list_calls,
    )
