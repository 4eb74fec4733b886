"""The Client Portal under test: served by uvicorn on a free port, on the real store, the
real broker and the real Zoho sandbox, driven by a cookie-keeping HTTP "browser".

The portal test modules import the fixtures (`*_fixture`, named without the suffix);
this module holds no tests.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import pytest_asyncio
import uvicorn
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from connectors.zoho.oauth import DEFAULT_SCOPES, authorization_url
from runtime.health import store_ok
from runtime.kafka import clients
from runtime.ops import QuietServer
from runtime.settings import KafkaSettings, ZohoClientSettings
from runtime.store import Store
from runtime.store.rebuild import publish_and_apply
from sandbox.cis.ca import TestCA
from schemas.events import IntegrationEvent
from schemas.topics import INTEGRATIONS_EVENTS
from services.fiscalizer.settings import FiscalizerSettings
from services.portal.settings import PortalSettings
from services.portal.web.app import create_app
from services.portal.web.context import Portal
from tests.fixtures.certs import OPERATOR_OIB, Pfx
from tests.fixtures.zoho import ZohoSandboxHandle, forms_of

WEBHOOK_BASE = "https://hooks.fiscobridge.test"
TRIAL_LIMIT = 50
USER_PASSWORD = "correct horse battery"

# The portal needs a store with a vault; SQLite is enough for these tests.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


class Clock:
    """Wall-clock seconds the test can move forward (state and session expiry)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class PortalUnderTest:
    url: str
    portal: Portal
    store: Store
    zoho: ZohoSandboxHandle
    client: dict[str, Any]  # the portal's OAuth client in the sandbox
    clock: Clock
    browsers: list[Browser] = field(default_factory=list)

    def browser(self) -> Browser:
        browser = Browser(self)
        self.browsers.append(browser)
        return browser

    @property
    def accounts(self) -> str:
        return self.zoho.urls["com"]["accounts"]

    def authorize_url(self, state: str) -> str:
        return authorization_url(
            self.client["client_id"], self.client["redirect_uris"][0], DEFAULT_SCOPES, state,
            self.accounts,
        )


class Browser:
    """Keeps cookies, never follows redirects by itself, fills in CSRF tokens like a page."""

    def __init__(self, env: PortalUnderTest) -> None:
        self.env = env
        self.http = httpx.AsyncClient(base_url=env.url, follow_redirects=False, timeout=30)

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path)

    async def form(self, page: str, form_id: str) -> dict[str, str]:
        response = await self.get(page)
        assert response.status_code == 200, response.text
        forms = forms_of(response.text)
        assert form_id in forms, f"no form {form_id!r} on {page}: {sorted(forms)}"
        return forms[form_id]

    async def submit(
        self, page: str, form_id: str, action: str, data: dict[str, str] | None = None,
        files: dict[str, Any] | None = None,
    ) -> httpx.Response:
        fields = {**await self.form(page, form_id), **(data or {})}
        return await self.http.post(action, data=fields, files=files)

    async def signup(self, email: str, password: str = USER_PASSWORD) -> httpx.Response:
        response = await self.submit("/signup", "signup", "/signup", {
            "email": email, "password": password, "password_repeat": password,
        })
        assert response.status_code == 303, response.text
        return response

    async def create(
        self, pfx: Pfx, oib: str, *, password: str | None = None, **overrides: str
    ) -> httpx.Response:
        fields = {
            "oib": oib, "premises_code": "POSL1", "device_code": "12",
            "operator_oib": OPERATOR_OIB, "sequence_mark": "P", "in_vat_system": "on",
            "password": pfx.password if password is None else password, **overrides,
        }
        # The settings with the certificate in one POST (the portal's one-request path);
        # the browser tests walk the pages' separate certificate step.
        return await self.submit("/integrations/new/zoho-books", "certificate", "/integrations",
                                 fields,
                                 files={"pfx": ("company.pfx", pfx.data,
                                                "application/x-pkcs12")})

    async def callback(self, redirect: dict[str, str]) -> httpx.Response:
        return await self.get("/oauth/zoho/callback?" + urlencode(redirect))

    async def start_connect(self, pfx: Pfx, oib: str) -> tuple[str, str]:
        """Create Integration up to the redirect to Zoho: (uid, state)."""
        response = await self.create(pfx, oib)
        assert response.status_code == 303, response.text
        state = state_of(response)
        assert response.headers["location"] == self.env.authorize_url(state)
        records = await self.env.store.integrations.find()
        return records[-1].uid, state

    async def connect(
        self, pfx: Pfx, oib: str, user: dict[str, Any], organization_id: str | None = None
    ) -> str:
        """Create Integration, consent in Zoho, choose the (first) organization: the uid."""
        uid, state = await self.start_connect(pfx, oib)
        redirect = await self.env.zoho.authorize(self.env.client, user, state=state)
        chooser = await self.callback(redirect)
        assert chooser.headers["location"] == f"/integrations/{uid}/organization", chooser.text
        if organization_id is None:
            page = await self.get(f"/integrations/{uid}/organization")
            organization_id = radio_values(page.text)[0]
        done = await self.submit(
            f"/integrations/{uid}/organization", "organization",
            f"/integrations/{uid}/organization",
            {"organization_id": organization_id, "action": "connect"},
        )
        assert done.status_code == 303, done.text
        return uid

    async def aclose(self) -> None:
        await self.http.aclose()


