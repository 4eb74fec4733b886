"""`fiscobridge demo` — push invoices through a running `fiscobridge dev` and report."""

from __future__ import annotations

import asyncio

import click

DEFAULT_INGEST_URL = "http://127.0.0.1:8080"


@click.command("demo")
@click.option("--invoices", "count", default=100, show_default=True, help="webhooks to send")
@click.option("--integrations", "how_many", default=1, show_default=True)
@click.option("--ingest-url", envvar="FISCOBRIDGE_INGEST_URL", default=None,
              help="[default: the running `fiscobridge dev`'s (<home>/dev.json), else "
              "http://127.0.0.1:8080]")
@click.option("--concurrency", default=32, show_default=True)
@click.option("--rate", type=float, default=None, help="webhooks per second (default: flat out)")
@click.option("--timeout", default=300.0, show_default=True, help="seconds to wait for outcomes")
def demo(count: int, how_many: int, ingest_url: str | None, concurrency: int,
         rate: float | None, timeout: float) -> None:
    """Create demo integrations (sandbox certificates), send signed webhooks, summarize.

    Finds a running `fiscobridge dev` through <home>/dev.json: its ingest URL, and its
    broker unless KAFKA_BOOTSTRAP_SERVERS says otherwise (the CLI applies that one)."""
    from fiscobridge import devfile
    from fiscobridge.provision import demo_integration
    from runtime.settings import KafkaSettings
    from runtime.store.store import Store
    from runtime.vault import Vault
    from sandbox.cis.ca import default_ca_dir
    from sandbox.load import drive

    if ingest_url is None:
        running = devfile.read()
        ingest_url = running.ingest if running else DEFAULT_INGEST_URL
    click.echo(f"webhooks to {ingest_url}")
    url = ingest_url

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
        report = await drive(kafka, url, [(m.uid, m.webhook_secret) for m in made],
                             count, concurrency=concurrency, rate=rate, timeout=timeout)
        return report.lines()

    for line in asyncio.run(main()):
        click.echo(line)
