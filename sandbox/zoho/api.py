"""Zoho Books API v3 stand-in: organizations, invoices, credit notes, payments, custom
fields and comments, with Zoho's limits and errors.

Every answer has `code` (0 = success) and `message`. Per organization: `daily` calls
per local day (429, code 45; the plan's cap: Free 1,000, Standard 2,000, ...),
`per_minute` calls per rolling window (429, code 44) and `max_in_flight` concurrent
calls (429, code 1070); throttled calls do not count. Answers carry
`X-Rate-Limit-Limit/-Remaining/-Reset` for the daily quota, `-Reset` in seconds until
the organization's next local midnight. A missing or unknown token is 401 code 14, a
token without the endpoint's scope 401 code 57, a missing record 404 code 1002.

Lists behave as recorded: rows are summaries; `sort_column` outside the documented
set is ignored and `page_context` echoes the sort actually applied (`created_time`);
`last_modified_time=<time>` keeps records modified at or after it (whether Zoho's
"modified after" includes the instant itself is *uncertain*: the inclusive reading is
the one that loses nothing, and the connector dedupes either way).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox.zoho import books as zb
from sandbox.zoho.contacts import render_contact
from sandbox.zoho.state import (
    AccessToken,
    BooksState,
    DataCentre,
    Organization,
    StoredInvoice,
)

router = APIRouter(prefix="/books/v3")


def _scope(module: str, operation: str) -> set[str]:
    return {
        f"zohobooks.{module}.{operation}",
        f"zohobooks.{module}.all",
        "zohobooks.fullaccess.all",
    }


_READ_INVOICES = _scope("invoices", "read")
_UPDATE_INVOICES = _scope("invoices", "update")
_CREATE_INVOICES = _scope("invoices", "create")
_READ_CREDIT_NOTES = _scope("creditnotes", "read")
_UPDATE_CREDIT_NOTES = _scope("creditnotes", "update")
_READ_SETTINGS = _scope("settings", "read")
_READ_CONTACTS = _scope("contacts", "read")


class _Refusal(Exception):
    def __init__(self, status: int, code: int, message: str, outcome: str):
        self.status, self.code, self.message, self.outcome = status, code, message, outcome


def _answer(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        zb.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def _authenticate(
    request: Request, books: BooksState, dc: DataCentre, scopes: set[str]
) -> AccessToken:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme != "Zoho-oauthtoken" or not value.strip():
        raise _Refusal(401, 14, "Invalid value passed for authtoken.", "unauthorized")
    access = books.access_tokens.get(value.strip())
    if access is None or access.grant.dc != dc.key or access.expires_at <= books.clock.now():
        raise _Refusal(401, 14, "Invalid value passed for authtoken.", "unauthorized")
    if not scopes & {s.lower() for s in access.grant.scopes}:
        raise _Refusal(401, 57, "You are not authorized to perform this operation", "scope")
    return access


def _organization(request: Request, books: BooksState, access: AccessToken) -> Organization:
    organization_id = request.query_params.get("organization_id", "").strip()
    if not organization_id:
        raise _Refusal(400, 6041, "organization_id is required", "no_organization")
    allowed = {o.organization_id for o in books.organizations_of(access.grant)}
    if organization_id not in allowed:
        raise _Refusal(
            401,
            6041,
            f"This user is not associated with the CompanyID/CompanyName:{organization_id}.",
            "wrong_organization",
        )
    return books.organizations[organization_id]


def _quota_headers(org: Organization, now: datetime) -> dict[str, str]:
    local = org.local(now)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "X-Rate-Limit-Limit": str(org.limits.daily),
        "X-Rate-Limit-Remaining": str(max(0, org.limits.daily - org.day_calls)),
        "X-Rate-Limit-Reset": str(int((midnight - local).total_seconds())),
    }


def _admit(books: BooksState, org: Organization) -> None:
    now = books.clock.now()
    today = org.local(now).date()
    if org.day != today:
        org.day, org.day_calls = today, 0
    limits = org.limits
    if org.day_calls >= limits.daily:
        raise _Refusal(
            429,
            45,
            "You have reached the maximum number of API calls allowed for a day.",
            "throttled_45",
        )
    window = timedelta(seconds=limits.window_seconds)
    while org.accepted and org.accepted[0] <= now - window:
        org.accepted.popleft()
    if len(org.accepted) >= limits.per_minute:
        raise _Refusal(
            429,
            44,
            "You have made too many requests per minute. Please try again later.",
            "throttled_44",
        )
    if org.in_flight >= limits.max_in_flight:
        raise _Refusal(
            429,
            1070,
            "You have reached the maximum number of concurrent API calls allowed.",
            "throttled_1070",
        )
    org.accepted.append(now)
    org.day_calls += 1


async def _serve(
    request: Request, endpoint: str, scopes: set[str], handler: Any, with_org: bool = True
) -> Response:
    books: BooksState = request.app.state.books
    dc: DataCentre = request.app.state.dc
    area = f"api:{endpoint}"
    org: Organization | None = None
    admitted = False
    try:
        access = _authenticate(request, books, dc, scopes)
        if with_org:
            org = _organization(request, books, access)
            _admit(books, org)
            admitted = True
            org.in_flight += 1
            if org.limits.latency_seconds:
                await asyncio.sleep(org.limits.latency_seconds)
        body = handler(books, access, org, request)
    except _Refusal as refusal:
        books.count(area, refusal.outcome)
        if org is not None:
            books.count(f"org:{org.organization_id}", refusal.outcome)
        headers = _quota_headers(org, books.clock.now()) if org is not None else None
        return _answer({"code": refusal.code, "message": refusal.message}, refusal.status, headers)
    finally:
        if admitted and org is not None:
            org.in_flight -= 1
    books.count(area, "ok")
    if org is not None:
        books.count(f"org:{org.organization_id}", "ok")
    headers = _quota_headers(org, books.clock.now()) if org is not None else None
    return _answer({"code": 0, "message": "success", **body}, 200, headers)


def _organizations(books: BooksState, access: AccessToken, _: Any, __: Request) -> dict[str, Any]:
    user_orgs = books.organizations_of(access.grant)
    return {
        "organizations": [
            {
                "organization_id": org.organization_id,
                "name": org.name,
                "time_zone": org.time_zone,
                "currency_code": org.currency_code,
                "is_default_org": i == 0,
                "country": "",
                "plan_name": org.plan.title(),
            }
            for i, org in enumerate(user_orgs)
        ]
    }


def _page(request: Request) -> tuple[int, int]:
    q = request.query_params
    try:
        page = int(q.get("page", "1"))
        per_page = int(q.get("per_page", "200"))
    except ValueError:
        raise _Refusal(400, 2, "Invalid value passed for page or per_page", "bad_request") from None
    if page < 1 or not 1 <= per_page <= 200:
        raise _Refusal(400, 2, "Invalid value passed for page or per_page", "bad_request")
    return page, per_page


def _modified_since(request: Request) -> datetime | None:
    raw = request.query_params.get("last_modified_time")
    if raw is None or raw == "":
        return None
    try:
        since = datetime.strptime(raw.strip(), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        raise _Refusal(
            400, 2, "Invalid value passed for last_modified_time", "bad_request"
        ) from None
    return since


def _listing(
    org: Organization, request: Request, kind: str, records: dict[str, StoredInvoice]
) -> dict[str, Any]:
    q = request.query_params
    page, per_page = _page(request)
    asked = q.get("sort_column", zb.DEFAULT_SORT)
    sort_column = asked if asked in zb.SORT_COLUMNS else zb.DEFAULT_SORT
    sort_order = q.get("sort_order", "D")
    if sort_order not in ("A", "D"):
        raise _Refusal(400, 2, "Invalid value passed for sort_order", "bad_request")
    filters = {
        k: v
        for k, v in q.items()
        if k
        in (
            "status",
            "customer_id",
            "invoice_number",
            "creditnote_number",
            "date_start",
            "date_end",
        )
    }
    since = _modified_since(request)
    chosen = [
        inv
        for inv in records.values()
        if zb.matches(zb.header(inv), filters)
        and (since is None or inv.last_modified_time >= since)
    ]
    chosen.sort(key=lambda inv: zb.sort_key(sort_column, org, inv, kind), reverse=sort_order == "D")
    start = (page - 1) * per_page
    window = chosen[start : start + per_page]
    rows = [zb.list_item(zb.render(org, inv, kind), kind) for inv in window]
    return {
        "invoices" if kind == "invoice" else "creditnotes": rows,
        "page_context": {
            "page": page,
            "per_page": per_page,
            "has_more_page": start + per_page < len(chosen),
            "report_name": "Invoices" if kind == "invoice" else "Credit Notes",
            "applied_filter": filters.get("status", "Status.All"),
            "sort_column": sort_column,
            "sort_order": sort_order,
            "search_criteria": [],
        },
    }


def _list(books: BooksState, _: AccessToken, org: Organization, request: Request) -> dict[str, Any]:
    return _listing(org, request, "invoice", org.invoices)


def _list_notes(
    books: BooksState, _: AccessToken, org: Organization, request: Request
) -> dict[str, Any]:
    return _listing(org, request, "creditnote", org.credit_notes)


def _stored(org: Organization, invoice_id: str, what: str = "Invoice") -> StoredInvoice:
    records = org.credit_notes if what == "Credit note" else org.invoices
    stored = records.get(invoice_id)
    if stored is None:
        raise _Refusal(404, 1002, f"{what} does not exist.", "not_found")
    return stored


@router.get("/organizations")
async def organizations(request: Request) -> Response:
    return await _serve(
        request, "GET /books/v3/organizations", _READ_SETTINGS, _organizations, with_org=False
    )


@router.get("/invoices")
async def list_invoices(request: Request) -> Response:
    return await _serve(request, "GET /books/v3/invoices", _READ_INVOICES, _list)


@router.get("/invoices/{invoice_id}")
async def invoice(request: Request, invoice_id: str) -> Response:
    def detail(books: BooksState, _: AccessToken, org: Organization, __: Request) -> dict[str, Any]:
        return {"invoice": zb.render(org, _stored(org, invoice_id))}

    return await _serve(request, "GET /books/v3/invoices/{id}", _READ_INVOICES, detail)


@router.get("/invoices/{invoice_id}/payments")
async def invoice_payments(request: Request, invoice_id: str) -> Response:
    def payments(
        books: BooksState, _: AccessToken, org: Organization, __: Request
    ) -> dict[str, Any]:
        return {"payments": zb.payments_of(org, _stored(org, invoice_id))}

    return await _serve(request, "GET /books/v3/invoices/{id}/payments", _READ_INVOICES, payments)


@router.get("/contacts/{contact_id}")
async def contact(request: Request, contact_id: str) -> Response:
    def detail(books: BooksState, _: AccessToken, org: Organization, __: Request) -> dict[str, Any]:
        stored = org.contacts.get(contact_id)
        if stored is None:
            raise _Refusal(404, 1002, "Contact does not exist.", "not_found")
        return {"contact": render_contact(org, stored, books.clock.now())}

    return await _serve(request, "GET /books/v3/contacts/{id}", _READ_CONTACTS, detail)


@router.get("/creditnotes")
async def list_credit_notes(request: Request) -> Response:
    return await _serve(request, "GET /books/v3/creditnotes", _READ_CREDIT_NOTES, _list_notes)


@router.get("/creditnotes/{creditnote_id}")
async def credit_note(request: Request, creditnote_id: str) -> Response:
    def detail(books: BooksState, _: AccessToken, org: Organization, __: Request) -> dict[str, Any]:
        note = _stored(org, creditnote_id, "Credit note")
        return {"creditnote": zb.render(org, note, "creditnote")}

    return await _serve(request, "GET /books/v3/creditnotes/{id}", _READ_CREDIT_NOTES, detail)


@router.get("/settings/taxes")
async def taxes(request: Request) -> Response:
    """The organization's taxes. The keys are those integrators read (tax_id, tax_name,
    tax_percentage as a JSON number) plus tax_type; the rest of Zoho's tax object is
    *uncertain* and left out, so nothing may rely on it."""

    def listing(books: BooksState, _: AccessToken, org: Organization, r: Request) -> dict[str, Any]:
        rows = [
            {"tax_id": t.tax_id, "tax_name": t.name, "tax_percentage": float(t.percentage),
             "tax_type": "tax"}
            for t in org.taxes.values()
        ]
        return {"taxes": rows, "page_context": {"page": 1, "per_page": 200,
                                                "has_more_page": False}}

    return await _serve(request, "GET /books/v3/settings/taxes", _READ_SETTINGS, listing)


@router.get("/settings/customfields")
async def custom_fields(request: Request) -> Response:
    """The organization's custom fields; `entity=invoice` keeps the invoice ones."""

    def listing(books: BooksState, _: AccessToken, org: Organization, r: Request) -> dict[str, Any]:
        entity = r.query_params.get("entity", "invoice")
        fields = [f for f in org.invoice_custom_fields if f["entity"] == entity]
        return {"customfields": fields}

    return await _serve(request, "GET /books/v3/settings/customfields", _READ_SETTINGS, listing)


