"""How many invoices per second the whole pipeline fiscalizes on this machine, and how
long one takes from webhook to JIR.

    python -m bench.pipeline [--invoices N] [--rate R] [--latency-ms 50] [--integrations 3]
                             [--workers N] [--reporter-concurrency C]

Starts its own stack, everything on this machine: a local Kafka broker (or the one
KAFKA_BOOTSTRAP_SERVERS names), the topics, a SQLite store, the CIS sandbox answering
after --latency-ms, and ingest, fiscalizer, reporter and portal as separate processes.
Then two runs:
  * flat out: N signed webhooks as fast as ingest takes them -> invoices/s fiscalized;
  * paced:    N webhooks at --rate per second -> webhook->fiscalized latency p50/95/99,
              and how much of it the fiscalizer and the reporter took (stages.py).
Baseline, in the same command: the profile's signing loop alone on one core, the
pipeline's most expensive step; the ratio says how much of that the whole pipeline
(four more processes and the sandbox, on the same two cores) keeps.

--workers N: the flat-out run is repeated with 1, 2, ... N fiscalizers and reporters
(each added instance joins its group and takes a share of the partitions), and the
scaling is printed; the paced run uses all N. --reporter-concurrency caps each
reporter's submissions in flight, so with a slow CIS (--latency-ms 500) the reporters,
not the CPU, are the bound and the scaling shows what another reporter adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.pipeline.stages import gap_lines, stage_gaps
from fiscobridge.provision import demo_integration
from fiscobridge.stack import LocalStack, cpu_seconds_of
from runtime.eventloop import use_uvloop
from runtime.heap import freeze_live_objects
from runtime.kafka.admin import ensure_topics
from runtime.kafka.local import LocalKafka
from runtime.settings import KafkaSettings
from runtime.store.store import Store
from runtime.vault import Vault, new_key, parse_keys
from sandbox.load import LoadReport, drive, percentiles
from schemas.topics import registry


def signing_rate(seconds: float = 3.0) -> float:
    """Invoices per second HrCisProfile.sign manages on one core, the pipeline's ceiling."""
    import json

    from connectors.zoho.webhook import parse_webhook
    from fiscal.hr_cis.certificate import load_certificate
    from fiscal.hr_cis.profile import HrCisProfile
    from fiscal.hr_cis.settings import FiscalSettings
    from fiscobridge.provision import random_oib
    from sandbox.cis.ca import TestCA
    from sandbox.load import zoho_invoice
    from schemas.events import FiscalNumber

    oib = random_oib()
    pfx = TestCA.create().issue_pfx(oib, "bench")
    certificate = load_certificate(pfx, "bench", expected_oib=oib)
    settings = FiscalSettings(oib=oib, premises_code="B1", device_code="1", operator_oib=oib)
    invoice = parse_webhook(json.dumps(zoho_invoice(1)).encode())
    profile = HrCisProfile()
    number = FiscalNumber(number=1, premises="B1", device="1", year=2026)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        profile.sign(invoice, settings, certificate, now=datetime.now(UTC), number=number)
        done += 1
    return done / (time.perf_counter() - started)


