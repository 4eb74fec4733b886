"""Remove: the grant is revoked at Zoho, the tokens deleted, the fiscal journal kept; and
no secret of the whole journey reaches a log."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from connectors.zoho.errors import TokenInvalid
from runtime.logging import JsonFormatter
from runtime.store import IntegrationStatus
from schemas.events import IntegrationEventKind, InvoiceState
from tests.fixtures.certs import Pfx
from tests.fixtures.store import invoice_status_at
from tests.fixtures.zoho import ZohoSandboxHandle
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    SQLITE_ONLY,
    MakePortal,
    PortalUnderTest,
    env_fixture,
    integration_events,
    make_portal_fixture,
    producer_fixture,
    zoho_user_with_org,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


async def _fiscalize(env: PortalUnderTest, uid: str, n: int) -> list[str]:
    """Journal rows as the projector writes them from `invoices.status`."""
    at = datetime.now(UTC)
    events = [
        invoice_status_at(InvoiceState.FISCALIZED, at, uid=uid, source_id=f"46000000000{i:05d}",
                          receipt=f"aaaa{i:04d}-0000-4000-8000-{uid[:12]}")
        for i in range(n)
    ]
    await env.store.apply(events)
    return [e.receipt_id or "" for e in events]


async def test_remove_revokes_the_grant_deletes_tokens_and_keeps_the_journal(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, kafka_settings: object
) -> None:
    user, _ = await zoho_user_with_org(env.zoho, "eu")
    browser = env.browser()
    await browser.signup("remove@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    receipts = await _fiscalize(env, uid, 3)
    tokens = await env.store.tokens.get(uid)
    assert tokens is not None
    eu_accounts = env.zoho.urls["eu"]["accounts"]
    revoked_before = (await env.zoho.counters())["oauth:eu"].get("revoked", 0)

    page = await browser.get(f"/integrations/{uid}")
    assert all(receipt in page.text for receipt in receipts)
    assert "3 / 50" in page.text
    confirm = await browser.get(f"/integrations/{uid}/remove")
    assert confirm.status_code == 200 and "stay on record" in confirm.text
    # Until confirmed, nothing happens.
    assert (await env.store.integrations.get(uid)).status is IntegrationStatus.ACTIVE  # type: ignore[union-attr]

    removed = await browser.submit(f"/integrations/{uid}/remove", "remove",
                                   f"/integrations/{uid}/remove")
    assert removed.status_code == 303 and removed.headers["location"] == "/integrations"

    assert (await env.zoho.counters())["oauth:eu"]["revoked"] == revoked_before + 1
    with pytest.raises(TokenInvalid):
        await env.zoho.oauth(env.client).refresh(tokens.refresh_token, eu_accounts)
    assert await env.store.tokens.get(uid) is None
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.REMOVED

    listing = await browser.get("/integrations")
    assert "Removed" in listing.text and "was removed" in listing.text
    page = await browser.get(f"/integrations/{uid}")
    assert page.status_code == 200
    assert all(receipt in page.text for receipt in receipts)  # the legal archive stays
    assert "Webhook Setup" not in page.text and 'id="connect"' not in page.text
    assert len(await env.store.journal.entries(uid)) == 3
    # Removal is final: no reconnecting, no second removal.
    again = await browser.submit("/integrations", "logout", f"/integrations/{uid}/connect")
    assert again.status_code == 409 and "removal is final" in again.text
    kinds = [e.kind for e in await integration_events(kafka_settings, uid)]  # type: ignore[arg-type]
    assert kinds[-1] is IntegrationEventKind.REMOVED


async def test_remove_with_zoho_unreachable_still_removes(
    make_portal: MakePortal, zoho_sandbox_factory: Callable[..., ZohoSandboxHandle],
    demo_pfx: Pfx, demo_oib: str, caplog: pytest.LogCaptureFixture,
) -> None:
    zoho = zoho_sandbox_factory()
    env = await make_portal(zoho=zoho)
    user, _ = await zoho_user_with_org(zoho)
    browser = env.browser()
    await browser.signup("unreachable@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    zoho.sandbox.stop()

    with caplog.at_level(logging.WARNING, logger="fiscobridge"):
        removed = await browser.submit(f"/integrations/{uid}/remove", "remove",
                                       f"/integrations/{uid}/remove")
    assert removed.status_code == 303
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.REMOVED
    assert await env.store.tokens.get(uid) is None
    assert any("could not revoke" in r.getMessage() for r in caplog.records)
    listing = await browser.get("/integrations")
    assert "Connected Apps in your Zoho account" in html.unescape(listing.text)


async def test_no_secret_of_the_journey_reaches_the_logs(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # runtime.logging.configure keeps httpx at WARNING in every service: its INFO lines
    # carry full URLs, and Zoho's token endpoint takes its parameters in the query
    # string. httpcore is quieted here too because this test's own clients (the browser
    # and the sandbox driver) share the process and carry cookies and codes around; the
    # portal's outbound calls only receive Zoho's response headers, which hold no secret.
    quieted = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    for name in quieted:
        logging.getLogger(name).setLevel(logging.WARNING)
    secrets: list[str] = [demo_pfx.password, env.client["client_secret"]]
    try:
        with caplog.at_level(logging.DEBUG):
            user, _ = await zoho_user_with_org(env.zoho)
            browser = env.browser()
            await browser.signup("quiet@firma.example", password="Sup3r-secret-login")
            secrets.append("Sup3r-secret-login")
            refused = await browser.create(demo_pfx, demo_oib, password="Wrong-Pfx-Password-9")
            assert refused.status_code == 400
            secrets.append("Wrong-Pfx-Password-9")
            uid, state = await browser.start_connect(demo_pfx, demo_oib)
            redirect = await env.zoho.authorize(env.client, user, state=state)
            secrets.append(redirect["code"])
            chooser = await browser.callback(redirect)
            path = chooser.headers["location"]
            page = await browser.get(path)
            org_id = page.text.split('name="organization_id" value="')[1].split('"')[0]
            await browser.submit(path, "organization", path, {"organization_id": org_id})
            tokens = await env.store.tokens.get(uid)
            assert tokens is not None and tokens.access_token is not None
            secrets += [tokens.refresh_token, tokens.access_token,
                        await env.store.integrations.webhook_secret(uid),
                        browser.http.cookies["fb_session"]]
            await browser.get(f"/integrations/{uid}")
            await browser.submit(f"/integrations/{uid}/remove", "remove",
                                 f"/integrations/{uid}/remove")
    finally:
        for name, level in quieted.items():
            logging.getLogger(name).setLevel(level)

    ours = [r for r in caplog.records if not r.name.startswith(("sandbox", "uvicorn"))]
    assert any(r.name.startswith("fiscobridge.portal") for r in ours)  # it did log
    formatter = JsonFormatter("portal")
    logged = "\n".join(formatter.format(r) for r in ours)
    json.loads(formatter.format(ours[0]))
    for secret in secrets:
        assert secret and secret not in logged
