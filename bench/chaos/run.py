"""The fault suite: invoices flow while the broker restarts, every service is SIGKILLed
once, CIS is unreachable for a while and then answers s006 to a share of requests.

Webhooks are sent as Zoho sends them, retried until ingest answers 202 (Zoho retries a
failed delivery); a third of the invoices also arrive as the poller publishes them
(`InvoiceReceived`, channel poll), so both channels deliver duplicates. The report
counts, from the records and the CIS sandbox's ledger: received, fiscalized, lost (no
final outcome; must be 0), signed twice (more than one first-attempt signature; must
be 0), reported twice (ledger entries of one invoice; bounded by the killed reporter's
in-flight window), late (reported as a subsequent delivery, NakDost) and written back
(fiscalized invoices whose fiscal number, ZKI, JIR and QR URL the Zoho sandbox shows in
their custom fields; waited for with the plan's timeout), with the write-back calls the
sandbox counted: one per invoice, one more for each invoice written early (number, ZKI
and zki= QR while CIS had not answered), and a repeat only for what was reported twice
or read again after a restart.

The invoices are real invoices of the integrations' Zoho sandbox organizations (created
in bulk before the clock starts); each webhook and poll copy carries the invoice as the
sandbox renders it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from aiokafka import ConsumerRecord

from bench.chaos.zoho import (
    ZohoIntegration,
    sandbox_handle,
    wait_written_back,
    webhooks_of_new_invoices,
    write_back_calls,
)
from connectors.zoho.webhook import parse_webhook
from fiscobridge.stack import LocalStack
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.kafka.clients import producer as make_producer
from runtime.settings import KafkaSettings
from sandbox.load import StatusWatcher, Webhook, post_webhook
from sandbox.poster import WebhookPoster
from schemas.events import (
    Channel,
    InvoiceReceived,
    InvoiceSigned,
    InvoiceState,
    WriteBackState,
    WriteBackStatus,
)
from schemas.topics import INVOICES_RECEIVED, INVOICES_SIGNED, INVOICES_WRITEBACK
from services.writeback.stage import ZKI_WRITTEN

KILLED = ("ingest", "fiscalizer", "reporter", "portal", "writeback")


@dataclass(frozen=True)
class Plan:
    invoices: int = 10_000
    rate: float = 40.0  # webhooks per second
    outage_seconds: float = 300.0  # CIS refuses connections
    s006_seconds: float = 60.0  # then answers s006 to this share of requests:
    s006_share: float = 0.3
    broker_down_seconds: float = 5.0
    timeout: float = 1800.0  # for the last outcomes after the faults

    @property
    def sending_seconds(self) -> float:
        return self.invoices / self.rate


@dataclass
class Report:
    plan: Plan
    received_webhooks: int = 0
    received_polls: int = 0
    webhook_retries: int = 0
    fiscalized: int = 0
    lost: int = 0
    other_outcomes: dict[str, int] = field(default_factory=dict)
    signed_twice: int = 0
    signed_twice_detail: list[str] = field(default_factory=list)
    reported_twice: int = 0
    late: int = 0
    written_back: int = 0
    write_back_calls: int = 0
    written_early: int = 0
    not_written_back: list[str] = field(default_factory=list)
    seconds: float = 0.0
    events: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [
            f"invoices           {self.plan.invoices} at {self.plan.rate:.0f}/s, "
            f"CIS outage {self.plan.outage_seconds:.0f} s, s006 {self.plan.s006_share:.0%} "
            f"for {self.plan.s006_seconds:.0f} s",
            f"received           {self.received_webhooks} webhooks "
            f"({self.webhook_retries} retried sends), {self.received_polls} polls",
            f"fiscalized         {self.fiscalized}"
            + (f"; other outcomes {self.other_outcomes}" if self.other_outcomes else ""),
            f"lost               {self.lost}",
            f"signed twice       {self.signed_twice}"
            + (f" ({'; '.join(self.signed_twice_detail[:5])})" if self.signed_twice else ""),
            f"reported twice     {self.reported_twice}",
            f"late (NakDost)     {self.late}",
            f"written back       {self.written_back} ({self.write_back_calls} write-back calls, "
            f"{self.written_early} of them early: zki= before the JIR)"
            + (f"; not: {'; '.join(self.not_written_back)}" if self.not_written_back else ""),
            f"took               {self.seconds:.1f} s",
            "faults: " + "; ".join(self.events),
        ]


async def _post_until_accepted(http: WebhookPoster, ingest_url: str, webhook: Webhook,
                               report: Report) -> None:
    """Zoho's side: a delivery that fails is sent again, until ingest answers 202."""
    delay = 0.5
    while await post_webhook(http, ingest_url, webhook) != 202:
        report.webhook_retries += 1
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def _publish_until_acked(kafka: KafkaSettings, events: asyncio.Queue[InvoiceReceived | None],
                               report: Report) -> None:
    """The poller's side: each polled invoice published, retried while the broker is away.
    A failed send gets a new producer: aiokafka's idempotent producer keeps the sequence
    numbers of the batches that failed, and a restarted broker then refuses every later
    batch of that partition as out of order (seen here: OutOfOrderSequenceException once
    a second, for minutes, after a broker restart)."""
    producer = None
    try:
        while (event := await events.get()) is not None:
            while True:
                try:
                    if producer is None:
                        producer = make_producer(kafka, request_timeout_ms=5000)
                        await producer.start()
                    await producer.send_and_wait(INVOICES_RECEIVED.name, event.to_json(),
                                                 key=event.key)
                    report.received_polls += 1
                    break
                except Exception:
                    if producer is not None:
                        with contextlib.suppress(Exception):
                            await producer.stop()
                    producer = None
                    await asyncio.sleep(1.0)
    finally:
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()


