"""SIGTERM drains: while webhooks flow, the reporter, then the fiscalizer, then ingest
get SIGTERM (not SIGKILL), exit 0, and are started again; every webhook Zoho delivered
is fiscalized exactly once. Unlike a SIGKILL, a graceful stop leaves no duplicate: each
service finished what it had in flight and committed before it exited."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter

import pytest

from sandbox.load import StatusWatcher, send_webhook, zoho_invoice
from sandbox.poster import WebhookPoster
from schemas.events import InvoiceState
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

RATE = 30.0  # webhooks a second, steady, for as long as the restarts take
EXIT_BOUND = 60.0  # seconds from SIGTERM to exit, drain included
# A restarted fiscalizer may wait for the broker to hand its partitions back.
READY_TIMEOUT = 240.0
RETRY_SECONDS = 0.5  # Zoho retries a refused webhook; sooner here, to keep the test short


class SteadyWebhooks:
    """Sends signed webhooks at `RATE` until stopped; a refused one (503, no answer while
    ingest restarts) is sent again until accepted, as Zoho does."""

    def __init__(self, pipeline: Pipeline, uid: str, secret: str) -> None:
        self.url = pipeline.stack.ingest_url
        self.uid, self.secret = uid, secret
        self.run = random.randrange(1, 10**11)
        self.accepted: set[tuple[str, str]] = set()
        self.sent = 0
        self.refused: Counter[int] = Counter()
        self._stop = asyncio.Event()
        self._give_up = float("inf")  # retries end this long after stop()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self, timeout: float = 120.0) -> None:
        self._give_up = time.monotonic() + timeout / 2
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, timeout)

    async def _run(self) -> None:
        slots = asyncio.Semaphore(32)
        tasks = []
        async with WebhookPoster() as http:

            async def one(n: int) -> None:
                payload = zoho_invoice(n, run=self.run)
                key = (self.uid, str(payload["invoice"]["invoice_id"]))  # type: ignore[index]
                while time.monotonic() < self._give_up:
                    async with slots:
                        code = await send_webhook(http, self.url, self.uid, self.secret,
                                                  payload)
                    if code == 202:
                        self.accepted.add(key)
                        return
                    self.refused[code] += 1
                    await asyncio.sleep(RETRY_SECONDS)

            started = time.monotonic()
            while not self._stop.is_set():
                self.sent += 1
                tasks.append(asyncio.create_task(one(self.sent)))
                delay = started + self.sent / RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await asyncio.gather(*tasks)


@pytest.mark.timeout(1200)
async def test_sigterm_drains_reporter_fiscalizer_and_ingest_without_duplicates(
    pipeline: Pipeline,
) -> None:
    made = await pipeline.integration()
    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    load = SteadyWebhooks(pipeline, made.uid, made.webhook_secret)
    load.start()
    exits: dict[str, tuple[int, float]] = {}
    try:
        for name in ("reporter", "fiscalizer", "ingest"):
            await asyncio.sleep(3)  # work in flight everywhere when the signal comes
            assert load.accepted, "no webhook accepted yet"
            signalled = time.monotonic()
            pipeline.stack.kill(name, signal.SIGTERM)
            code = await pipeline.stack.wait_exit(name, timeout=EXIT_BOUND)
            exits[name] = (code, time.monotonic() - signalled)
            await pipeline.stack.start_service(name)
            await pipeline.stack.wait_ready(name, timeout=READY_TIMEOUT)
        await asyncio.sleep(3)  # the restarted ingest takes webhooks too
    finally:
        await load.stop()
    try:
        missing = await watcher.wait_for(load.accepted, timeout=READY_TIMEOUT)
        await asyncio.sleep(2)  # let any second fiscalization show itself
    finally:
        await watcher.stop()
    print(f"\nSIGTERM drain: {load.sent} webhooks, refused meanwhile {dict(load.refused)}; "
          + ", ".join(f"{n} exited {c} in {s:.1f}s" for n, (c, s) in exits.items()))

    assert exits.keys() == {"reporter", "fiscalizer", "ingest"}
    assert {n: c for n, (c, _) in exits.items()} == {"reporter": 0, "fiscalizer": 0, "ingest": 0}
    assert len(load.accepted) == load.sent  # every webhook got in, retried if refused
    assert missing == set(), f"{len(missing)} of {load.sent} without a final state"
    finals = Counter(s.state for s, _ in watcher.outcomes.final.values()
                     if s.integration_uid == made.uid)
    assert finals == {InvoiceState.FISCALIZED: load.sent}
    fiscalized = Counter((s.integration_uid, s.invoice.source_id) for s in watcher.outcomes.all
                         if s.integration_uid == made.uid and s.state is InvoiceState.FISCALIZED)
    assert fiscalized.keys() == load.accepted and set(fiscalized.values()) == {1}
    keys = [(e["oib"], e["br_ozn_rac"]) for e in await pipeline.ledger({made.oib})]
    assert len(set(keys)) == load.sent
    assert len(keys) == load.sent, f"{len(keys) - len(set(keys))} reported to CIS twice"
