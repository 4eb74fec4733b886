"""A ready-to-use integration backed by the sandbox's test CA (demo, benchmark, tests)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fiscal.hr_cis.certificate import load_certificate
from fiscal.hr_cis.oib import oib_check_digit
from fiscal.hr_cis.settings import FiscalSettings
from runtime.kafka.clients import producer as make_producer
from runtime.settings import KafkaSettings
from runtime.store.rebuild import publish_and_apply
from runtime.store.store import Store
from sandbox.cis.ca import TestCA
from schemas.events import IntegrationEvent, IntegrationEventKind


@dataclass(frozen=True)
class DemoIntegration:
    uid: str
    webhook_secret: str
    oib: str


def random_oib() -> str:
    first_ten = f"{secrets.randbelow(9 * 10**9) + 10**9}"
    return first_ten + str(oib_check_digit(first_ten))


async def demo_integration(
    store: Store,
    kafka: KafkaSettings,
    ca_dir: Path,
    *,
    tier: str = "scale",
    account: str = "demo@fiscobridge.example",
    connect: Callable[[str], Awaitable[None]] | None = None,
) -> DemoIntegration:
    """Create an integration with a sandbox-issued certificate and make it active.

    `connect(uid)` runs before it turns active, e.g. to store a Zoho connection.
    """
    oib = random_oib()
    password = secrets.token_urlsafe(12)
    pfx = TestCA.load_or_create(ca_dir).issue_pfx(oib, password)
    certificate = load_certificate(pfx, password, expected_oib=oib)
    settings = FiscalSettings(
        oib=oib, premises_code="DEMO1", device_code="1", operator_oib=oib
    )
    owner, _ = await store.accounts.ensure(account)
    created = await store.integrations.create(
        account_id=owner.account_id, fiscal_settings=settings, pfx=pfx, password=password,
        certificate=certificate, tier=tier,
    )
    uid = created.record.uid
    if connect is not None:
        await connect(uid)
    producer = make_producer(kafka)
    await producer.start()
    try:
        await publish_and_apply(
            producer, store,
            IntegrationEvent(
                integration_uid=uid, kind=IntegrationEventKind.CONNECTED,
                reason="demo integration" + ("" if connect else ", no Zoho connection"),
            ),
        )
    finally:
        await producer.stop()
    return DemoIntegration(uid, created.webhook_secret, oib)
