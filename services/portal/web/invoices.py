"""Invoices: the list per integration and across the account's integrations (keyset pages,
filters, sorts), its CSV export, and one invoice's page with its evidence."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.datastructures import QueryParams

from runtime import resend as resending
from runtime.store import IntegrationRecord, InvalidInput
from runtime.store.journal import (
    HistoryStep,
    InvoiceFilter,
    InvoicePage,
    InvoiceRow,
    InvoiceSort,
)
from runtime.store.projection import cents
from schemas.events import InvoiceState
from services.portal.web import receipt
from services.portal.web.context import PageError, Portal, portal_of, render, signed_in
from services.portal.web.sessions import session_of

router = APIRouter()

ZONE = receipt.CIS_ZONE  # the days and times a Croatian business sees
PAGE_SIZES = (25, 50, 100, 200)
STATE_LABELS = {
    InvoiceState.FISCALIZED: "Fiscalized",
    InvoiceState.REJECTED: "Rejected",
    InvoiceState.BLOCKED: "Blocked",
    InvoiceState.DUPLICATE: "Duplicate",
    InvoiceState.RETRYING: "Retrying",
    InvoiceState.FAILED: "Failed",
    InvoiceState.SKIPPED: "Skipped",
}
# The history's steps: every state, and the steps that are not an outcome.
STEP_LABELS: dict[str, str] = {
    HistoryStep.RECEIVED: "Received",
    HistoryStep.SIGNED: "Signed",
    **{state.value: label for state, label in STATE_LABELS.items()},
    InvoiceState.RETRYING: "Retried",
    HistoryStep.EDITED: "Edited after fiscalization",
}
LATE_AFTER_WORKING_DAYS = 2
CSV_COLUMNS = (
    "integration", "integration_name", "invoice_number", "kind", "customer", "total_eur",
    "issued_at_local",
    "state", "reason_code", "fiscal_number", "zki", "jir", "fiscalized_at_local", "message",
)


def late_cutoff(now: datetime, working_days: int = LATE_AFTER_WORKING_DAYS) -> datetime:
    """The instant `working_days` working days (Monday to Friday, Croatian time) before
    `now`: an invoice still retrying since before it is late under the fiscalization
    law's two working days for a subsequent delivery. Public holidays are not counted
    out (the stricter reading: an invoice is flagged late no later than the law's)."""
    local = now.astimezone(ZONE)
    left = working_days
    while left:
        local -= timedelta(days=1)
        if local.weekday() < 5:
            left -= 1
    return local.astimezone(UTC)


@dataclass(frozen=True)
class ListQuery:
    filter: InvoiceFilter
    sort: InvoiceSort
    descending: bool
    after: str | None
    before: str | None
    size: int
    late: bool
    form: dict[str, Any]  # what the filter form shows back

    def link(self, base: str, **changes: str | None) -> str:
        """This list's URL with some parameters changed (None: dropped)."""
        params: list[tuple[str, str]] = []
        values: dict[str, Any] = {**self.form, "after": self.after, "before": self.before,
                                  **changes}
        for name, value in values.items():
            if name == "states":
                params.extend(("state", s) for s in value)
            elif value not in (None, "", False):
                params.append((name, "1" if value is True else str(value)))
        return base + ("?" + urlencode(params) if params else "")


def _refuse(message: str, back: str) -> PageError:
    return PageError(400, "Filter not understood", f"{message}. Nothing was searched.",
                     next_url=back, next_label="Back to the invoices")


def _day(params: QueryParams, name: str, label: str, back: str) -> date | None:
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _refuse(f"{label} {text!r} is not a date (YYYY-MM-DD)", back) from None


def _amount(params: QueryParams, name: str, label: str, back: str) -> Decimal | None:
    text = (params.get(name) or "").strip().replace(",", ".")
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise _refuse(f"{label} {text!r} is not an amount in euro (e.g. 125.50)", back) from None
    if not value.is_finite() or abs(value) >= Decimal("1e12"):
        raise _refuse(f"{label} {text!r} is not an amount in euro", back)
    return value


def parse_query(params: QueryParams, back: str, now: datetime) -> ListQuery:
    states: list[InvoiceState] = []
    for value in params.getlist("state"):
        try:
            states.append(InvoiceState(value))
        except ValueError:
            known = ", ".join(s.value for s in InvoiceState)
            raise _refuse(f"There is no state {value!r} (states: {known})", back) from None
    late = params.get("late") in ("1", "on", "true")
    day_from = _day(params, "from", "The first day", back)
    day_to = _day(params, "to", "The last day", back)
    if day_from and day_to and day_to < day_from:
        raise _refuse("The last day is before the first day", back)
    amount_min = _amount(params, "min", "The smallest amount", back)
    amount_max = _amount(params, "max", "The largest amount", back)
    if amount_min is not None and amount_max is not None and amount_max < amount_min:
        raise _refuse("The largest amount is below the smallest", back)
    sort_text = params.get("sort") or InvoiceSort.ISSUED.value
    try:
        sort = InvoiceSort(sort_text)
    except ValueError:
        raise _refuse(f"Invoices sort by 'issued' or 'fiscal', not {sort_text!r}", back) from None
    order = params.get("order") or "desc"
    if order not in ("desc", "asc"):
        raise _refuse(f"The order is 'desc' or 'asc', not {order!r}", back)
    size_text = params.get("size") or "50"
    if not size_text.isdigit() or int(size_text) not in PAGE_SIZES:
        raise _refuse(f"A page holds {', '.join(map(str, PAGE_SIZES))} invoices", back)
    number = (params.get("number") or "").strip()[:128] or None
    customer = (params.get("customer") or "").strip()[:200] or None
    if late:
        # Late: still retrying past the legal deadline (the reporter's late flag).
        states = [InvoiceState.RETRYING]
    f = InvoiceFilter(
        states=tuple(dict.fromkeys(states)),
        issued_from=datetime.combine(day_from, time(0), tzinfo=ZONE) if day_from else None,
        issued_before=(datetime.combine(day_to + timedelta(days=1), time(0), tzinfo=ZONE)
                       if day_to else None),
        number=number, customer=customer, amount_min=amount_min, amount_max=amount_max,
        late=late,
    )
    form = {
        "states": [s.value for s in f.states] if not late else [],
        "late": late,
        "from": day_from.isoformat() if day_from else "",
        "to": day_to.isoformat() if day_to else "",
        "number": number or "", "customer": customer or "",
        "min": params.get("min", "").strip(), "max": params.get("max", "").strip(),
        "sort": sort.value, "order": order, "size": size_text,
    }
    return ListQuery(f, sort, order == "desc", params.get("after") or None,
                     params.get("before") or None, int(size_text), late, form)


async def _page(portal: Portal, uids: list[str], query: ListQuery, back: str) -> InvoicePage:
    try:
        return await portal.store.journal.page(
            uids, query.filter, sort=query.sort, descending=query.descending,
            after=query.after, before=query.before, size=query.size,
        )
    except InvalidInput as refused:
        raise _refuse(str(refused).capitalize(), back) from None


async def _list_page(
    request: Request, records: list[IntegrationRecord], base: str,
    integration: IntegrationRecord | None,
) -> Response:
    portal = portal_of(request)
    query = parse_query(request.query_params, base, datetime.now(UTC))
    uids = [r.uid for r in records]
    page = await _page(portal, uids, query, base)
    count, more = await portal.store.journal.count(uids, query.filter)
    return render(
        request, "invoices.html", integration=integration, base=base, page=page,
        query=query, count=count, more=more, states=STATE_LABELS, zone=ZONE,
        sizes=PAGE_SIZES, names={r.uid: r.name for r in records},
        csv_url=query.link(base + ".csv", after=None, before=None),
    )


@router.get("/invoices")
async def account_invoices(request: Request) -> Response:
    account_id = signed_in(request)
    records = await portal_of(request).store.integrations.find(account_id=account_id)
    return await _list_page(request, records, "/invoices", None)


@router.get("/integrations/{uid}/invoices")
async def integration_invoices(request: Request, uid: str) -> Response:
    record = await portal_of(request).owned_integration(request, uid)
    return await _list_page(request, [record], f"/integrations/{uid}/invoices", record)


def _csv_line(row: InvoiceRow) -> list[str]:
    def local(at: datetime | None) -> str:
        return at.astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S") if at else ""

    return [
        row.integration_uid, row.invoice_number, row.kind, row.customer or "",
        "" if row.total is None else f"{row.total:.2f}", local(row.issued_at), row.state.value,
        row.reason_code, row.fiscal_number or "", row.protection_code or "",
        row.receipt_id or "", local(row.fiscalized_at), row.message,
    ]


def _safe_cell(value: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet (CSV injection): customer
    # names and messages come from outside, so such cells are quoted with a leading '.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


async def _csv(portal: Portal, records: list[IntegrationRecord],
               query: ListQuery) -> AsyncIterator[str]:
    uids = [r.uid for r in records]
    names = {r.uid: r.name or "" for r in records}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    async for rows in portal.store.journal.iterate(
        uids, query.filter, sort=query.sort, descending=query.descending, batch=1000
    ):
        buffer.seek(0)
        buffer.truncate()
        for row in rows:
            line = _csv_line(row)
            # The integration's name is the customer's own text: guarded like the others.
            writer.writerow([line[0], _safe_cell(names.get(row.integration_uid, "")),
                             *(_safe_cell(v) for v in line[1:4]), *line[4:12],
                             _safe_cell(line[12])])
        yield buffer.getvalue()


def _csv_response(portal: Portal, records: list[IntegrationRecord], query: ListQuery,
                  name: str) -> Response:
    stamp = datetime.now(ZONE).strftime("%Y%m%d-%H%M")
    return StreamingResponse(
        _csv(portal, records, query), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'},
    )


@router.get("/invoices.csv")
async def account_invoices_csv(request: Request) -> Response:
    account_id = signed_in(request)
    portal = portal_of(request)
    records = await portal.store.integrations.find(account_id=account_id)
    query = parse_query(request.query_params, "/invoices", datetime.now(UTC))
    return _csv_response(portal, records, query, "invoices")


@router.get("/integrations/{uid}/invoices.csv")
async def integration_invoices_csv(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    query = parse_query(request.query_params, f"/integrations/{uid}/invoices", datetime.now(UTC))
    return _csv_response(portal, [record], query, f"invoices-{uid}")


@dataclass(frozen=True)
class WriteBack:
    available: bool
    label: str


WRITE_BACK_LABELS = {"written_back": "Written back", "waiting": "Waiting", "failed": "Failed"}


async def write_back_state(portal: Portal, uid: str, source_id: str) -> WriteBack:
    """Whether the fiscal number, ZKI, JIR and QR URL reached the invoice in Zoho Books:
    the latest outcome of the write-back stage (services/writeback), with its reason."""
    outcome = await portal.store.writebacks.get(uid, source_id)
    if outcome is None:
        return WriteBack(False, "Not written back yet: the fiscal data are on this page.")
    label = WRITE_BACK_LABELS.get(outcome.state, outcome.state)
    if outcome.reason:
        label = f"{label}: {outcome.reason}"
    return WriteBack(outcome.state == "written_back", label)


async def _entry(portal: Portal, request: Request, uid: str, source_id: str) -> Any:
    entry, _ = await _owned_entry(portal, request, uid, source_id)
    return entry


async def _owned_entry(portal: Portal, request: Request, uid: str,
                       source_id: str) -> tuple[Any, IntegrationRecord]:
    record = await portal.owned_integration(request, uid)
    entry = await portal.store.journal.get(uid, source_id)
    if entry is None:
        raise PageError(404, "Not found", "There is no such invoice in this integration.",
                        next_url=f"/integrations/{uid}/invoices",
                        next_label="Back to the invoices")
    return entry, record


@router.get("/integrations/{uid}/invoices/{source_id}")
async def invoice_page(request: Request, uid: str, source_id: str) -> Response:
    portal = portal_of(request)
    entry, record = await _owned_entry(portal, request, uid, source_id)
    told = receipt.reported(entry.signed_request)
    # The QR code's amount is the total CIS was told (negative for a credit note).
    if told is not None and told.total is not None:
        total_cents: int | None = cents(told.total)
    elif entry.total is not None:
        total_cents = cents(entry.total)
        if entry.kind == "credit_note":
            total_cents = -abs(total_cents)
    else:
        total_cents = None
    url = None
    svg = None
    if total_cents is not None and entry.state is InvoiceState.FISCALIZED:
        url = receipt.qr_url(receipt_id=entry.receipt_id, protection_code=entry.protection_code,
                             issued_at=entry.issued_at, total_cents=total_cents)
        if url:
            svg = receipt.qr_svg(url, f"QR code of invoice {entry.invoice_number}")
    return render(
        request, "invoice.html", entry=entry, record=record, told=told, qr_url=url, qr_svg=svg,
        history=await portal.store.journal.history(uid, source_id), states=STATE_LABELS,
        steps=STEP_LABELS,
        write_back=await write_back_state(portal, uid, source_id), zone=ZONE,
    )


@router.post("/integrations/{uid}/invoices/{source_id}/resend")
async def resend_invoice(request: Request, uid: str, source_id: str) -> Response:
    """Deliver a stuck invoice (retrying, failed, rejected) again now, with NakDost=true,
    or read one refused before it was signed (blocked) again from Zoho Books;
    runtime/resend.py says why pressing it twice, or too late, reports nothing twice."""
    portal = portal_of(request)
    entry = await _entry(portal, request, uid, source_id)
    back = f"/integrations/{uid}/invoices/{source_id}"
    reason = resending.why_not(entry)
    if reason is not None:
        raise PageError(409, "Not resent", f"This invoice cannot be resent: {reason}.",
                        next_url=back, next_label="Back to the invoice")
    who = f"the Client Portal ({session_of(request).email or 'signed-in user'})"
    if resending.never_signed(entry):
        outcome = resending.Outcome()
        await resending.queue_unsigned(portal.store.refetch, uid, [entry], who, outcome)
    elif portal.resend is None:
        raise PageError(503, "Resending is not available",
                        "This portal cannot reach the pipeline; nothing was sent.",
                        next_url=back, next_label="Back to the invoice")
    else:
        outcome = await portal.resend(uid, [entry], who)
    if source_id in outcome.queued:
        session_of(request).flash(
            "Queued: FiscoBridge reads the invoice again from Zoho Books within a minute and "
            "fiscalizes it, unless something still refuses it (then this page says what). "
            "This page shows the outcome.")
    elif source_id in outcome.sent:
        session_of(request).flash(
            "Resent: the invoice is signed again as a subsequent delivery and sent to the tax "
            "authority now. This page shows the outcome in a few seconds.")
    else:
        session_of(request).flash(
            "Not resent: " + outcome.refused.get(source_id, "unknown reason") + ".")
    return RedirectResponse(back, status_code=303)


def _xml_download(text: str | None, filename: str, what: str, back: str) -> Response:
    if not text:
        raise PageError(404, f"No {what}", f"This invoice has no {what} on record.",
                        next_url=back, next_label="Back to the invoice")
    return Response(text.encode(), media_type="application/xml",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _file_stem(number: str, source_id: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in number)[:60]
    return f"{safe or 'invoice'}-{source_id}"


@router.get("/integrations/{uid}/invoices/{source_id}/signed-request.xml")
async def signed_request(request: Request, uid: str, source_id: str) -> Response:
    entry = await _entry(portal_of(request), request, uid, source_id)
    return _xml_download(entry.signed_request,
                         f"{_file_stem(entry.invoice_number, source_id)}-request.xml",
                         "signed request", f"/integrations/{uid}/invoices/{source_id}")


@router.get("/integrations/{uid}/invoices/{source_id}/signed-answer.xml")
async def signed_answer(request: Request, uid: str, source_id: str) -> Response:
    entry = await _entry(portal_of(request), request, uid, source_id)
    return _xml_download(entry.signed_answer,
                         f"{_file_stem(entry.invoice_number, source_id)}-answer.xml",
                         "signed answer", f"/integrations/{uid}/invoices/{source_id}")
