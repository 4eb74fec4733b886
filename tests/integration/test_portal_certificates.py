"""Certificates and webhook secrets over real HTTP on the real store (and broker for the
events): a certificate from a CA the environment does not trust is refused at upload and
at Replace, naming its issuer; Replace keeps the old one in the history; the webhook
secret is shown in full once, masked after, revealed only with the password; a rotation
keeps the old secret working at the real ingest app until the grace period ends."""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from connectors.zoho.webhook import signature_of
from runtime.ops import QuietServer
from runtime.store import Store
from sandbox.cis.ca import TestCA
from sandbox.load import zoho_invoice
from schemas.events import IntegrationEventKind
from services.ingest.app import create_app as create_ingest
from services.ingest.directory import WebhookDirectory
from services.ingest.service import store_loader
from services.ingest.settings import IngestSettings
from tests.fixtures.certs import Pfx
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    SQLITE_ONLY,
    USER_PASSWORD,
    Browser,
    MakePortal,
    PortalUnderTest,
    env_fixture,
    integration_events,
    make_portal_fixture,
    producer_fixture,
    zoho_user_with_org,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


async def _connected(env: PortalUnderTest, pfx: Pfx, oib: str, email: str
                     ) -> tuple[Browser, str]:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup(email)
    return browser, await browser.connect(pfx, oib, user)


async def test_create_refuses_a_certificate_from_an_untrusted_ca(
    env: PortalUnderTest, foreign_pfx: Pfx, demo_oib: str
) -> None:
    browser = env.browser()
    await browser.signup("foreign@firma.example")
    before = len(await env.store.integrations.find())
    response = await browser.create(foreign_pfx, demo_oib)
    assert response.status_code == 400
    text = html.unescape(response.text)
    assert "issued by 'Foreign Look-alike DEMO CA'" in text
    assert "trusted: FiscoBridge Sandbox DEMO CA" in text
    assert len(await env.store.integrations.find()) == before


async def test_replace_certificate_with_the_same_checks(
    env: PortalUnderTest, demo_pfx: Pfx, foreign_pfx: Pfx, demo_oib: str, test_ca: TestCA,
    kafka_settings: object,
) -> None:
    browser, uid = await _connected(env, demo_pfx, demo_oib, "replace@firma.example")
    old = await env.store.integrations.certificate_info(uid)
    page = f"/integrations/{uid}/certificate"
    assert 'id="certificate-link"' in (await browser.get(f"/integrations/{uid}")).text

    def upload(pfx: Pfx, password: str | None = None) -> dict[str, object]:
        return {"data": {"password": pfx.password if password is None else password},
                "files": {"pfx": ("new.pfx", pfx.data, "application/x-pkcs12")}}

    for pfx, password, says in (
        (foreign_pfx, None, "issued by 'Foreign Look-alike DEMO CA'"),
        (demo_pfx, "wrong", "password"),
        (Pfx(test_ca.issue_pfx("12345678903", "pw-1234567"), "pw-1234567"), None, "OIB"),
    ):
        refused = await browser.submit(page, "replace", page, **upload(pfx, password))  # type: ignore[arg-type]
        assert refused.status_code == 400, refused.text
        assert says in html.unescape(refused.text)
        assert (await env.store.integrations.certificate_info(uid)).id == old.id

    renewed = Pfx(test_ca.issue_pfx(demo_oib, "renewed-pass-1"), "renewed-pass-1")
    done = await browser.submit(page, "replace", page, **upload(renewed))  # type: ignore[arg-type]
    assert done.status_code == 303, done.text
    current = await env.store.integrations.certificate_info(uid)
    assert current.id != old.id
    assert await env.store.integrations.certificate(uid) == (renewed.data, "renewed-pass-1")
    history = await env.store.integrations.certificate_history(uid)
    assert [c.id for c in history] == [old.id, current.id] and history[0].replaced_at
    assert "certificate was replaced" in (await browser.get(f"/integrations/{uid}")).text
    events = await integration_events(kafka_settings, uid)  # type: ignore[arg-type]
    replaced = [e for e in events if e.kind is IntegrationEventKind.CERTIFICATE_REPLACED]
    assert replaced and replaced[-1].details["fingerprint_sha256"] == current.fingerprint_sha256


