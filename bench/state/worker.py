"""One fiscalizer-shaped faust worker for bench/state: the fiscalizer's two tables with
its store options, started on a changelog filled beforehand; prints, as one JSON line,
how long recovery took and the resident memory once it is done, then exits.

    python -m bench.state.worker --store rocksdb:// --app-id X --datadir D --input T
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

STARTED = time.monotonic()

import faust  # noqa: E402  (the clock starts before faust's imports)

from runtime.settings import KafkaSettings  # noqa: E402
from schemas.topics import FISCALIZER_TABLES  # noqa: E402
from services.fiscalizer.app import _broker_urls, rocksdb_options  # noqa: E402


def rss_mib() -> tuple[float, float]:
    """Resident memory now and at its peak (VmRSS, VmHWM), MiB."""
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--datadir", required=True)
    parser.add_argument("--input", required=True)
    args = parser.parse_args()
    kafka = KafkaSettings()
    app = faust.App(
        args.app_id, broker=_broker_urls(kafka), store=args.store, datadir=args.datadir,
        topic_partitions=kafka.partitions, topic_replication_factor=1,
        consumer_auto_offset_reset="earliest", web_enabled=False,
        key_serializer="raw", value_serializer="raw", broker_session_timeout=10.0,
    )
    state_table, usage_table = FISCALIZER_TABLES[:2]
    states = app.Table(state_table, default=None, partitions=kafka.partitions,
                       options=rocksdb_options())
    app.Table(usage_table, default=int, partitions=kafka.partitions, options=rocksdb_options())

    @app.agent(app.topic(args.input), concurrency=1)
    async def idle(stream: Any) -> None:
        async for _ in stream:
            pass

    @app.task
    async def report() -> None:
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        # Three conditions of faust's, no one event for them: polled every 20 ms.
        def ready() -> bool:
            return bool(recovery.completed.is_set() and app.consumer.assignment()
                        and not app.rebalancing)

        while not ready():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        recovered = time.monotonic() - STARTED
        rss, peak = rss_mib()
        counted = time.monotonic()
        keys = sum(1 for _ in states.keys())
        print(json.dumps({
            "store": args.store, "recovery_seconds": round(recovered, 2),
            "rss_mib": round(rss, 1), "peak_rss_mib": round(peak, 1), "keys": keys,
            "count_seconds": round(time.monotonic() - counted, 2),
        }), flush=True)
        os._exit(0)  # what is measured is done; faust's orderly stop would only add time

    worker = faust.Worker(app, loglevel="WARNING", override_logging=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