def state_of(response: httpx.Response) -> str:
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))["state"]


def radio_values(page: str) -> list[str]:
    import re

    return re.findall(r'type="radio" name="organization_id" value="([^"]+)"', page)


async def zoho_user_with_org(
    zoho: ZohoSandboxHandle, dc: str = "com", organizations: int = 1
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    user = await zoho.user(dc)
    orgs = [await zoho.organization([user["email"]]) for _ in range(organizations)]
    return user, orgs


async def integration_events(
    kafka: KafkaSettings, uid: str, *, topic: str = INTEGRATIONS_EVENTS.name
) -> list[IntegrationEvent]:
    """Every event on integrations.events (or `topic`) for `uid`, read from the broker."""
    consumer = clients.consumer(kafka, group_id=None)
    await consumer.start()
    try:
        partitions = await clients.partitions_of(consumer, topic)
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[IntegrationEvent] = []
        pending = {tp for tp in partitions if end[tp] > 0}
        while pending:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    if record.key == uid.encode() and record.value is not None:
                        found.append(IntegrationEvent.from_json(record.value))
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
        return found
    finally:
        await consumer.stop()


@pytest_asyncio.fixture(name="producer", scope="module", loop_scope="session")
async def producer_fixture(
    kafka_settings: KafkaSettings, kafka_topics: object
) -> AsyncIterator[AIOKafkaProducer]:
    started = clients.producer(kafka_settings)
    await started.start()
    yield started
    await started.stop()


MakePortal = Callable[..., Awaitable[PortalUnderTest]]


@pytest_asyncio.fixture(name="make_portal", loop_scope="session")
async def make_portal_fixture(
    store: Store, producer: AIOKafkaProducer, zoho_sandbox: ZohoSandboxHandle,
    test_ca: TestCA, tmp_path: Path,
) -> AsyncIterator[MakePortal]:
    """`await make_portal(zoho=..., **settings)`: a portal served on a free port, trusting
    the sandbox CA (the one the certificate fixtures come from) as its fiscal CA."""
    bundle = tmp_path / "fiscal-cas.pem"
    bundle.write_bytes(test_ca.cert_pem())
    servers: list[tuple[QuietServer, asyncio.Task[None]]] = []
    envs: list[PortalUnderTest] = []
    http = httpx.AsyncClient(timeout=10)

    async def make(zoho: ZohoSandboxHandle = zoho_sandbox, **overrides: Any) -> PortalUnderTest:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        client = await zoho.oauth_client(redirect_uri=f"{base}/oauth/zoho/callback")
        settings = PortalSettings(**{
            "public_base_url": base,
            "webhook_base_url": WEBHOOK_BASE,
            "session_secret": SecretStr("test-session-secret-" + "x" * 20),
            "zoho": ZohoClientSettings(
                client_id=client["client_id"],
                client_secret=SecretStr(client["client_secret"]),
                accounts_url=zoho.urls["com"]["accounts"],
                accounts_servers=zoho.accounts_servers,
            ),
            "fiscal_ca_bundle": bundle,
            **overrides,
        })
        clock = Clock()

        async def publish(event: IntegrationEvent) -> object:
            return await publish_and_apply(producer, store, event)

        async def ready() -> dict[str, bool]:
            return {"store": await store_ok(store)}

        portal = Portal(settings, store, publish, http, ready=ready, clock=clock,
                        monthly_limit=FiscalizerSettings(limit_trial=TRIAL_LIMIT).monthly_limit)
        server = QuietServer(uvicorn.Config(create_app(portal), log_level="warning",
                                            access_log=False, lifespan="off"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            assert not task.done(), task.result()
            await asyncio.sleep(0.01)
        servers.append((server, task))
        env = PortalUnderTest(base, portal, store, zoho, client, clock)
        envs.append(env)
        return env

    yield make
    for env in envs:
        for browser in env.browsers:
            await browser.aclose()
    for server, task in servers:
        server.should_exit = True
        await task
    await http.aclose()


@pytest_asyncio.fixture(name="env", loop_scope="session")
async def env_fixture(make_portal: MakePortal) -> PortalUnderTest:
    return await make_portal()
