"""`fiscobridge run poller` as the process an operator runs: configured from the
environment, ready without any integration, polling a connected one, draining on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from fiscobridge.stack import free_port
from runtime.settings import KafkaSettings
from runtime.store import Store
from runtime.supervisor import Child
from runtime.vault import Vault, parse_keys
from schemas.events import IntegrationEvent, IntegrationEventKind
from schemas.topics import Topic
from tests.e2e.zoho_helpers import poller_env, store_connection, zoho_grant
from tests.fixtures.certs import Pfx
from tests.fixtures.zoho import ZohoSandboxHandle

pytestmark = pytest.mark.kafka


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.1)


async def test_run_poller_idles_ready_then_polls_and_drains_on_sigterm(
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    kafka_topics: tuple[Topic, ...],
    master_key: str,
    zoho_sandbox: ZohoSandboxHandle,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fiscobridge.db'}"
    store = Store.open(url, vault=Vault(parse_keys(master_key)))
    await store.migrate()
    client = await zoho_sandbox.oauth_client()
    port = free_port()
    env = {
        "FISCOBRIDGE_HOME": str(tmp_path),
        "FISCOBRIDGE_DATABASE_URL": url,
        "FISCOBRIDGE_MASTER_KEY": master_key,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "FISCOBRIDGE_POLLER_OPS_PORT": str(port),
        "FISCOBRIDGE_POLLER_TICK": "0.2",
        "FISCOBRIDGE_POLLER_INTERVAL_SCALE": "0.5",
        **poller_env(zoho_sandbox, client),
    }
    log_path = tmp_path / "poller.log"
    child = Child("poller", [sys.executable, "-m", "fiscobridge", "run", "poller"], env, log_path)
    await child.start()
    assert child.process is not None
    ops = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=5) as http:

            async def ready() -> bool:
                assert child.process is not None and child.process.returncode is None, (
                    log_path.read_text()
                )
                try:
                    return (await http.get(f"{ops}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready)
            answer = (await http.get(f"{ops}/readyz")).json()
            assert answer == {"ready": True, "checks": {"kafka": True, "store": True}}
            assert (await http.get(f"{ops}/healthz")).status_code == 200
            metrics = (await http.get(f"{ops}/metrics")).text
            assert "fiscobridge_poller_integrations 0.0" in metrics

            # Connected through the portal (here: straight into the store).
            grant = await zoho_grant(zoho_sandbox, client)
            account, _ = await store.accounts.ensure("owner@obrt.hr")
            created = await store.integrations.create(
                account_id=account.account_id, fiscal_settings=fiscal_settings,
                pfx=demo_pfx.data, password=demo_pfx.password, certificate=demo_certificate,
                tier="scale",
            )
            uid = created.record.uid
            await store_connection(store, uid, grant)
            await store.apply(
                [IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.CONNECTED)]
            )
            await zoho_sandbox.create_invoice(grant.organization_id)  # after its start

            async def polled() -> bool:
                return await store.watermark.get(uid) is not None

            await eventually(polled)
            assert await store.lease.holder(uid) is not None
            metrics = (await http.get(f"{ops}/metrics")).text
            assert 'fiscobridge_poller_polls_total{outcome="ok"}' in metrics
            assert "fiscobridge_poller_invoices_found_total 1.0" in metrics

        child.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(child.process.wait(), 30) == 0
        assert await store.lease.holder(uid) is None  # released for another instance

        lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        polls = [line for line in lines if line.get("msg") == "poll finished"]
        assert polls and all(line["integration_uid"] == uid for line in polls)
        assert polls[0]["outcome"] == "ok" and polls[0]["published"] == 1
        text = log_path.read_text()
        assert grant.tokens.refresh_token is not None
        for secret in (client["client_secret"], grant.tokens.refresh_token,
                       grant.tokens.access_token):
            assert secret not in text
    finally:
        if child.process.returncode is None:
            child.process.kill()
            await child.process.wait()
        await store.close()