async def test_the_secret_is_shown_once_then_masked_and_revealed_with_the_password(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    browser, uid = await _connected(env, demo_pfx, demo_oib, "secret@firma.example")
    secret = await env.store.integrations.webhook_secret(uid)
    first = await browser.get(f"/integrations/{uid}")
    assert secret in first.text and 'id="secret-once"' in first.text
    second = await browser.get(f"/integrations/{uid}")
    assert secret not in second.text and secret[-4:] in second.text
    assert '<label for="reveal-password">' in second.text

    wrong = await browser.submit(f"/integrations/{uid}", "reveal",
                                 f"/integrations/{uid}/webhook-secret/reveal",
                                 {"password": "not my password"})
    assert wrong.status_code == 403 and secret not in wrong.text
    assert "not correct" in html.unescape(wrong.text)
    shown = await browser.submit(f"/integrations/{uid}", "reveal",
                                 f"/integrations/{uid}/webhook-secret/reveal",
                                 {"password": USER_PASSWORD})
    assert shown.status_code == 200 and secret in shown.text
    assert shown.headers["cache-control"] == "no-store"
    assert secret not in (await browser.get(f"/integrations/{uid}")).text

    # Another account's password does not reveal it.
    stranger = env.browser()
    await stranger.signup("stranger-secret@firma.example")
    token_page = await stranger.get("/integrations")
    assert token_page.status_code == 200
    attempt = await stranger.http.post(
        f"/integrations/{uid}/webhook-secret/reveal",
        data={"password": USER_PASSWORD,
              "csrf_token": _csrf(token_page.text)})
    assert attempt.status_code == 404 and secret not in attempt.text


def _csrf(page: str) -> str:
    from tests.fixtures.zoho import forms_of

    return forms_of(page)["logout"]["csrf_token"]


class Ingest:
    def __init__(self, url: str, published: list[bytes]) -> None:
        self.url = url
        self.published = published

    async def post(self, uid: str, secret: str, n: int) -> int:
        body = json.dumps(zoho_invoice(n)).encode()
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{self.url}/webhook/zoho/{uid}", content=body,
                headers={"X-Zoho-Webhook-Signature": signature_of(secret, body),
                         "Content-Type": "application/json"})
        return response.status_code


@pytest.fixture
async def ingest(store: Store) -> AsyncIterator[Ingest]:
    """The real ingest app on the store (a 30 s cache, as deployed), publishing to a list."""
    published: list[bytes] = []

    async def publish(key: bytes, value: bytes) -> None:
        published.append(value)

    async def ready() -> dict[str, bool]:
        return {"store": True}

    app = create_ingest(IngestSettings(), WebhookDirectory(store_loader(store), 30, 5),
                        publish, ready)
    server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                        lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Ingest(f"http://127.0.0.1:{port}", published)
    finally:
        server.should_exit = True
        await task


async def test_rotation_keeps_the_old_secret_for_the_grace_period(
    make_portal: MakePortal, ingest: Ingest, demo_pfx: Pfx, demo_oib: str
) -> None:
    grace = 4.0  # seconds (the setting is in hours; 24 by default)
    env = await make_portal(webhook_secret_grace_hours=grace / 3600)
    browser, uid = await _connected(env, demo_pfx, demo_oib, "rotate@firma.example")
    old = await env.store.integrations.webhook_secret(uid)
    await browser.get(f"/integrations/{uid}")  # the one full showing of the old secret
    assert await ingest.post(uid, old, 1) == 202  # cached now, for 30 s

    unconfirmed = await browser.submit(f"/integrations/{uid}", "rotate",
                                       f"/integrations/{uid}/webhook-secret/rotate")
    assert unconfirmed.status_code == 400
    assert await env.store.integrations.webhook_secret(uid) == old
    rotated = await browser.submit(f"/integrations/{uid}", "rotate",
                                   f"/integrations/{uid}/webhook-secret/rotate",
                                   {"confirm": "on"})
    rotated_at = time.monotonic()
    assert rotated.status_code == 303
    new = await env.store.integrations.webhook_secret(uid)
    assert new != old and len(new) == len(old)
    page = await browser.get(f"/integrations/{uid}")
    assert new in page.text and 'id="secret-once"' in page.text  # the new one, once
    assert "old secret keeps working until" in page.text and 'id="secret-grace"' in page.text
    assert new not in (await browser.get(f"/integrations/{uid}")).text

    # The cached target has only the old secret: a mismatch reads the store again.
    await asyncio.sleep(1.1)
    assert await ingest.post(uid, new, 2) == 202
    assert await ingest.post(uid, old, 3) == 202  # within the grace period
    assert await ingest.post(uid, "x" * 32, 4) == 401

    assert time.monotonic() - rotated_at < grace, "too slow to test within the grace period"
    await asyncio.sleep(grace + 0.2 - (time.monotonic() - rotated_at))  # the grace period ends
    assert await ingest.post(uid, old, 5) == 401
    assert await ingest.post(uid, new, 6) == 202
    assert len(ingest.published) == 4
