"""The Books API as the sandbox serves it, and the client's handling of every answer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiohttp import web

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.errors import SortNotHonoured, ZohoApiError, ZohoUnavailable
from connectors.zoho.mapping import map_invoice
from connectors.zoho.ratelimit import RateLimiter
from tests.fixtures.zoho import Connection, ZohoSandboxHandle

COLON_LESS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}$")


async def raw_get(
    zoho: ZohoSandboxHandle, connection: Connection, path: str, **params: str
) -> httpx.Response:
    token = await connection.provider.access_token()
    return await zoho.http.get(
        f"{connection.tokens.api_domain}/books/v3{path}",
        params=params,
        headers={"Authorization": f"Zoho-oauthtoken {token}"},
    )


async def test_every_answer_carries_code_and_message(zoho_sandbox: ZohoSandboxHandle) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect(invoices=1)
    narrow = await zoho.connect(scopes=("ZohoBooks.invoices.READ", "ZohoBooks.settings.READ"))
    org = connection.organization_id
    api = connection.tokens.api_domain
    answers = [
        await raw_get(zoho, connection, "/invoices", organization_id=org),
        await raw_get(zoho, connection, "/invoices"),
        await raw_get(zoho, connection, "/invoices/1", organization_id=org),
        await raw_get(zoho, connection, "/invoices", organization_id=org, per_page="201"),
        await zoho.http.get(f"{api}/books/v3/invoices", params={"organization_id": org}),
        await zoho.http.get(
            f"{api}/books/v3/invoices",
            params={"organization_id": org},
            headers={"Authorization": "Bearer something"},
        ),
        await zoho.http.get(
            f"{api}/books/v3/invoices",
            params={"organization_id": org},
            headers={"Authorization": "Zoho-oauthtoken 1000.not.a-token"},
        ),
        await raw_get(zoho, narrow, "/creditnotes", organization_id=narrow.organization_id),
    ]
    statuses = [(a.status_code, a.json()["code"]) for a in answers]
    # 14: no token or an unknown one; 57: a token without the endpoint's scope.
    assert statuses == [
        (200, 0), (400, 6041), (404, 1002), (400, 2), (401, 14), (401, 14), (401, 14), (401, 57)
    ]
    assert all(isinstance(a.json()["message"], str) and a.json()["message"] for a in answers)


async def test_detail_is_zoho_shaped(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect()
    created = await zoho_sandbox.create_invoice(connection.organization_id)
    books = connection.client(zoho_sandbox.http)
    detail = await books.invoice(created["invoice_id"])

    assert isinstance(detail["invoice_id"], str) and len(detail["invoice_id"]) == 19
    assert int(detail["invoice_id"]) > 2**53
    assert COLON_LESS.match(detail["created_time"]) and COLON_LESS.match(
        detail["last_modified_time"]
    )
    assert detail["last_modified_time"][-5:] in ("+0100", "+0200")  # Europe/Zagreb
    # Recorded shapes: ~185 keys, "" for empty values, names differ between levels, the
    # invoice-level summary has no tax_id, base-currency copies.
    assert len(detail) >= 180
    assert detail["reference_number"] == "" and detail["shipping_charge_tax_id"] == ""
    first = detail["line_items"][0]
    assert first["tax_name"] == "PDV25" and isinstance(first["tax_id"], str)
    assert first["line_item_taxes"] == [
        {"tax_id": first["tax_id"], "tax_name": "PDV25 (25%)", "tax_amount": Decimal("0.83")}
    ]
    assert [t["tax_name"] for t in detail["taxes"]] == ["PDV25 (25%)", "PDV13 (13%)"]
    assert all(set(t) == {"tax_name", "tax_amount"} for t in detail["taxes"])
    assert detail["bcy_total"] == detail["total"] and detail["exchange_rate"] == 1
    invoice = map_invoice(detail)
    assert str(invoice.total) == str(detail["total"]) == "12.38"
    assert {t.tax_id for t in invoice.taxes} == {
        line["tax_id"] for line in detail["line_items"]
    }


async def test_list_pages_sorts_and_filters(zoho_sandbox: ZohoSandboxHandle) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect()
    org = connection.organization_id
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    specs: list[dict[str, Any]] = [
        {
            "customer_name": f"C{i}",
            "status": "paid" if i % 3 == 0 else "sent",
            "line_items": [{"name": "x", "rate": "1", "quantity": "1"}],
            "created_time": (base + timedelta(minutes=i)).isoformat(),
            "last_modified_time": (base + timedelta(minutes=30 - i)).isoformat(),
        }
        for i in range(7)
    ]
    created = await zoho.create_invoices(org, specs)
    ids = [c["invoice_id"] for c in created]
    books = connection.client(zoho.http)

    first, more = await books.list_invoices(page=1, per_page=3)
    second, _ = await books.list_invoices(page=2, per_page=3)
    third, last_more = await books.list_invoices(page=3, per_page=3)
    newest_created_first = [i["invoice_id"] for i in first + second + third]
    assert newest_created_first == ids[::-1]  # Zoho's default: created_time, descending
    assert (more, last_more) == (True, False)
    assert all("line_items" not in item and "taxes" not in item for item in first)
    assert all(item["documents"] == "" for item in first)  # a summary says "" here

    ascending, _ = await books.list_invoices(sort_column="created_time", sort_order="A")
    assert [i["invoice_id"] for i in ascending] == ids
    by_name, _ = await books.list_invoices(sort_column="customer_name", sort_order="D")
    assert [i["customer_name"] for i in by_name] == [f"C{i}" for i in range(6, -1, -1)]
    paid, _ = await books.list_invoices(status="paid")
    assert sorted(i["invoice_id"] for i in paid) == sorted(ids[i] for i in (0, 3, 6))

    # The documented incremental filter: modified at or after the time given.
    since = (base + timedelta(minutes=28)).strftime("%Y-%m-%dT%H:%M:%S%z")
    recent, _ = await books.list_invoices(last_modified_time=since)
    assert sorted(i["invoice_id"] for i in recent) == sorted(ids[:3])

    # last_modified_time is no documented sort column: Zoho sorts by created_time and
    # page_context says so; the client refuses to read such pages as if sorted.
    context = (
        await raw_get(
            zoho, connection, "/invoices", organization_id=org, per_page="3",
            sort_column="last_modified_time",
        )
    ).json()
    assert context["page_context"] == {
        "page": 1,
        "per_page": 3,
        "has_more_page": True,
        "report_name": "Invoices",
        "applied_filter": "Status.All",
        "sort_column": "created_time",
        "sort_order": "D",
        "search_criteria": [],
    }
    with pytest.raises(SortNotHonoured, match="created_time"):
        await books.list_invoices(sort_column="last_modified_time", sort_order="D")


async def test_client_refuses_a_page_size_zoho_would_refuse(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    connection = await zoho_sandbox.connect()
    with pytest.raises(ValueError):
        await connection.client(zoho_sandbox.http).list_invoices(per_page=201)


async def test_missing_invoice_is_a_404_api_error(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect()
    with pytest.raises(ZohoApiError) as caught:
        await connection.client(zoho_sandbox.http).invoice("5999999999999999999")
    assert (caught.value.http_status, caught.value.code) == (404, 1002)
    assert not caught.value.transient


async def test_plus_in_a_time_filter_travels_as_percent_2b(zoho_sandbox: ZohoSandboxHandle) -> None:
    sent: list[bytes] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request.url.query)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:
        connection = await zoho_sandbox.connect()
        await connection.client(http).list_invoices(last_modified_time="2025-04-09T11:25:54+0200")
    assert b"last_modified_time=2025-04-09T11%3A25%3A54%2B0200" in sent[-1]


async def test_headers_tell_the_daily_quota(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect(limits={"daily": 50})
    answer = await raw_get(
        zoho_sandbox, connection, "/invoices", organization_id=connection.organization_id
    )
    assert answer.headers["X-Rate-Limit-Limit"] == "50"
    assert answer.headers["X-Rate-Limit-Remaining"] == "49"
    assert 0 < int(answer.headers["X-Rate-Limit-Reset"]) <= 86_400


async def test_unreachable_api_is_transient(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect()
    from connectors.zoho.client import ZohoBooksClient

    books = ZohoBooksClient(
        zoho_sandbox.http, "http://127.0.0.1:9", "1", connection.provider, RateLimiter()
    )
    with pytest.raises(ZohoUnavailable) as caught:
        await books.list_invoices()
    assert caught.value.transient


async def test_a_non_zero_code_under_http_200_is_an_api_error(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    # Zoho sometimes refuses with HTTP 200 and only the body's `code` says so; the sandbox
    # always pairs a refusal with an error status, so a tiny real server answers instead.
    seen: list[web.Request] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"code": 1002, "message": "Invoice does not exist."})

    app = web.Application()
    app.router.add_get("/books/v3/invoices/{invoice_id}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        connection = await zoho_sandbox.connect()
        books = ZohoBooksClient(
            zoho_sandbox.http, f"http://127.0.0.1:{port}", connection.organization_id,
            connection.provider, RateLimiter(),
        )
        with pytest.raises(ZohoApiError) as caught:
            await books.invoice("5000000000000000001")
    finally:
        await runner.cleanup()
    assert type(caught.value) is ZohoApiError
    assert (caught.value.code, caught.value.http_status) == (1002, 200)
    assert caught.value.message == "Invoice does not exist."
    assert str(caught.value) == "Zoho Books error 1002: Invoice does not exist. (HTTP 200)"
    assert not caught.value.transient
    assert len(seen) == 1  # refused, not retried
    assert seen[0].match_info["invoice_id"] == "5000000000000000001"
    assert seen[0].query["organization_id"] == connection.organization_id
    assert seen[0].headers["Authorization"].startswith("Zoho-oauthtoken ")


async def test_admin_refuses_an_invoice_zoho_would_refuse(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect()
    with pytest.raises(AssertionError, match="line_items"):
        await zoho_sandbox.create_invoice(connection.organization_id, line_items=[])


async def test_admin_refuses_a_time_without_offset(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect()
    with pytest.raises(AssertionError, match="offset"):
        await zoho_sandbox.create_invoice(
            connection.organization_id, last_modified_time="2025-04-09T11:25:54"
        )
