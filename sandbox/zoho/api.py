"""Zoho Books API v3 stand-in: organizations, invoice list and detail, with Zoho's limits.

Every answer has `code` (0 = success) and `message`. Per organization: `daily` calls
per local day (429, code 45), `per_minute` calls per rolling window (429, code 44)
and `max_in_flight` concurrent calls (429, code 1070); throttled calls do not count.
Successful answers carry `X-Rate-Limit-Limit/-Remaining/-Reset` for the daily quota,
`-Reset` in seconds until the organization's next local midnight.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox.zoho import books as zb
from sandbox.zoho.state import AccessToken, BooksState, DataCentre, Organization

router = APIRouter(prefix="/books/v3")

_READ_INVOICES = {"zohobooks.invoices.read", "zohobooks.invoices.all", "zohobooks.fullaccess.all"}
_READ_SETTINGS = {"zohobooks.settings.read", "zohobooks.settings.all", "zohobooks.fullaccess.all"}


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
        raise _Refusal(401, 57, "You are not authorized to perform this operation", "unauthorized")
    access = books.access_tokens.get(value.strip())
    if access is None or access.grant.dc != dc.key or access.expires_at <= books.clock.now():
        raise _Refusal(401, 57, "You are not authorized to perform this operation", "unauthorized")
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
                "plan_name": "Standard",
            }
            for i, org in enumerate(user_orgs)
        ]
    }


def _list(books: BooksState, _: AccessToken, org: Organization, request: Request) -> dict[str, Any]:
    q = request.query_params
    try:
        page = int(q.get("page", "1"))
        per_page = int(q.get("per_page", "200"))
    except ValueError:
        raise _Refusal(400, 2, "Invalid value passed for page or per_page", "bad_request") from None
    if page < 1 or not 1 <= per_page <= 200:
        raise _Refusal(400, 2, "Invalid value passed for page or per_page", "bad_request")
    sort_column = q.get("sort_column", "created_time")
    sort_order = q.get("sort_order", "D")
    if sort_column not in zb.SORT_COLUMNS or sort_order not in ("A", "D"):
        raise _Refusal(400, 2, "Invalid value passed for sort_column or sort_order", "bad_request")
    filters = {
        k: v
        for k, v in q.items()
        if k in ("status", "customer_id", "invoice_number", "date_start", "date_end")
    }
    chosen = [inv for inv in org.invoices.values() if zb.matches(zb.header(inv), filters)]
    chosen.sort(key=lambda inv: zb.sort_key(sort_column, org, inv), reverse=sort_order == "D")
    start = (page - 1) * per_page
    window = chosen[start : start + per_page]
    return {
        "invoices": [zb.list_item(zb.render(org, inv)) for inv in window],
        "page_context": {
            "page": page,
            "per_page": per_page,
            "has_more_page": start + per_page < len(chosen),
            "report_name": "Invoices",
            "applied_filter": filters.get("status", "Status.All"),
            "sort_column": sort_column,
            "sort_order": sort_order,
        },
    }


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
        stored = org.invoices.get(invoice_id)
        if stored is None:
            raise _Refusal(404, 1002, "Invoice does not exist.", "not_found")
        return {"invoice": zb.render(org, stored)}

    return await _serve(request, "GET /books/v3/invoices/{id}", _READ_INVOICES, detail)
