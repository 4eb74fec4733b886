"""`services.portal.service.main`: the web app and the projector in one process, wired from
the environment, stopping cleanly."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from fiscobridge.stack import free_port
from runtime.kafka import clients
from runtime.settings import KafkaSettings
from runtime.store import IntegrationStatus, Store
from runtime.vault import Vault, new_key, parse_keys
from schemas.events import IntegrationEvent, IntegrationEventKind
from schemas.topics import INTEGRATIONS_EVENTS
from services.portal import service
from tests.fixtures.certs import Pfx

pytestmark = pytest.mark.kafka


async def _wait_ready(url: str, task: asyncio.Task[None]) -> None:
    async with asyncio.timeout(60), httpx.AsyncClient(timeout=2) as http:
        while True:
            if task.done():
                task.result()
                raise AssertionError("the portal stopped before it was ready")
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("port_variable", ["FISCOBRIDGE_PORTAL_PORT",
                                           "FISCOBRIDGE_PORTAL_OPS_PORT"])
async def test_main_serves_the_portal_runs_the_projector_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_settings: KafkaSettings,
    kafka_topics: object, demo_pfx: Pfx, demo_certificate: object, fiscal_settings: object,
    port_variable: str,
) -> None:
    key = new_key()
    url = f"sqlite+aiosqlite:///{tmp_path / 'portal.db'}"
    store = Store.open(url, vault=Vault(parse_keys(key)))
    await store.migrate()
    account = await store.accounts.create("svc@firma.example", "service-password-1")
    created = await store.integrations.create(
        account_id=account.account_id, fiscal_settings=fiscal_settings,  # type: ignore[arg-type]
        pfx=demo_pfx.data, password=demo_pfx.password, certificate=demo_certificate,  # type: ignore[arg-type]
    )
    port = free_port()
    for name, value in {
        "FISCOBRIDGE_DATABASE_URL": url,
        "FISCOBRIDGE_MASTER_KEY": key,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        port_variable: str(port),
        "FISCOBRIDGE_PORTAL_PROJECTOR_GROUP_ID": f"test-portal-{uuid.uuid4().hex[:8]}",
    }.items():
        monkeypatch.setenv(name, value)
    stop = asyncio.Event()
    task = asyncio.create_task(service.main(stop))
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(base, task)
        async with httpx.AsyncClient(base_url=base) as http:
            login = await http.get("/login")
            assert login.status_code == 200 and 'name="csrf_token"' in login.text
            assert "fiscobridge_projector_events_total" in (await http.get("/metrics")).text

        # The embedded projector applies what others publish (here: as the poller would).
        producer = clients.producer(kafka_settings)
        await producer.start()
        try:
            event = IntegrationEvent(integration_uid=created.record.uid,
                                     kind=IntegrationEventKind.CONNECTED)
            await producer.send_and_wait(INTEGRATIONS_EVENTS.name, event.to_json(),
                                         key=event.key)
        finally:
            await producer.stop()
        for _ in range(300):
            record = await store.integrations.get(created.record.uid)
            if record is not None and record.status is IntegrationStatus.ACTIVE:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the projector did not apply the event")
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await store.close()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{base}/healthz")