async def records_since(kafka: KafkaSettings, topic: str, since_ms: int, uids: set[str],
                         ) -> list[ConsumerRecord[bytes, bytes]]:
    """The records of `topic` keyed by one of `uids`, from `since_ms` to its current end."""
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        tps = await partitions_of(consumer, topic)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
        ends = await consumer.end_offsets(tps)
        todo = {tp: ends[tp] for tp in tps if starts.get(tp) and starts[tp].offset < ends[tp]}
        consumer.assign(list(todo))
        for tp in todo:
            consumer.seek(tp, starts[tp].offset)
        while todo:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                found += [r for r in records
                          if r.offset < todo[tp] and r.key and r.key.decode() in uids]
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
    finally:
        await consumer.stop()
    return found


async def _signed_first_attempts(kafka: KafkaSettings, since_ms: int, uids: set[str],
                                 ) -> dict[tuple[str, str], list[str]]:
    """Per invoice, its first-attempt signatures (the same message sent again after a
    kill is one signature): where each is and the number it drew."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for r in await records_since(kafka, INVOICES_SIGNED.name, since_ms, uids):
        signed = InvoiceSigned.from_json(r.value)
        if signed.attempt == 1:
            number = signed.fiscal_number.number if signed.fiscal_number else None
            found.setdefault((signed.integration_uid, signed.invoice.source_id), {}).setdefault(
                signed.message_id, f"{r.partition}/{r.offset} at {r.timestamp} n={number}")
    return {key: list(signatures.values()) for key, signatures in found.items()}


async def _written_early(kafka: KafkaSettings, since_ms: int, uids: set[str]) -> int:
    """Invoices whose fiscal number, ZKI and zki= QR were written before their JIR (CIS
    had not answered yet): each costs one write-back call more than the JIR's."""
    early = set()
    for r in await records_since(kafka, INVOICES_WRITEBACK.name, since_ms, uids):
        outcome = WriteBackStatus.from_json(r.value)
        if outcome.state is WriteBackState.WAITING and outcome.reason == ZKI_WRITTEN:
            early.add((outcome.integration_uid, outcome.source_id))
    return len(early)


