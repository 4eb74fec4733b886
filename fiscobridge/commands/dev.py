"""`fiscobridge dev` — the whole system on one machine, on embedded defaults.

Local Kafka, the topics, the SQLite store, the CIS and Zoho sandboxes and every
pipeline service, supervised: a crashed child is reported and restarted; Ctrl-C
stops them all (and the broker, when dev started it).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from fiscobridge import devfile
from fiscobridge.devfile import DevEndpoints
from runtime.settings import home_dir
from runtime.supervisor import Child

SERVICES = ("portal", "reporter", "fiscalizer", "poller", "ingest", "writeback")
# Started `--workers` times: each instance joins its service's consumer group and takes
# a share of the partitions (the fiscalizer's tables move with them).
SCALED = ("reporter", "fiscalizer")
MAX_WORKERS = 8  # instance n listens 10 * (n - 1) above the first, below the ingest's 8080
ZOHO_CLIENT_ID = "1000.FISCOBRIDGEDEV"
# The local mail catcher (fiscobridge/mailcatcher.py): SMTP here, its page one above.
MAIL_SMTP_PORT = 8025


@dataclass(frozen=True)
class Ports:
    kafka: int
    ingest: int
    portal: int
    cis: int
    zoho: int  # four in a row: com accounts, com api, eu accounts, eu api
    # The ops endpoints of the services without a web app of their own; None: right
    # above the portal (reporter +2, fiscalizer +3, poller +4, writeback +6).
    reporter: int | None = None
    fiscalizer: int | None = None
    poller: int | None = None
    mail: int = MAIL_SMTP_PORT  # the mail catcher's SMTP; its web page is on mail + 1
    writeback: int | None = None  # its ops endpoints; None: portal + 6

    def service(self, name: str) -> int:
        """The port of `name`'s HTTP endpoints, /healthz /readyz /metrics included."""
        port = getattr(self, name)
        if port is not None:
            return int(port)
        return self.portal + 1 + SERVICES.index(name)  # ops ports right above the portal

    def instance(self, name: str, n: int) -> int:
        """The ops port of instance `n` (1: the first) of a scaled service."""
        return self.service(name) + 10 * (n - 1)


def instances(workers: int) -> list[tuple[str, str, int]]:
    """(child name, service, instance number) of every service child, in start order."""
    out = []
    for name in SERVICES:
        out.append((name, name, 1))
        if name in SCALED:
            out += [(f"{name}-{n}", name, n) for n in range(2, workers + 1)]
    return out


def children(ports: Ports, log_dir: Path, zoho_secret: str, workers: int = 1) -> list[Child]:
    from fiscobridge.stack import instance_env, port_variable

    exe = [sys.executable, "-m", "fiscobridge"]
    portal_url = f"http://127.0.0.1:{ports.portal}"
    accounts = [f"http://127.0.0.1:{ports.zoho}", f"http://127.0.0.1:{ports.zoho + 2}"]
    zoho = {
        # Every service that talks to Zoho (portal, poller, ingest, write-back) talks to
        # the Zoho sandbox as to Zoho itself, with the one OAuth client.
        "FISCOBRIDGE_ZOHO_CLIENT_ID": ZOHO_CLIENT_ID,
        "FISCOBRIDGE_ZOHO_CLIENT_SECRET": zoho_secret,
        "FISCOBRIDGE_ZOHO_ACCOUNTS_URL": accounts[0],
        "FISCOBRIDGE_ZOHO_ACCOUNTS_SERVERS": json.dumps(accounts),
        "FISCOBRIDGE_PORTAL_WEBHOOK_BASE_URL": f"http://127.0.0.1:{ports.ingest}",
        # The portal's mail (password reset links) goes to the local mail catcher.
        "FISCOBRIDGE_PORTAL_SMTP_URL": f"smtp://127.0.0.1:{ports.mail}",
    }
    from sandbox.cis.ca import SERVICE_CERT_FILE, default_ca_dir

    common = {
        "FISCOBRIDGE_REPORTER_CIS_URL": f"http://127.0.0.1:{ports.cis}/FiskalizacijaServiceTest",
        # Explicitly the sandbox: the reporter trusts the sandbox's own answer-signing
        # certificate, made before any child starts (see `dev`), and nothing else.
        "FISCOBRIDGE_REPORTER_CIS_TRUST": str(default_ca_dir() / SERVICE_CERT_FILE),
        "FISCOBRIDGE_REPORTER_CIS_SANDBOX": "true",
        **zoho,
    }
    spec = [
        ("mail-catcher", [sys.executable, "-m", "fiscobridge.mailcatcher", "--smtp-port",
                          str(ports.mail), "--http-port", str(ports.mail + 1)]),
        ("cis-sandbox", [*exe, "sandbox", "cis", "--port", str(ports.cis)]),
        ("zoho-sandbox", [*exe, "sandbox", "zoho", "--port", str(ports.zoho), "--demo",
                          "--client-id", ZOHO_CLIENT_ID, "--client-secret", zoho_secret,
                          "--redirect-uri", f"{portal_url}/oauth/zoho/callback"]),
    ]
    made = [Child(name, argv, common, log_dir / f"{name}.log") for name, argv in spec]
    for child, name, n in instances(workers):
        env = {**common, port_variable(name): str(ports.instance(name, n)), **instance_env(child)}
        made.append(Child(child, [*exe, "run", name], env, log_dir / f"{child}.log"))
    return made


