"""`fiscobridge dev` — the whole system on one machine, on embedded defaults.

Local Kafka, the topics, the SQLite store, the CIS and Zoho sandboxes and every
pipeline service, supervised: a crashed child is reported and restarted; Ctrl-C
stops them all (and the broker, when dev started it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import click

from runtime.settings import home_dir


def _children(log_dir: Path, ports: dict[str, int]) -> list[object]:
    from runtime.supervisor import Child

    exe = [sys.executable, "-m", "fiscobridge"]
    cis_url = f"http://127.0.0.1:{ports['cis']}/FiskalizacijaServiceTest"
    common = {"FISCOBRIDGE_REPORTER_CIS_URL": cis_url}
    spec = [
        ("cis-sandbox", [*exe, "sandbox", "cis", "--port", str(ports["cis"])], {}),
        ("zoho-sandbox", [*exe, "sandbox", "zoho", "--port", str(ports["zoho"])], {}),
        ("portal", [*exe, "run", "portal"], {"FISCOBRIDGE_PORTAL_OPS_PORT": str(ports["portal"])}),
        ("reporter", [*exe, "run", "reporter"],
         {"FISCOBRIDGE_REPORTER_OPS_PORT": str(ports["reporter"])}),
        ("fiscalizer", [*exe, "run", "fiscalizer"],
         {"FISCOBRIDGE_FISCALIZER_OPS_PORT": str(ports["fiscalizer"])}),
        ("poller", [*exe, "run", "poller"], {"FISCOBRIDGE_POLLER_OPS_PORT": str(ports["poller"])}),
        ("ingest", [*exe, "run", "ingest"], {"FISCOBRIDGE_INGEST_PORT": str(ports["ingest"])}),
    ]
    return [
        Child(name, argv, {**common, **env}, log_dir / f"{name}.log") for name, argv, env in spec
    ]


@click.command("dev")
@click.option("--kafka-port", default=9092, show_default=True)
@click.option("--ingest-port", default=8080, show_default=True)
@click.option("--cis-port", default=8449, show_default=True)
@click.option("--zoho-port", default=8450, show_default=True)
def dev(kafka_port: int, ingest_port: int, cis_port: int, zoho_port: int) -> None:
    """Start everything; Ctrl-C stops everything."""
    from fiscobridge.commands.kafka import ensure_local_kafka, stop_local_kafka
    from runtime.kafka.admin import ensure_topics_cli
    from runtime.settings import KafkaSettings
    from runtime.store.setup import prepare_embedded_store
    from runtime.supervisor import Supervisor

    started_kafka = ensure_local_kafka(kafka_port)
    try:
        ensure_topics_cli(KafkaSettings())
        prepare_embedded_store()
        log_dir = home_dir() / "logs"
        log_dir.mkdir(exist_ok=True)
        ports = {
            "ingest": ingest_port, "cis": cis_port, "zoho": zoho_port,
            "portal": ingest_port + 10, "reporter": ingest_port + 11,
            "fiscalizer": ingest_port + 12, "poller": ingest_port + 13,
        }
        supervisor = Supervisor(_children(log_dir, ports))  # type: ignore[arg-type]
        click.echo(
            f"FiscoBridge is starting (logs in {log_dir}):\n"
            f"  webhooks  http://127.0.0.1:{ingest_port}/webhook/zoho/<integration uid>\n"
            f"  CIS       http://127.0.0.1:{cis_port}/FiskalizacijaServiceTest (sandbox)\n"
            f"  Zoho      http://127.0.0.1:{zoho_port} (sandbox)\n"
            f"  metrics   http://127.0.0.1:<port>/metrics, ports {ingest_port}, "
            f"{ingest_port + 10}-{ingest_port + 13}\n"
            "Try `fiscobridge demo --invoices 100` in another terminal. Ctrl-C stops everything."
        )

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, supervisor.stop)
            await supervisor.run()

        asyncio.run(main())
    finally:
        if started_kafka and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            stop_local_kafka(kafka_port)
        click.echo("stopped")
