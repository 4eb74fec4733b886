"""Incremental sync against the sandbox: pages, edits, rate limits, the daily quota, cost."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.errors import DailyLimitReached, RateLimited
from connectors.zoho.ratelimit import RateLimiter
from connectors.zoho.sync import SyncResult, changed_invoices
from tests.fixtures.zoho import Connection, ZohoSandboxHandle, invoice_spec

FAST = {"per_minute": 100_000, "daily": 1_000_000}


def stamp(instant: datetime) -> str:
    return instant.isoformat()


async def seed(
    zoho: ZohoSandboxHandle, connection: Connection, times: list[datetime]
) -> list[dict[str, Any]]:
    specs = [
        invoice_spec(
            customer_name=f"Customer {i}",
            created_time=stamp(t),
            last_modified_time=stamp(t),
        )
        for i, t in enumerate(times)
    ]
    return await zoho.create_invoices(connection.organization_id, specs)


def keys(result: SyncResult) -> list[tuple[str, datetime]]:
    return [(invoice.source_id, invoice.last_modified_at) for invoice in result.invoices]


async def test_incremental_sync_finds_every_change_exactly_once(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect(limits=FAST)
    books = connection.client(zoho.http, RateLimiter(per_minute=100_000))
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    created = await seed(zoho, connection, [base + timedelta(minutes=i) for i in range(450)])
    ids = [c["invoice_id"] for c in created]

    first = await changed_invoices(books, None)
    assert first.complete
    assert sorted(i.source_id for i in first.invoices) == sorted(ids)
    # three pages of <= 200 invoices, one of credit notes, one detail each
    assert first.api_calls == 3 + 1 + 450
    assert first.new_watermark == base + timedelta(minutes=449)
    first_totals = {i.source_id: i.total for i in first.invoices}

    # Edits reach every page (oldest, middle, newest, inside the overlap) plus new ones.
    edited = [ids[0], ids[200], ids[447], ids[449]]
    for invoice_id in edited:
        await zoho.edit_invoice(connection.organization_id, invoice_id, status="paid")
    changed_line = await zoho.edit_invoice(
        connection.organization_id,
        ids[100],
        line_items=[{"name": "Changed", "rate": "7.00", "quantity": "2", "tax_percentage": "25"}],
    )
    new = [await zoho.create_invoice(connection.organization_id) for _ in range(2)]
    expected = {*edited, ids[100], *(n["invoice_id"] for n in new)}

    second = await changed_invoices(books, first.new_watermark, seen=first.seen)
    assert second.complete
    assert sorted(i.source_id for i in second.invoices) == sorted(expected)
    # one page each of invoices and credit notes, one detail each, and the payments of
    # the four invoices now paid
    assert second.api_calls == 2 + len(expected) + len(edited)
    by_id = {i.source_id: i for i in second.invoices}
    assert all(by_id[i].status.value == "paid" for i in edited)
    assert str(by_id[ids[100]].total) == "17.50" != str(first_totals[ids[100]])
    assert (
        by_id[ids[100]].version
        == datetime.fromisoformat(changed_line["last_modified_time"]).isoformat()
    )

    third = await changed_invoices(books, second.new_watermark, seen=second.seen)
    assert third.invoices == [] and third.api_calls == 2
    assert third.new_watermark == second.new_watermark

    everything = keys(first) + keys(second) + keys(third)
    assert len(everything) == len(set(everything))


async def test_without_seen_the_overlap_is_fetched_again(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect(limits=FAST)
    books = connection.client(zoho_sandbox.http, RateLimiter(per_minute=100_000))
    now = datetime.now(UTC).replace(microsecond=0)
    await seed(zoho_sandbox, connection, [now - timedelta(minutes=m) for m in (30, 3, 2)])
    first = await changed_invoices(books, None)

    again = await changed_invoices(books, first.new_watermark)
    assert len(again.invoices) == 2  # the two inside the 5-minute overlap
    assert len((await changed_invoices(books, first.new_watermark, seen=first.seen)).invoices) == 0


async def test_per_minute_limit_backs_off_and_loses_no_invoice(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    zoho = zoho_sandbox
    # The sandbox allows 8 calls a (1-second) "minute"; the client believes 10.
    connection = await zoho.connect(limits={"per_minute": 8, "window_seconds": 1.0})
    limiter = RateLimiter(per_minute=10, window=1.0)
    books = connection.client(zoho.http, limiter)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    created = await seed(zoho, connection, [base + timedelta(seconds=i) for i in range(40)])

    started = time.monotonic()
    result = await changed_invoices(books, None)
    elapsed = time.monotonic() - started

    assert result.complete, result.interrupted
    assert sorted(i.source_id for i in result.invoices) == sorted(c["invoice_id"] for c in created)
    counters = (await zoho.counters())[f"org:{connection.organization_id}"]
    assert counters["ok"] == 42  # two lists, 40 details
    assert counters.get("throttled_44", 0) == limiter.throttled_count.get(44, 0) > 0
    # Backing off a whole window after each refusal keeps refusals rare: a client that
    # retried at once would collect several per accepted call.
    assert counters["throttled_44"] < counters["ok"] / 2
    assert elapsed >= 42 / 8 - 1


async def test_daily_limit_raises_and_stops_calling(zoho_sandbox: ZohoSandboxHandle) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect(invoices=1)
    books = connection.client(zoho.http)
    await books.list_invoices()
    await books.list_invoices()
    await zoho.set_limits(connection.organization_id, daily=2)

    with pytest.raises(DailyLimitReached) as caught:
        await books.list_invoices()
    assert caught.value.code == 45
    assert caught.value.retry_at > datetime.now(UTC)
    assert caught.value.retry_at <= datetime.now(UTC) + timedelta(days=1)
    before = await zoho.counters()
    with pytest.raises(DailyLimitReached):
        await books.invoice("5000000000000000001")
    assert await zoho.counters() == before  # refused locally, Zoho not bothered


async def test_daily_limit_mid_sync_keeps_progress_and_resumes_next_day(
    zoho_sandbox_factory: Callable[..., ZohoSandboxHandle],
) -> None:
    zoho = zoho_sandbox_factory()
    connection = await zoho.connect(limits={"daily": 8})
    offset = [timedelta()]
    limiter = RateLimiter(wall=lambda: datetime.now(UTC) + offset[0])
    books = ZohoBooksClient(
        zoho.http,
        connection.tokens.api_domain,
        connection.organization_id,
        connection.provider,
        limiter,
    )
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=20)
    times = [base + timedelta(hours=i) for i in range(10)]
    await seed(zoho, connection, times)

    today = await changed_invoices(books, None)
    assert isinstance(today.interrupted, DailyLimitReached)
    assert len(today.invoices) == 6  # two list calls + six details = the day's eight
    fetched = {i.last_modified_at for i in today.invoices}
    # Details run five at a time and the quota goes to whichever arrives first: the
    # watermark covers only the unbroken run of fetched changes, oldest first.
    unbroken = next(n for n, t in enumerate(times) if t not in fetched)
    assert unbroken >= 1
    assert today.new_watermark == times[unbroken - 1]

    # The quota resets at the organization's midnight, as the sandbox's headers said.
    wait = today.interrupted.retry_at - (datetime.now(UTC) + offset[0]) + timedelta(seconds=1)
    await zoho.advance_clock(wait.total_seconds())
    offset[0] += wait

    tomorrow = await changed_invoices(books, today.new_watermark, seen=today.seen)
    assert tomorrow.complete, tomorrow.interrupted
    assert sorted(i.last_modified_at for i in tomorrow.invoices) == sorted(set(times) - fetched)
    everything = keys(today) + keys(tomorrow)
    assert len(everything) == len(set(everything)) == 10


async def test_concurrency_refusals_are_retried(zoho_sandbox: ZohoSandboxHandle) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect(limits={"max_in_flight": 2, "latency_seconds": 0.2})
    limiter = RateLimiter(max_in_flight=5, concurrency_backoff=0.2)
    books = connection.client(zoho.http, limiter)
    await seed(zoho, connection, [datetime.now(UTC) - timedelta(minutes=i) for i in range(8)])

    result = await changed_invoices(books, None)
    assert result.complete and len(result.invoices) == 8
    assert limiter.throttled_count.get(1070, 0) > 0


async def test_too_many_refusals_end_the_sync_without_losing_the_watermark(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    connection = await zoho_sandbox.connect(limits={"per_minute": 1, "window_seconds": 30})
    books = ZohoBooksClient(
        zoho_sandbox.http,
        connection.tokens.api_domain,
        connection.organization_id,
        connection.provider,
        RateLimiter(per_minute=100, throttle_backoff=0.05),
        throttle_retries=2,
    )
    await seed(zoho_sandbox, connection, [datetime.now(UTC) - timedelta(minutes=1)])
    watermark = datetime.now(UTC) - timedelta(hours=1)

    result = await changed_invoices(books, watermark)
    assert isinstance(result.interrupted, RateLimited) and result.interrupted.code == 44
    assert result.invoices == []
    assert result.new_watermark == watermark


async def test_cost_of_syncing_1000_changed_invoices(zoho_sandbox: ZohoSandboxHandle) -> None:
    """API calls and time for 1,000 changed invoices under 100 calls a minute.

    The minute is scaled down 100x (0.6 s) in both the sandbox and the client; the
    call count does not depend on the scale, the time is reported for both.
    """
    zoho = zoho_sandbox
    scale = 100
    window = 60.0 / scale
    connection = await zoho.connect(
        limits={"per_minute": 100, "window_seconds": window, "daily": 100_000}
    )
    # The 2 % default slack is 1.2 s of a real minute but only 12 ms of a scaled one,
    # less than the sandbox's own processing jitter: keep the slack near-absolute.
    limiter = RateLimiter(per_minute=100, window=window, margin=0.1)
    books = connection.client(zoho.http, limiter)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    older = [base - timedelta(days=30, minutes=i) for i in range(50)]
    changed = [base + timedelta(seconds=i) for i in range(1000)]
    await seed(zoho, connection, older + changed)
    await zoho.reset_usage(connection.organization_id)
    watermark = base - timedelta(hours=1)

    started = time.monotonic()
    result = await changed_invoices(books, watermark)
    elapsed = time.monotonic() - started

    assert result.complete, result.interrupted
    assert len(result.invoices) == 1000
    # Five full pages of 200, a sixth to see an invoice older than the watermark,
    # then one detail call per changed invoice.
    assert result.api_calls == 6 + 1000 + limiter.throttled_count.get(44, 0)
    windows_waited = (result.api_calls - 1) // 100
    assert elapsed >= windows_waited * window  # the limit was honoured
    print(
        f"\n1000 changed invoices: {result.api_calls} API calls "
        f"({limiter.throttled_count.get(44, 0)} refused with 44); "
        f"{elapsed:.2f} s with a {window} s window -> {windows_waited} full windows waited; "
        f"under Zoho's 100/min that is {windows_waited} min + the last calls' latency "
        f"(measured x{scale}: {elapsed * scale / 60:.1f} min)"
    )
