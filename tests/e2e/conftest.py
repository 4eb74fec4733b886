"""The whole pipeline as real processes on the session's broker: ingest, fiscalizer,
reporter, portal (projector) and the CIS sandbox, each in its own process so a test
can SIGKILL one and start it again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from bench.chaos.run import records_since
from fiscobridge.provision import DemoIntegration, demo_integration
from fiscobridge.stack import LocalStack
from runtime.kafka.admin import ensure_topics
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.settings import KafkaSettings
from runtime.store.store import Store
from runtime.vault import Vault, new_key, parse_keys
from schemas.events import InvoiceSigned
from schemas.topics import (
    INTEGRATIONS_EVENTS,
    INVOICES_RECEIVED,
    INVOICES_RESEND,
    INVOICES_RETRY,
    INVOICES_SIGNED,
    INVOICES_STATUS,
    INVOICES_WRITEBACK,
    table_changelogs,
)

pytestmark = pytest.mark.e2e

# The e2e stack's trial tier allows this many invoices a month, so the licence test
# needs a handful of webhooks, not fifty.
TRIAL_LIMIT = 5


class Pipeline:
    def __init__(self, stack: LocalStack, store: Store, kafka: KafkaSettings) -> None:
        self.stack = stack
        self.store = store
        self.kafka = kafka

    async def integration(self, tier: str = "scale") -> DemoIntegration:
        return await demo_integration(
            self.store, self.kafka, self.stack.home / "sandbox-ca", tier=tier
        )

    async def ledger(self, oibs: set[str]) -> list[dict[str, object]]:
        async with httpx.AsyncClient() as http:
            entries = (await http.get(f"{self.stack.cis_base_url}/_sandbox/ledger")).json()
        return [e for e in entries if e["oib"] in oibs]

    async def signed_since(self, since_ms: int, uids: set[str]) -> list[InvoiceSigned]:
        """Every InvoiceSigned of the integrations written since `since_ms`, to the end now."""
        return [InvoiceSigned.from_json(r.value) for r in
                await records_since(self.kafka, INVOICES_SIGNED.name, since_ms, uids)]

    async def faults(self, **changes: object) -> None:
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{self.stack.cis_base_url}/_sandbox/faults", json=changes)
            response.raise_for_status()


# What each stack's consumer groups read: shared by every stack on the session's broker.
SHARED_TOPICS = (INVOICES_RECEIVED, INVOICES_SIGNED, INVOICES_RETRY, INVOICES_RESEND,
                 INVOICES_STATUS, INTEGRATIONS_EVENTS, INVOICES_WRITEBACK)


async def start_at_present(kafka: KafkaSettings, groups: list[str]) -> None:
    """Commit each (new) group's offsets at the shared topics' current end: what other
    stacks wrote belongs to their integrations, and each new stack reading the session's
    whole history first (tens of thousands of records by the later tests) made the
    portal's projection minutes behind its own invoices."""
    reader = make_consumer(kafka, group_id=None)
    await reader.start()
    try:
        partitions = await partitions_of(reader, *(t.name for t in SHARED_TOPICS))
        ends = await reader.end_offsets(partitions)
    finally:
        await reader.stop()
    for group in groups:
        committer = make_consumer(kafka, group_id=group)
        await committer.start()
        try:
            committer.assign(partitions)
            await committer.commit(dict(ends))
        finally:
            await committer.stop()


@contextlib.asynccontextmanager
async def open_pipeline(
    kafka_bootstrap: str, home: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Pipeline]:
    """A whole stack of its own; `extra_env` adds or overrides service settings."""
    key = new_key()
    store = Store.open(f"sqlite+aiosqlite:///{home / 'fiscobridge.db'}",
                       vault=Vault(parse_keys(key)))
    await store.migrate()
    run = uuid.uuid4().hex[:8]  # private consumer groups: other tests share the broker
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    report = await ensure_topics(kafka, table_changelogs(f"e2e-fiscalizer-{run}", kafka.partitions))
    assert report.ok, report.summary()
    groups = {"FISCOBRIDGE_FISCALIZER_APP_ID": f"e2e-fiscalizer-{run}",
              "FISCOBRIDGE_REPORTER_GROUP_ID": f"e2e-reporter-{run}",
              "FISCOBRIDGE_PORTAL_PROJECTOR_GROUP_ID": f"e2e-projector-{run}",
              "FISCOBRIDGE_WRITEBACK_GROUP_ID": f"e2e-writeback-{run}"}
    await start_at_present(kafka, list(groups.values()))
    stack = LocalStack(
        home=home,
        kafka_bootstrap=kafka_bootstrap,
        master_key=key,
        cis_latency_ms=5,
        extra_env={
            **groups,
            "FISCOBRIDGE_FISCALIZER_LIMIT_TRIAL": str(TRIAL_LIMIT),
            "FISCOBRIDGE_REPORTER_RETRY_BASE": "0.2",
            "FISCOBRIDGE_REPORTER_RETRY_CAP": "2",
            **(extra_env or {}),
        },
    )
    await stack.start()
    try:
        yield Pipeline(stack, store, kafka)
    finally:
        await stack.stop()
        await store.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pipeline(
    kafka_bootstrap: str, kafka_topics: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    async with open_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("stack")) as pipeline:
        yield pipeline


async def cli(pipeline: Pipeline, *args: str) -> str:
    """Run `fiscobridge ARGS` in a process of its own, as an operator would; its stdout."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": pipeline.kafka.bootstrap_servers,
           "FISCOBRIDGE_HOME": str(pipeline.stack.home), "COLUMNS": "160"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fiscobridge", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, (args, out.decode(), err.decode())
    return out.decode()