@router.put("/invoice/{invoice_id}/customfields")
async def update_custom_fields(request: Request, invoice_id: str) -> Response:
    """`PUT /invoice/{id}/customfields` (singular): a bare array of {customfield_id, value}."""
    try:
        payload = json.loads(await request.body())
    except ValueError:
        payload = None

    def update(books: BooksState, _: AccessToken, org: Organization, __: Request) -> dict[str, Any]:
        stored = _stored(org, invoice_id)
        if not isinstance(payload, list) or not all(isinstance(e, dict) for e in payload):
            raise _Refusal(
                400, 4, "Invalid value passed for JSONString: expected an array", "bad_request"
            )
        known = {f["customfield_id"] for f in org.custom_fields_of("invoice")}
        for entry in payload:
            field_id = str(entry.get("customfield_id", ""))
            if field_id not in known:
                raise _Refusal(
                    400, 1001, f"Custom field {field_id or '(none)'} does not exist.", "bad_request"
                )
        for entry in payload:
            stored.custom_values[str(entry["customfield_id"])] = entry.get("value", "")
        books.touch(stored)
        rendered = zb.render(org, stored)
        return {"custom_fields": rendered["custom_fields"]}

    return await _serve(
        request, "PUT /books/v3/invoice/{id}/customfields", _UPDATE_INVOICES, update
    )


