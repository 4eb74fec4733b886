"""The fault suite's Zoho side: each integration connected to its own organization of the
stack's Zoho Books sandbox, with the fiscal fields mapped for write-back; the invoices
created in those organizations (in bulk, through the sandbox's admin API); and, after the
run, what the sandbox shows written back onto each fiscalized invoice.

The webhook bodies are the sandbox's own: the invoice as the sandbox renders it, in
`{"invoice": {...}}`, serialized as the sandbox serializes a delivery (exact decimals).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.oauth import AccessTokenProvider
from connectors.zoho.ratelimit import RateLimiter
from fiscobridge.provision import DemoIntegration, demo_integration
from fiscobridge.stack import LocalStack
from runtime.settings import KafkaSettings
from runtime.store.store import Store
from sandbox.load import Webhook
from sandbox.zoho import books as zb
from sandbox.zoho.webhooks import sign
from schemas.events import InvoiceStatus
from tests.e2e.zoho_helpers import ZohoGrant, store_connection, zoho_grant
from tests.fixtures.zoho import ZohoSandboxHandle, invoice_spec

ZAGREB = ZoneInfo("Europe/Zagreb")
# Far above what the run needs (10,000 invoices: one contact read per ingest start, one
# write-back call per invoice): the sandbox's throttling is not what this suite tests.
LIMITS = {"per_minute": 1_000_000, "daily": 10_000_000, "max_in_flight": 1_000}
CUSTOMER_ID = "460000000044001"  # invoice_spec's customer: a consumer, no tax number
ROLES = (("fiscal_number", "cf_fiskalni_broj"), ("zki", "cf_zki"), ("jir", "cf_jir"),
         ("qr_url", "cf_qr_url"))
WRITE_BACK_CALL = "api:PUT /books/v3/invoice/{id}/customfields"
BULK = 500  # invoices per admin call


@dataclass(frozen=True)
class _RunningSandbox:
    """What ZohoSandboxHandle reads of a sandbox: its origins (here a child process's)."""

    urls: dict[str, dict[str, str]]
    admin_url: str


@dataclass(frozen=True)
class ZohoIntegration:
    made: DemoIntegration
    grant: ZohoGrant


def sandbox_handle(stack: LocalStack, http: httpx.AsyncClient) -> ZohoSandboxHandle:
    running = _RunningSandbox(stack.zoho_urls, stack.zoho_admin_url)
    return ZohoSandboxHandle(cast(Any, running), http)


async def connected_integration(
    zoho: ZohoSandboxHandle, client: dict[str, Any], store: Store, kafka: KafkaSettings,
    ca_dir: Path,
) -> ZohoIntegration:
    """An active integration connected to a new organization (OAuth grant stored), its
    fiscal number, ZKI, JIR and QR URL mapped onto the organization's invoice fields."""
    grant = await zoho_grant(zoho, client, limits=LIMITS)
    await zoho.put_contact(grant.organization_id, CUSTOMER_ID, contact_name="Kava d.o.o.")
    provider = AccessTokenProvider(zoho.oauth(client), grant.tokens, grant.accounts_server)
    books = ZohoBooksClient(zoho.http, grant.tokens.api_domain, grant.organization_id,
                            provider, RateLimiter(per_minute=100_000))
    fields = {f["api_name"]: f["customfield_id"] for f in await books.invoice_custom_fields()}

    async def connect(uid: str) -> None:
        await store_connection(store, uid, grant)
        await store.integrations.set_writeback_fields(
            uid, {role: fields[api] for role, api in ROLES})

    made = await demo_integration(store, kafka, ca_dir, tier="scale",
                                  account="chaos@fiscobridge.example", connect=connect)
    return ZohoIntegration(made, grant)


async def _bounded(calls: Iterable[Callable[[], Awaitable[Any]]], at_once: int = 16) -> list[Any]:
    gate = asyncio.Semaphore(at_once)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def webhooks_of_new_invoices(
    zoho: ZohoSandboxHandle, integrations: list[ZohoIntegration], invoices: int,
) -> list[Webhook]:
    """`invoices` invoices created in the integrations' organizations (round robin), and
    for each the webhook the sandbox would deliver for it, signed with the integration's
    secret; in the order of `n % len(integrations)`."""
    per: list[list[str]] = []
    for i, z in enumerate(integrations):
        count = len(range(i, invoices, len(integrations)))
        ids: list[str] = []
        for start in range(0, count, BULK):
            specs = [invoice_spec(customer_id=CUSTOMER_ID)
                     for _ in range(min(BULK, count - start))]
            ids += [c["invoice_id"] for c in
                    await zoho.create_invoices(z.grant.organization_id, specs)]
        per.append(ids)

    async def rendered(z: ZohoIntegration, invoice_id: str) -> Webhook:
        response = await zoho.http.get(
            f"{zoho.admin}/orgs/{z.grant.organization_id}/invoices/{invoice_id}")
        response.raise_for_status()
        document = json.loads(response.content, parse_float=Decimal)["invoice"]
        body = zb.dumps({"invoice": document})
        return Webhook(z.made.uid, invoice_id, body, sign(z.made.webhook_secret, body, "hex"))

    k = len(integrations)
    order = [(integrations[n % k], per[n % k][n // k]) for n in range(invoices)]
    made: list[Webhook] = await _bounded(
        [lambda z=z, i=i: rendered(z, i) for z, i in order])  # type: ignore[misc]
    return made


def expected_fields(status: InvoiceStatus) -> dict[str, str]:
    """What a fiscalized invoice's mapped fields must show once written back."""
    jir = status.receipt_id
    assert jir and status.fiscal_number and status.protection_code
    assert status.invoice.issued_at is not None and status.invoice.total is not None
    datv = status.invoice.issued_at.astimezone(ZAGREB).strftime("%Y%m%d_%H%M")
    cents = int(status.invoice.total * 100)
    return {"cf_fiskalni_broj": status.fiscal_number, "cf_zki": status.protection_code,
            "cf_jir": jir,
            "cf_qr_url": f"https://porezna.gov.hr/rn?jir={jir}&datv={datv}&izn={cents}"}


async def wait_written_back(
    zoho: ZohoSandboxHandle, organization_of: dict[str, str],
    fiscalized: list[InvoiceStatus], timeout: float,
) -> tuple[int, list[str]]:
    """How many of `fiscalized` show their fiscal fields in the sandbox, waiting up to
    `timeout` for the rest (write-backs may still be on their way or throttled); and a
    few of those that do not, with what they show."""
    pending = {(s.integration_uid, s.invoice.source_id): s for s in fiscalized}
    shown: dict[tuple[str, str], Any] = {}
    deadline = time.monotonic() + timeout

    async def check(key: tuple[str, str]) -> tuple[tuple[str, str], bool]:
        status = pending[key]
        response = await zoho.http.get(
            f"{zoho.admin}/orgs/{organization_of[key[0]]}/invoices/{key[1]}")
        response.raise_for_status()
        shown[key] = response.json()["written_back"]
        return key, shown[key] == expected_fields(status)

    while pending:
        for key, done in await _bounded([lambda k=k: check(k) for k in pending]):  # type: ignore[misc]
            if done:
                del pending[key]
        if not pending or time.monotonic() >= deadline:
            break
        await asyncio.sleep(1.0)
    missing = [f"{k[1]}: {shown.get(k)}" for k in list(pending)[:5]]
    return len(fiscalized) - len(pending), missing


async def write_back_calls(zoho: ZohoSandboxHandle) -> int:
    """Successful invoice custom-field updates the sandbox counted (all organizations:
    the stack's sandbox serves this run only)."""
    return int((await zoho.counters()).get(WRITE_BACK_CALL, {}).get("ok", 0))