async def run(args: argparse.Namespace) -> None:
    baseline = signing_rate()
    home = Path(tempfile.mkdtemp(prefix="fiscobridge-bench-"))
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalKafka(home / "kafka", port=0, die_with_parent=True)
        broker.start()
        bootstrap = broker.bootstrap
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    report = await ensure_topics(kafka, registry(kafka.partitions))
    assert report.ok, report.summary()
    key = new_key()
    store = Store.open(
        f"sqlite+aiosqlite:///{home / 'fiscobridge.db'}", vault=Vault(parse_keys(key))
    )
    await store.migrate()
    extra_env = {}
    if args.reporter_concurrency:
        extra_env["FISCOBRIDGE_REPORTER_CONCURRENCY"] = str(args.reporter_concurrency)
    stack = LocalStack(home=home, kafka_bootstrap=bootstrap, master_key=key,
                       cis_latency_ms=args.latency_ms, extra_env=extra_env)
    await stack.start()
    try:
        made = [await demo_integration(store, kafka, home / "sandbox-ca")
                for _ in range(args.integrations)]
        targets = [(m.uid, m.webhook_secret) for m in made]
        # Warm-up: connections, JIT-less caches, the fiscalizer's certificate cache.
        await drive(kafka, stack.ingest_url, targets, 50, timeout=120)
        # This process measures the latency: its own full collections (100-180 ms, over
        # everything it imported) must not add to it.
        freeze_live_objects()
        broker_pid = broker.status().pid if broker is not None else None

        def cpu_seconds() -> dict[str, float]:
            used = {**stack.cpu_seconds(), "driver (this process)": time.process_time()}
            if broker_pid:
                used["kafka broker"] = cpu_seconds_of(broker_pid) or 0.0
            return used

        scaling: list[tuple[int, LoadReport]] = []
        for workers in range(1, args.workers + 1):
            if workers > 1:  # one more of each; both groups rebalance before the run
                names = [f"fiscalizer-{workers}", f"reporter-{workers}"]
                for name in names:
                    await stack.start_service(name)
                for name in names:
                    await stack.wait_ready(name)
                await drive(kafka, stack.ingest_url, targets, 50, timeout=120)
                freeze_live_objects()
            before = cpu_seconds()
            flat = await drive(kafka, stack.ingest_url, targets, args.invoices,
                               concurrency=args.concurrency, timeout=900)
            cpu = _spent(before, cpu_seconds())
            scaling.append((workers, flat))
        freeze_live_objects()
        paced_since = int(time.time() * 1000)
        before = cpu_seconds()
        paced = await drive(kafka, stack.ingest_url, targets, args.invoices,
                            rate=args.rate, concurrency=args.concurrency, timeout=600)
        paced_cpu = _spent(before, cpu_seconds())
        gaps = await stage_gaps(kafka, paced_since)
    finally:
        await stack.stop()
        await store.close()
        if broker is not None:
            broker.stop()
    print(f"pipeline benchmark: {args.invoices} invoices, {args.integrations} integrations, "
          f"CIS latency {args.latency_ms} ms, {os.cpu_count()} cores, "
          f"{args.workers} fiscalizer(s) and reporter(s)"
          + (f", reporter concurrency {args.reporter_concurrency}"
             if args.reporter_concurrency else ""))
    print(f"baseline: profile signing alone   {baseline:8.1f} invoices/s (one core)")
    if len(scaling) > 1:
        one = scaling[0][1].throughput
        print("scaling, flat out (fiscalizers = reporters = workers):")
        for workers, run_ in scaling:
            p50 = percentiles(run_.latencies)[50]
            print(f"  {workers} worker(s)  {run_.throughput:7.1f} invoices/s  "
                  f"x{run_.throughput / one:.2f}  p50 {p50 * 1000:.0f} ms  "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(run_.states.items()))})")
    print(f"flat out ({args.workers} worker(s)):")
    for line in flat.lines():
        print("  " + line)
    print(f"  ratio to the signing baseline {flat.throughput / baseline:.2f}")
    _print_cpu("flat out", cpu, flat)
    print(f"paced at {args.rate:.0f}/s:")
    for line in paced.lines():
        print("  " + line)
    _print_cpu(f"at {args.rate:.0f}/s", paced_cpu, paced)
    print("  of which, between the records of each invoice:")
    for line in gap_lines(gaps):
        print("    " + line)


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: used - before.get(name, 0.0) for name, used in after.items()}


def _print_cpu(label: str, cpu: dict[str, float], report: LoadReport) -> None:
    """CPU per invoice by process, and how much of the machine's cores they kept busy:
    near 100% the pipeline is CPU-bound, well below it something else holds it back."""
    invoices = max(1, report.accepted)
    print(f"  CPU per invoice {label} (ms):")
    for name, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"    {name:24s} {1000 * seconds / invoices:6.2f}")
    total = sum(cpu.values())
    cores = os.cpu_count() or 1
    print(f"    {'all':24s} {1000 * total / invoices:6.2f}"
          f"   ({100 * total / (report.seconds * cores):.0f}% of {cores} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--integrations", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1,
                        help="measure flat out with 1..N fiscalizers and reporters")
    parser.add_argument("--reporter-concurrency", type=int, default=None,
                        help="each reporter's submissions in flight (default: its setting)")
    # The driver shares the two cores with what it measures: as light as the services.
    use_uvloop()
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
