"""How much memory the fiscalizer's tables take and how long a restart takes to recover
them, for faust's memory:// against rocksdb:// store, with N invoice entries.

    python -m bench.state [--invoices 1000000] [--integrations 300] [--starts 2]

Fills the `invoice-state` changelog of a fresh app id with N fiscalized invoice entries,
exactly as the fiscalizer's table writes them (JSON key "uid:source id", JSON Entry with
the signed request CIS accepted, kept for same-day changes, on the partition of the
integration uid), then starts a fiscalizer-shaped faust worker
(bench/state/worker.py: the same two tables, the same RocksDB options) --starts times
per store on one data directory, and prints for each start the seconds from process
start to tables recovered and ready, and the resident memory then (and its peak).
memory:// reads the whole changelog at every start; rocksdb:// reads it once into its
files, then only what was written since. A local Kafka broker is started unless
KAFKA_BOOTSTRAP_SERVERS names one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runtime.kafka.admin import ensure_topics
from runtime.kafka.clients import producer as make_producer
from runtime.kafka.local import LocalKafka
from runtime.settings import KafkaSettings
from schemas.events import FiscalNumber
from schemas.topics import Topic, table_changelogs
from services.fiscalizer.retention import partition_of
from services.fiscalizer.rules import Entry, Phase


def signed_request() -> str:
    """A signed RacunZahtjev as the reporter passes it to the fiscalizer with a fiscalized
    status (kept in the entry for same-day changes): one real signature, made once."""
    from fiscal.hr_cis.authority import HrCisAuthority
    from fiscal.hr_cis.certificate import load_certificate
    from fiscal.hr_cis.oib import oib_check_digit
    from fiscal.hr_cis.settings import FiscalSettings
    from sandbox.cis.ca import TestCA
    from schemas.events import FiscalNumber
    from tests.factories import make_invoice

    stem = "1234567890"
    oib = stem + str(oib_check_digit(stem))
    with tempfile.TemporaryDirectory() as ca_dir:
        pfx = TestCA.load_or_create(Path(ca_dir)).issue_pfx(oib, "bench")
    settings = FiscalSettings(oib=oib, premises_code="POSL1", device_code="1", operator_oib=oib)
    number = FiscalNumber(number=1, premises="POSL1", device="1", year=2026)
    submission = HrCisAuthority().prepare(
        make_invoice(), settings, load_certificate(pfx, "bench", expected_oib=oib),
        number=number, subsequent_delivery=False, now=datetime.now(UTC))
    return submission.document.decode()


_SIGNATURE = re.compile(r"(<ds:SignatureValue>)([^<]+)(<)")


def entry(n: int, at: datetime, document: str) -> bytes:
    """Invoice `n`'s fiscalized entry, as the fiscalizer's table writes it: `document` with
    this invoice's own signature value (each invoice's is different, as in life)."""
    signature = base64.b64encode(random.randbytes(256)).decode()
    fiscalized = _SIGNATURE.sub(lambda m: m.group(1) + signature + m.group(3), document, 1)
    return json.dumps(Entry(
        Phase.FISCALIZED, at.isoformat(), 1, at, str(uuid.UUID(int=n)),
        number=FiscalNumber(number=n + 1, premises="P1", device="1", year=at.year),
        issued_at=at, fiscalized=fiscalized,
    ).to_json()).encode()


async def fill(kafka: KafkaSettings, changelog: str, invoices: int, uids: list[str]) -> float:
    """Write the entries; seconds it took."""
    producer = make_producer(kafka, linger_ms=50, max_batch_size=512 * 1024,
                             compression_type=None)
    await producer.start()
    started = time.monotonic()
    at = datetime.now(UTC) - timedelta(days=1)
    document = signed_request()
    try:
        pending = []
        for n in range(invoices):
            uid = uids[n % len(uids)]
            key = json.dumps(f"{uid}:{460000000000000000 + n}").encode()
            pending.append(await producer.send(
                changelog, entry(n, at, document), key=key,
                partition=partition_of(uid, kafka.partitions)))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


def start(store: str, app_id: str, datadir: Path, topic: str, env: dict[str, str]) -> dict:
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "bench.state.worker", "--store", store, "--app-id", app_id,
         "--datadir", str(datadir), "--input", topic],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=1800)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"worker failed ({out.returncode}): {out.stderr[-3000:]}")
    result: dict = json.loads(lines[-1])
    result["wall_seconds"] = round(time.monotonic() - began, 2)
    return result


async def run(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="fiscobridge-bench-state-"))
    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = LocalKafka(home / "kafka", port=0, die_with_parent=True)
        broker.start()
        bootstrap = broker.bootstrap
    try:
        kafka = KafkaSettings(bootstrap_servers=bootstrap)
        run_id = uuid.uuid4().hex[:8]
        app_id = f"bench-state-{run_id}"
        topic = f"bench-state-{run_id}.input"
        report = await ensure_topics(kafka, [
            Topic(topic, None, kafka.partitions), *table_changelogs(app_id, kafka.partitions)])
        assert report.ok, report.summary()
        changelog = f"{app_id}-invoice-state-changelog"
        uids = [uuid.uuid4().hex for _ in range(args.integrations)]
        filled = await fill(kafka, changelog, args.invoices, uids)
        print(f"state benchmark: {args.invoices} invoice entries over {args.integrations} "
              f"integrations, {kafka.partitions} partitions, {os.cpu_count()} cores; "
              f"changelog filled in {filled:.1f} s")
        env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "FISCOBRIDGE_HOME": str(home)}
        for store in ("memory://", "rocksdb://"):
            datadir = home / store.rstrip(":/")
            for n in range(1, args.starts + 1):
                r = start(store, app_id, datadir, topic, env)
                what = "first start" if n == 1 else "restart"
                print(f"  {store:<11} {what:<11} ready after {r['recovery_seconds']:7.2f} s "
                      f"(process {r['wall_seconds']:.2f} s)  RSS {r['rss_mib']:7.1f} MiB "
                      f"(peak {r['peak_rss_mib']:.1f})  {r['keys']} entries"
                      f" (counted in {r['count_seconds']:.1f} s)")
        size = sum(p.stat().st_size for p in (home / "rocksdb").rglob("*") if p.is_file())
        print(f"  rocksdb files on disk: {size / 2**20:.0f} MiB")
    finally:
        if broker is not None:
            broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--integrations", type=int, default=300)
    parser.add_argument("--starts", type=int, default=2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