async def run_chaos(
    stack: LocalStack,
    kafka: KafkaSettings,
    integrations: list[ZohoIntegration],
    restart_broker: Callable[[float], Awaitable[None]],
    plan: Plan,
) -> Report:
    """Drive `plan.invoices` through `stack` while the faults happen; the report."""
    report = Report(plan)
    async with httpx.AsyncClient(timeout=30) as http:
        webhooks = await webhooks_of_new_invoices(sandbox_handle(stack, http), integrations,
                                                  plan.invoices)
    since_ms = int(time.time() * 1000) - 1000
    watcher = StatusWatcher(kafka)
    await watcher.start(since_ms=since_ms)
    polls: asyncio.Queue[InvoiceReceived | None] = asyncio.Queue()
    poller = asyncio.create_task(_publish_until_acked(kafka, polls, report))
    started = time.monotonic()

    def note(what: str) -> None:
        report.events.append(f"{what} at {time.monotonic() - started:.0f} s")

    async def send_all() -> None:
        async with WebhookPoster() as http:
            tasks = []
            for n, webhook in enumerate(webhooks):
                delay = started + n / plan.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(
                    _post_until_accepted(http, stack.ingest_url, webhook, report)))
                if n % 3 == 0:  # also found by a poll
                    polls.put_nowait(InvoiceReceived(
                        integration_uid=webhook.uid, invoice=parse_webhook(webhook.body),
                        channel=Channel.POLL))
            await asyncio.gather(*tasks)
        polls.put_nowait(None)

    async def cis(**changes: object) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            (await http.post(f"{stack.cis_base_url}/_sandbox/faults", json=changes)
             ).raise_for_status()

    async def faults() -> None:
        d = plan.sending_seconds
        await asyncio.sleep(0.15 * d)
        note("broker restart")
        await restart_broker(plan.broker_down_seconds)
        for i, name in enumerate(KILLED):
            # As planned, but at least 2 s apart (the broker restart may run late).
            await asyncio.sleep(max(2.0, started + (0.3 + 0.08 * i) * d - time.monotonic()))
            note(f"{name} SIGKILL")
            stack.kill(name, signal.SIGKILL)
            await stack.wait_exit(name)
            await stack.start_service(name)
        await asyncio.sleep(max(0.0, started + 0.65 * d - time.monotonic()))
        note(f"CIS unreachable for {plan.outage_seconds:.0f} s")
        await cis(outage_seconds=plan.outage_seconds, outage_mode="refuse")
        await asyncio.sleep(plan.outage_seconds + 0.5)
        note(f"CIS s006 {plan.s006_share:.0%} for {plan.s006_seconds:.0f} s")
        await cis(s006=plan.s006_share)
        await asyncio.sleep(plan.s006_seconds)
        await cis(s006=0)
        note("faults over")

    try:
        await asyncio.gather(send_all(), faults())
        await poller
        report.received_webhooks = len(webhooks)
        wanted = {(w.uid, w.source_id) for w in webhooks}
        missing = await watcher.wait_for(wanted, plan.timeout)
        await asyncio.sleep(2)  # a second report or signature would show itself
    finally:
        poller.cancel()
        await watcher.stop()
    report.seconds = time.monotonic() - started
    report.lost = len(missing)
    outcomes = Counter(watcher.outcomes.final[k][0].state.value
                       for k in wanted if k in watcher.outcomes.final)
    report.fiscalized = outcomes.pop(InvoiceState.FISCALIZED.value, 0)
    report.other_outcomes = dict(outcomes)
    signed = await _signed_first_attempts(kafka, since_ms, {z.made.uid for z in integrations})
    twice = {k: v for k, v in signed.items() if len(v) > 1}
    report.signed_twice = len(twice)
    report.signed_twice_detail = [f"{k[1]}: {', '.join(v)}" for k, v in twice.items()]
    async with httpx.AsyncClient(timeout=30) as http:
        ledger = (await http.get(f"{stack.cis_base_url}/_sandbox/ledger")).json()
        zoho = sandbox_handle(stack, http)
        report.written_back, report.not_written_back = await wait_written_back(
            zoho, {z.made.uid: z.grant.organization_id for z in integrations},
            [watcher.outcomes.final[k][0] for k in wanted if k in watcher.outcomes.final
             and watcher.outcomes.final[k][0].state is InvoiceState.FISCALIZED],
            plan.timeout)
        report.write_back_calls = await write_back_calls(zoho)
    report.written_early = await _written_early(
        kafka, since_ms, {z.made.uid for z in integrations})
    oibs = {z.made.oib for z in integrations}
    mine = [e for e in ledger if e["oib"] in oibs]
    keys = [(e["oib"], e["br_ozn_rac"]) for e in mine]
    report.reported_twice = len(keys) - len(set(keys))
    report.late = len({(e["oib"], e["br_ozn_rac"]) for e in mine if e.get("nak_dost")})
    note("report")
    return report


def json_summary(report: Report) -> str:
    return json.dumps({k: v for k, v in report.__dict__.items() if k != "plan"})
