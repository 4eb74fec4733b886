"""`fiscobridge demo` — push invoices through a running `fiscobridge dev` and report."""

from __future__ import annotations

import asyncio

import click


@click.command("demo")
@click.option("--invoices", "count", default=100, show_default=True, help="webhooks to send")
@click.option("--integrations", "how_many", default=1, show_default=True)
@click.option("--ingest-url", default="http://127.0.0.1:8080", show_default=True)
@click.option("--concurrency", default=32, show_default=True)
@click.option("--rate", type=float, default=None, help="webhooks per second (default: flat out)")
@click.option("--timeout", default=300.0, show_default=True, help="seconds to wait for outcomes")
def demo(count: int, how_many: int, ingest_url: str, concurrency: int, rate: float | None,
         timeout: float) -> None:
    """Create demo integrations (sandbox certificates), send signed webhooks, summarize."""
    from fiscobridge.provision import demo_integration
    from runtime.settings import KafkaSettings
    from runtime.store.store import Store
    from runtime.vault import Vault
    from sandbox.cis.ca import default_ca_dir
    from sandbox.load import drive

    async def main() -> list[str]:
        kafka = KafkaSettings()
        store = Store.open(vault=Vault.from_env(allow_dev_keyfile=True))
        try:
            await store.require_schema()
            made = [await demo_integration(store, kafka, default_ca_dir())
                    for _ in range(how_many)]
        finally:
            await store.close()
        for m in made:
            click.echo(f"integration {m.uid} (OIB {m.oib}) active")
        report = await drive(kafka, ingest_url, [(m.uid, m.webhook_secret) for m in made],
                             count, concurrency=concurrency, rate=rate, timeout=timeout)
        return report.lines()

    for line in asyncio.run(main()):
        click.echo(line)
