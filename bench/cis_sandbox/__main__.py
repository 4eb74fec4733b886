"""Requests per second the sandbox CIS answers for valid signed invoices.

    python -m bench.cis_sandbox [--requests N] [--concurrency C]

Starts `fiscobridge sandbox cis` in a process of its own (as the pipeline benchmark
runs it), signs N distinct invoices beforehand so signing is not measured, then
posts them over keep-alive connections, C at a time, and checks every one got a
JIR and is in the ledger once. Prints the rate, latency percentiles and the
sandbox's CPU time per request (its capacity per core, whatever the client costs).

The CPU of each signature step alone (the sandbox checking a request and signing its
answer, the reporter verifying that answer), old code against new: bench.cis_sandbox.micro.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from fiscal.hr_cis.certificate import load_certificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import RACUNI_ACTION, racuni_envelope
from sandbox.cis.ca import TestCA
from schemas.events import FiscalNumber
from schemas.invoice import Customer, Invoice, InvoiceLine, PaymentMethod, SourceStatus, TaxLine

OIB, OPERATOR = "69435151530", "47721904125"


def fiscal_number(number: int) -> FiscalNumber:
    return FiscalNumber(number=number, premises="POSL1", device="1", year=2026)


def invoice(number: int) -> Invoice:
    issued = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    return Invoice(
        source="zoho_books",
        source_id=str(460000000000000000 + number),
        number=f"INV-{number:06d}",
        issued_at=issued,
        currency="EUR",
        customer=Customer(name="Kavana Trg d.o.o."),
        lines=(
            InvoiceLine(
                description="Espresso blend 1 kg",
                quantity=Decimal(3),
                unit_price=Decimal("18.90"),
                tax_rate=Decimal(25),
                amount=Decimal("56.70"),
            ),
        ),
        taxes=(TaxLine(rate=Decimal(25), base=Decimal("56.70"), amount=Decimal("14.18")),),
        subtotal=Decimal("56.70"),
        tax_total=Decimal("14.18"),
        total=Decimal("70.88"),
        payment_method=PaymentMethod.CARD,
        status=SourceStatus.SENT,
        last_modified_at=issued,
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_sandbox(home: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fiscobridge", "sandbox", "cis", "--port", "0"],
        env={**os.environ, "FISCOBRIDGE_HOME": str(home)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("CIS sandbox: "):
        process.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return process, line.removeprefix("CIS sandbox: ").strip()


async def post_all(url: str, bodies: list[bytes], concurrency: int) -> list[float]:
    latencies: list[float] = []
    queue = iter(bodies)
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": RACUNI_ACTION}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            for body in queue:
                started = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200 or b"<tns:Jir>" not in response.content:
                    raise SystemExit(f"not accepted ({response.status_code}): {response.text}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        ca = TestCA.load_or_create(Path(home) / "sandbox-ca")
        certificate = load_certificate(ca.issue_pfx(OIB, "bench"), "bench")
        settings = FiscalSettings(
            oib=OIB, premises_code="POSL1", device_code="1", operator_oib=OPERATOR
        )
        profile = HrCisProfile()
        bodies = [
            racuni_envelope(profile.sign(invoice(n), settings, certificate,
                                         number=fiscal_number(n)).document)
            for n in range(1, args.requests + 1)
        ]
        process, url = start_sandbox(Path(home))
        try:
            base = url.rsplit("/", 1)[0]
            # Warm up connections and code paths, then count from a clean ledger.
            asyncio.run(post_all(url, bodies[: args.concurrency], args.concurrency))
            httpx.delete(base + "/_sandbox/ledger")
            cpu_before = cpu_seconds(process.pid)
            started = time.perf_counter()
            latencies = asyncio.run(post_all(url, bodies, args.concurrency))
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(process.pid) - cpu_before
            ledger = httpx.get(base + "/_sandbox/ledger", timeout=30).json()
        finally:
            process.terminate()
            process.wait(10)

    assert len(ledger) == args.requests, f"ledger has {len(ledger)} of {args.requests}"
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        f"{args.requests} valid signed invoices, concurrency {args.concurrency}, "
        f"{os.cpu_count()} cores"
    )
    print(f"  throughput: {args.requests / elapsed:.0f} req/s ({elapsed:.2f} s)")
    print(
        f"  latency ms: p50 {quantiles[49] * 1000:.1f}  p95 {quantiles[94] * 1000:.1f}"
        f"  p99 {quantiles[98] * 1000:.1f}"
    )
    print(
        f"  sandbox CPU: {cpu / args.requests * 1000:.2f} ms/request"
        f" (= {args.requests / cpu:.0f} req/s per core)"
    )


if __name__ == "__main__":
    main()
