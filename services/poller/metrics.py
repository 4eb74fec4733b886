"""The poller's metrics. No per-integration or per-invoice labels (unbounded series)."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import Counter, Gauge, Histogram

from runtime.metrics import (
    INTEGRATION_INVOICES,
    ZOHO_ERRORS,
    declare_zoho_errors,
    zoho_error_code,
)

# The poller owns the "received" stage (with ingest) and Zoho's error counts; the
# write-back stages belong to services/writeback.
INTEGRATION_INVOICES.declare("received")
declare_zoho_errors()

POLLS = Counter(
    "fiscobridge_poller_polls_total", "Polls of an integration, by outcome", ["outcome"]
)
POLL_SECONDS = Histogram(
    "fiscobridge_poller_poll_seconds",
    "Duration of one poll (list, details, publish, watermark)",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200),
)
INVOICES_FOUND = Counter(
    "fiscobridge_poller_invoices_found_total", "Changed invoices published to invoices.received"
)
REFETCHED = Counter(
    "fiscobridge_poller_refetched_total",
    "Documents read again by id on request (refused before signing; runtime.store.refetch)",
)
INVOICES_BEFORE_START = Counter(
    "fiscobridge_poller_invoices_before_start_total",
    "Changed invoices not published because they were created before their "
    "integration's start (never fiscalized by FiscoBridge)",
)
INVOICES_REJECTED = Counter(
    "fiscobridge_poller_invoices_rejected_total",
    "Changed invoices that cannot become a canonical invoice (logged with the reason)",
)
API_CALLS = Counter(
    "fiscobridge_poller_api_calls_total", "Zoho Books API answers, by outcome", ["outcome"]
)
TOKEN_REFRESHES = Counter(
    "fiscobridge_poller_token_refreshes_total", "OAuth access tokens refreshed"
)
RATE_LIMIT_WAITS = Counter(
    "fiscobridge_poller_rate_limit_waits_total",
    "Times a Zoho call waited for the rate limiter (window full or backing off)",
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "fiscobridge_poller_rate_limit_wait_seconds_total", "Time Zoho calls spent waiting for it"
)
LEASES_HELD = Gauge("fiscobridge_poller_leases_held", "Integrations this poller holds a lease on")
POLLABLE = Gauge(
    "fiscobridge_poller_integrations", "Active integrations with a Zoho connection (last tick)"
)


async def rate_limit_sleep(seconds: float) -> None:
    RATE_LIMIT_WAITS.inc()
    RATE_LIMIT_WAIT_SECONDS.inc(max(seconds, 0.0))
    await asyncio.sleep(seconds)


def _api_outcome(status: int) -> str:
    if status < 300:
        return "ok"
    if status == 429:
        return "throttled"
    if status == 401:
        return "unauthorized"
    if status == 404:
        return "not_found"
    return "server_error" if status >= 500 else "refused"


async def count_api_answer(response: httpx.Response) -> None:
    """httpx response hook: every Books API answer, whoever made the call."""
    if "/books/v3/" in response.request.url.path:
        API_CALLS.labels(_api_outcome(response.status_code)).inc()
        if response.status_code >= 300:
            ZOHO_ERRORS.labels(zoho_error_code(response.status_code)).inc()


def instrumented_http(timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout), event_hooks={"response": [count_api_answer]}
    )
