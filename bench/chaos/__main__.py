"""The fault suite at full scale (issue 16): 10,000 invoices over 3 integrations,
webhooks and polls mixed; the broker restarts, each service is SIGKILLed once, CIS is
unreachable for 5 minutes, then answers s006 to 30 % of requests for a minute.

    python -m bench.chaos [--invoices 10000] [--rate 40] [--outage-seconds 300]
                          [--s006-seconds 60] [--integrations 3]

Starts its own broker (on a fixed port, so the services find it again after its
restart), topics, SQLite store, CIS and Zoho Books sandboxes and pipeline; prints the
report of bench/chaos/run.py. tests/e2e/test_chaos.py runs the same at a small scale in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from bench.chaos.run import Plan, Report, run_chaos
from bench.chaos.zoho import ZohoIntegration, connected_integration, sandbox_handle
from fiscobridge.stack import LocalStack, free_port
from runtime.kafka.admin import ensure_topics
from runtime.kafka.local import LocalKafka
from runtime.settings import KafkaSettings
from runtime.store.store import Store
from runtime.vault import Vault, new_key, parse_keys
from schemas.topics import registry

# Retries come back quickly, as in the e2e stack: the outage is minutes, not hours.
STACK_ENV = {
    "FISCOBRIDGE_REPORTER_RETRY_BASE": "0.5",
    "FISCOBRIDGE_REPORTER_RETRY_CAP": "5",
    "FISCOBRIDGE_REPORTER_TIMEOUT": "3",
    # The write-back's own Zoho rate limit (per organization) as high as the sandbox's:
    # every fiscalized invoice is written back within the run.
    "FISCOBRIDGE_WRITEBACK_ZOHO_PER_MINUTE": "1000000",
    "FISCOBRIDGE_WRITEBACK_ZOHO_MAX_IN_FLIGHT": "8",
}


@asynccontextmanager
async def chaos_stack(
    home: Path, broker: LocalKafka, integrations: int,
) -> AsyncIterator[tuple[LocalStack, KafkaSettings, list[ZohoIntegration],
                         Callable[[float], Awaitable[None]]]]:
    """A pipeline on `broker` (already started, on a fixed port), with the Zoho Books
    sandbox, and its integrations (each connected to an organization of the sandbox, with
    a write-back mapping), with a function that restarts the broker after the given
    seconds down."""
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
    report = await ensure_topics(kafka, registry(kafka.partitions))
    assert report.ok, report.summary()
    key = new_key()
    store = Store.open(f"sqlite+aiosqlite:///{home / 'fiscobridge.db'}",
                       vault=Vault(parse_keys(key)))
    await store.migrate()
    stack = LocalStack(home=home, kafka_bootstrap=broker.bootstrap, master_key=key,
                       cis_latency_ms=20, zoho=True, extra_env=dict(STACK_ENV))
    await stack.start()

    async def restart_broker(down: float) -> None:
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(broker.start)

    try:
        async with httpx.AsyncClient(timeout=30) as http:
            zoho = sandbox_handle(stack, http)
            made = [await connected_integration(zoho, stack.zoho_client, store, kafka,
                                                home / "sandbox-ca")
                    for _ in range(integrations)]
        yield stack, kafka, made, restart_broker
    finally:
        await stack.stop()
        await store.close()


async def main_async(args: argparse.Namespace) -> Report:
    home = Path(tempfile.mkdtemp(prefix="fiscobridge-chaos-"))
    broker = LocalKafka(home / "kafka", port=free_port(), die_with_parent=True)
    await asyncio.to_thread(broker.start)
    try:
        async with chaos_stack(home, broker, args.integrations) as (stack, kafka, made,
                                                                    restart):
            plan = Plan(invoices=args.invoices, rate=args.rate,
                        outage_seconds=args.outage_seconds, s006_seconds=args.s006_seconds)
            return await run_chaos(stack, kafka, made, restart, plan)
    finally:
        await asyncio.to_thread(broker.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--outage-seconds", type=float, default=300.0)
    parser.add_argument("--s006-seconds", type=float, default=60.0)
    parser.add_argument("--integrations", type=int, default=3)
    report = asyncio.run(main_async(parser.parse_args()))
    for line in report.lines():
        print(line)


if __name__ == "__main__":
    main()