def endpoints(ports: Ports, kafka_bootstrap: str, workers: int = 1) -> DevEndpoints:
    """What `<home>/dev.json` says (fiscobridge/devfile.py)."""
    local = "http://127.0.0.1"
    return DevEndpoints(
        pid=os.getpid(),
        kafka=kafka_bootstrap,
        ingest=f"{local}:{ports.ingest}",
        portal=f"{local}:{ports.portal}",
        cis=f"{local}:{ports.cis}/FiskalizacijaServiceTest",
        zoho=[f"{local}:{ports.zoho + i}" for i in range(4)],
        ops={child: f"{local}:{ports.instance(name, n)}" for child, name, n in instances(workers)},
    )


def listing(ports: Ports, workers: int = 1) -> str:
    """Where each service's /healthz /readyz /metrics answer, a line each, start order."""
    lines = [f"  {child:<12} http://127.0.0.1:{ports.instance(name, n)}\n"
             for child, name, n in instances(workers)]
    return "ops endpoints (/healthz /readyz /metrics):\n" + "".join(lines)


@click.command("dev")
@click.option("--kafka-port", default=9092, show_default=True)
@click.option("--ingest-port", default=8080, show_default=True)
@click.option("--portal-port", default=8000, show_default=True,
              help="the Client Portal; the other services' ops endpoints follow it")
@click.option("--cis-port", default=8449, show_default=True)
@click.option("--zoho-port", default=8470, show_default=True, help="first of four")
@click.option("--reporter-ops-port", type=int, default=None,
              help="[default: portal port + 2]")
@click.option("--fiscalizer-ops-port", type=int, default=None,
              help="[default: portal port + 3]")
@click.option("--poller-ops-port", type=int, default=None,
              help="[default: portal port + 4]")
@click.option("--writeback-ops-port", type=int, default=None,
              help="[default: portal port + 6]")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
              help="fiscalizers and reporters to start; they share the partitions "
              "(instance n's ops port is 10 * (n - 1) above the first's)")
@click.option("--mail-port", default=MAIL_SMTP_PORT, show_default=True,
              help="the mail catcher's SMTP; its page listens one above")
def dev(kafka_port: int, ingest_port: int, portal_port: int, cis_port: int,
        zoho_port: int, reporter_ops_port: int | None, fiscalizer_ops_port: int | None,
        poller_ops_port: int | None, writeback_ops_port: int | None, workers: int,
        mail_port: int) -> None:
    """Start everything; Ctrl-C stops everything."""
    from runtime.kafka.admin import ensure_topics
    from runtime.kafka.jars import fetch_jars
    from runtime.kafka.local import LocalKafka
    from runtime.settings import KafkaSettings
    from runtime.store.setup import prepare_embedded_store
    from runtime.supervisor import Supervisor
    from schemas.topics import registry

    ports = Ports(kafka_port, ingest_port, portal_port, cis_port, zoho_port,
                  reporter_ops_port, fiscalizer_ops_port, poller_ops_port, mail_port,
                  writeback_ops_port)
    broker = None
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        fetch_jars()
        broker = LocalKafka(home_dir() / "kafka", kafka_port)
        click.echo(f"kafka: {broker.start()}")
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    try:
        kafka = KafkaSettings()
        report = asyncio.run(ensure_topics(kafka, registry(kafka.partitions)))
        click.echo(f"topics: {report.summary()}")
        if not report.ok:
            raise click.ClickException("topics differ from the registry; see above")
        prepare_embedded_store()
        # The reporter trusts the CIS sandbox's answer-signing certificate: make it (and
        # its CA) before either starts, so the reporter never races the sandbox for it.
        from sandbox.cis.ca import TestCA, default_ca_dir, load_or_create_service

        load_or_create_service(TestCA.load_or_create(default_ca_dir()), default_ca_dir())
        log_dir = home_dir() / "logs"
        log_dir.mkdir(exist_ok=True)
        supervisor = Supervisor(children(ports, log_dir, secrets.token_urlsafe(24), workers))
        written = devfile.write(endpoints(ports, os.environ["KAFKA_BOOTSTRAP_SERVERS"], workers))
        click.echo(
            f"FiscoBridge is starting (logs in {log_dir}; endpoints in {written}):\n"
            f"  portal    http://127.0.0.1:{portal_port}  (Zoho sandbox users demo@com.example"
            " / demo@eu.example, password 'sandbox')\n"
            f"  webhooks  http://127.0.0.1:{ingest_port}/webhook/zoho/<integration uid>\n"
            f"  CIS       http://127.0.0.1:{cis_port}/FiskalizacijaServiceTest (sandbox)\n"
            f"  Zoho      http://127.0.0.1:{zoho_port}-{zoho_port + 3} (sandbox)\n"
            f"  mail      http://127.0.0.1:{mail_port + 1}  (what the portal sends, e.g. "
            "password reset links)\n"
            f"{listing(ports, workers)}"
            "Try `fiscobridge demo --invoices 100` in another terminal. Ctrl-C stops everything."
        )

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, supervisor.stop)
            await supervisor.run()

        asyncio.run(main())
    finally:
        devfile.remove(os.getpid())
        if broker is not None:
            broker.stop()
        click.echo("stopped")