@router.put("/creditnotes/{creditnote_id}")
async def update_credit_note(request: Request, creditnote_id: str) -> Response:
    """"Update a credit note" (`PUT /creditnotes/{id}`, scope creditnotes.UPDATE), as far
    as write-back uses it: `custom_fields` [{customfield_id, value}] of the credit note
    module are set, the rest of the credit note is kept. Any other attribute is refused
    (400): this stand-in does not edit a credit note's lines, dates or customer."""
    try:
        payload = json.loads(await request.body())
    except ValueError:
        payload = None

    def update(books: BooksState, _: AccessToken, org: Organization, __: Request) -> dict[str, Any]:
        stored = _stored(org, creditnote_id, "Credit note")
        if not isinstance(payload, dict):
            raise _Refusal(
                400, 4, "Invalid value passed for JSONString: expected an object", "bad_request"
            )
        others = sorted(set(payload) - {"custom_fields"})
        if others:
            raise _Refusal(400, 4, f"the sandbox updates only custom_fields, not {others}",
                           "bad_request")
        entries = payload.get("custom_fields", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise _Refusal(400, 4, "Invalid value passed for custom_fields", "bad_request")
        known = {f["customfield_id"] for f in org.custom_fields_of("creditnote")}
        for entry in entries:
            field_id = str(entry.get("customfield_id", ""))
            if field_id not in known:
                raise _Refusal(
                    400, 1001, f"Custom field {field_id or '(none)'} does not exist.", "bad_request"
                )
        for entry in entries:
            stored.custom_values[str(entry["customfield_id"])] = entry.get("value", "")
        books.touch(stored)
        return {"creditnote": zb.render(org, stored, "creditnote")}

    return await _serve(
        request, "PUT /books/v3/creditnotes/{id}", _UPDATE_CREDIT_NOTES, update
    )


@router.get("/invoices/{invoice_id}/comments")
async def invoice_comments(request: Request, invoice_id: str) -> Response:
    """"List invoice comments & history": the comments added through the API."""

    def listing(
        books: BooksState, _: AccessToken, org: Organization, __: Request
    ) -> dict[str, Any]:
        return {"comments": list(_stored(org, invoice_id).comments)}

    return await _serve(request, "GET /books/v3/invoices/{id}/comments", _READ_INVOICES, listing)


@router.post("/invoices/{invoice_id}/comments")
async def add_comment(request: Request, invoice_id: str) -> Response:
    try:
        payload = json.loads(await request.body())
    except ValueError:
        payload = None

    def comment(
        books: BooksState, _: AccessToken, org: Organization, __: Request
    ) -> dict[str, Any]:
        stored = _stored(org, invoice_id)
        if not isinstance(payload, dict) or not str(payload.get("description", "")).strip():
            raise _Refusal(400, 4, "description is required", "bad_request")
        entry = {
            "comment_id": str(int(invoice_id) + 2 * 10**17 + len(stored.comments)),
            "invoice_id": invoice_id,
            "description": str(payload["description"]),
            "show_comment_to_clients": bool(payload.get("show_comment_to_clients", False)),
            "commented_by": "FiscoBridge",
            "comment_type": "internal",
            "date": org.local(books.clock.now()).date().isoformat(),
        }
        stored.comments.append(entry)
        return {"comment": entry}

    return await _serve(request, "POST /books/v3/invoices/{id}/comments", _CREATE_INVOICES, comment)
