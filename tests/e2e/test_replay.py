"""`fiscobridge replay` and `fiscobridge dlq`, run as an operator runs them, against the
whole pipeline: replaying what was already fiscalized, twice, yields `duplicate`
statuses and not one more report to CIS (the sandbox's ledger is the witness); dead
letters keep the record's own headers, say why they failed, and go back when redriven."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from runtime.kafka.admin import admin_client
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.kafka.clients import producer as make_producer
from runtime.kafka.dlq import ERROR_MESSAGE, ERROR_TYPE, SOURCE, handled_marks
from sandbox.load import StatusWatcher, drive
from schemas.events import InvoiceState
from schemas.topics import INVOICES_RECEIVED, INVOICES_SIGNED
from tests.e2e.conftest import Pipeline, cli

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

REPLAY = "fiscobridge.replay"
ORIGINAL_HEADERS = [("traceparent", b"00-4bf92f3577b34da6-00f067aa0ba902b7-01"),
                    ("x-origin", b"e2e")]


def _counts(output: str, section: str) -> dict[str, int]:
    """The `name count` lines under `section:` in replay's summary."""
    lines = output.splitlines()
    start = lines.index(section) + 1
    found = {}
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        name, count = line.split()
        found[name] = int(count)
    return found


async def _records(pipeline: Pipeline, topic: str, since: dict[TopicPartition, int],
                   key: bytes, want: int, timeout: float = 60) -> list[ConsumerRecord]:
    """Records of `topic` keyed `key` after the offsets `since`, until `want` are found."""
    consumer = make_consumer(pipeline.kafka, group_id=None)
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while len(found) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [r for r in records if r.key == key]
    finally:
        await consumer.stop()
    return found


async def _ends(pipeline: Pipeline, topic: str) -> dict[TopicPartition, int]:
    consumer = make_consumer(pipeline.kafka, group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(await partitions_of(consumer, topic))
    finally:
        await consumer.stop()


async def test_replaying_a_thousand_fiscalized_invoices_twice_reports_none_again(
    pipeline: Pipeline,
) -> None:
    made = [await pipeline.integration() for _ in range(2)]
    uids = {m.uid for m in made}
    since = datetime.now(UTC)
    report = await drive(pipeline.kafka, pipeline.stack.ingest_url,
                         [(m.uid, m.webhook_secret) for m in made], 1000, timeout=300)
    assert report.states == {"fiscalized": 1000}, report.lines()
    until = datetime.now(UTC)
    invoices = {(s.integration_uid, s.invoice.source_id)
                for s in report.statuses if s.integration_uid in uids}
    assert len(invoices) == 1000
    window = ["--from", since.isoformat(), "--to", until.isoformat()]

    counted = await cli(pipeline, "replay", INVOICES_RECEIVED.name, *window, "--dry-run",
                        "--no-progress")
    by_integration = _counts(counted, "by integration:")
    assert by_integration == {m.uid: 500 for m in made}, counted
    assert _counts(counted, "by event type:") == {"InvoiceReceived": 1000}, counted
    assert "dry run: nothing sent" in counted
    one = await cli(pipeline, "replay", INVOICES_RECEIVED.name, *window, "--dry-run",
                    "--integration", made[0].uid, "--no-progress")
    assert _counts(one, "by integration:") == {made[0].uid: 500}, one

    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start()
    received_before = await _ends(pipeline, INVOICES_RECEIVED.name)
    try:
        started = time.monotonic()
        first = await cli(pipeline, "replay", INVOICES_RECEIVED.name, *window)  # with its bar
        second = await cli(pipeline, "replay", INVOICES_RECEIVED.name, *window, "--no-progress")
        print(f"\nreplay x2 of 1000 invoices: {time.monotonic() - started:.1f} s for both runs")
        assert "sent 1000" in first and "sent 1000" in second, (first, second)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            duplicates = [s for s in watcher.outcomes.all if s.integration_uid in uids
                          and s.state is InvoiceState.DUPLICATE]
            if len(duplicates) >= 2000:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # let any second signature or report show itself
    finally:
        await watcher.stop()
    mine = [s for s in watcher.outcomes.all if s.integration_uid in uids]
    states = Counter(s.state for s in mine)
    # Nothing signed, nothing reported: each replayed delivery is a duplicate, said once
    # per delivery or more (a fiscalizer that reads a partition again says it again).
    assert set(states) == {InvoiceState.DUPLICATE}, states
    per_invoice = Counter((s.integration_uid, s.invoice.source_id) for s in mine)
    assert set(per_invoice) == set(invoices) and min(per_invoice.values()) >= 2, per_invoice
    ledger = await pipeline.ledger({m.oib for m in made})
    keys = [(e["oib"], e["br_ozn_rac"]) for e in ledger]
    assert len(keys) == 1000 and len(set(keys)) == 1000
    # The replayed records kept their key (so their partition) and carry where they came from.
    replayed = await _records(pipeline, INVOICES_RECEIVED.name, received_before,
                              made[0].uid.encode(), 1000)
    assert len(replayed) == 1000
    assert all(dict(r.headers).get(REPLAY, b"").startswith(b"invoices.received/")
               for r in replayed)


async def test_dead_letters_keep_headers_say_why_and_go_back(pipeline: Pipeline) -> None:
    made = await pipeline.integration()
    key = made.uid.encode()
    garbage = b"<invoice>not json</invoice>\xfe"
    received_dlq = await _ends(pipeline, INVOICES_RECEIVED.dlq)
    signed_dlq = await _ends(pipeline, INVOICES_SIGNED.dlq)
    producer = make_producer(pipeline.kafka)
    await producer.start()
    try:
        for topic in (INVOICES_RECEIVED.name, INVOICES_SIGNED.name):
            await producer.send_and_wait(topic, garbage, key=key, headers=ORIGINAL_HEADERS)
    finally:
        await producer.stop()

    # Both the fiscalizer (faust) and the reporter keep the record's own headers. (Parking
    # is at least once: a fiscalizer restarted before its commit parks a record again, so
    # each letter of the record is checked and counted.)
    for topic, since in ((INVOICES_RECEIVED.dlq, received_dlq), (INVOICES_SIGNED.dlq, signed_dlq)):
        for letter in await _records(pipeline, topic, since, key, 1):
            assert letter.value == garbage
            assert list(letter.headers)[:2] == ORIGINAL_HEADERS, (topic, letter.headers)
            names = [k for k, _ in letter.headers]
            assert names.count(ERROR_TYPE) == names.count(ERROR_MESSAGE) == 1
            assert names.count(SOURCE) == 1

    shown = await cli(pipeline, "dlq", "show", INVOICES_RECEIVED.name, "--integration",
                      made.uid, "--json")
    items = [json.loads(line) for line in shown.splitlines()]
    assert items
    for item in items:
        assert item["integration"] == made.uid
        assert item["error_type"] and item["error"]
        assert item["source"].startswith("invoices.received/")
        assert item["headers"] == {"traceparent": ORIGINAL_HEADERS[0][1].decode(),
                                   "x-origin": "e2e"}
    listed = await cli(pipeline, "dlq", "list")
    assert INVOICES_RECEIVED.dlq in listed and item["error_type"] in listed, listed
    # One business's letters: what to tell it, and what a redrive for it would send.
    mine = await cli(pipeline, "dlq", "list", "--integration", made.uid)
    assert _open(mine, INVOICES_RECEIVED.dlq) >= len(items), mine
    assert _open(mine, INVOICES_SIGNED.dlq) >= 1 and item["error_type"] in mine, mine
    nobody = await cli(pipeline, "dlq", "list", "--integration", "no-such-integration")
    assert _open(nobody, INVOICES_RECEIVED.dlq) == _open(nobody, INVOICES_SIGNED.dlq) == 0

    counted = await cli(pipeline, "dlq", "redrive", INVOICES_RECEIVED.name, "--integration",
                        made.uid, "--dry-run", "--no-progress")
    assert _counts(counted, "by integration:") == {made.uid: len(items)}, counted
    assert _counts(counted, "by error (dead letters):") == {item["error_type"]: len(items)}, \
        counted
    # Back into its source: the fiscalizer reads it again, fails again, parks it again,
    # still with only the record's own headers, one set of error headers, and the replay mark.
    before = await _ends(pipeline, INVOICES_RECEIVED.dlq)
    await cli(pipeline, "dlq", "redrive", INVOICES_RECEIVED.name, "--integration", made.uid,
              "--no-progress")
    again = (await _records(pipeline, INVOICES_RECEIVED.dlq, before, key, 1))[0]
    headers = list(again.headers)
    assert headers[:2] == ORIGINAL_HEADERS, headers
    assert [k for k, _ in headers][2:] == [REPLAY, ERROR_TYPE, ERROR_MESSAGE, SOURCE], headers
    assert dict(headers)[REPLAY].startswith(f"{INVOICES_RECEIVED.dlq}/".encode())


def _open(listed: str, topic: str) -> int:
    """The open count `dlq list` prints for `topic`."""
    line = next(line for line in listed.splitlines() if line.startswith(f"{topic} "))
    count, word = line.split()[1:3]
    assert word == "open", line
    return int(count)


async def test_redriven_and_acknowledged_dead_letters_are_no_longer_open(
    pipeline: Pipeline,
) -> None:
    """`dlq list` and the DLQ gauge count what still needs a person: a redrive closes
    what it sent (a record that fails again is parked again, open), `dlq ack` closes
    the rest without sending it."""
    made = await pipeline.integration()
    key = made.uid.encode()
    topic = INVOICES_RECEIVED.dlq

    async def parked_since(since: dict[TopicPartition, int]) -> int:
        """This integration's letters parked after `since`, counted once no more arrive for
        3 s: parking is at least once (a fiscalizer that exits before its commit, as its
        stall watch makes it, parks the record again when it reads it again)."""
        found = await _records(pipeline, topic, since, key, 1)
        assert found, "nothing was parked"
        while len(more := await _records(pipeline, topic, since, key, len(found) + 1,
                                         timeout=3)) > len(found):
            found = more
        return len(found)

    async def park_one() -> int:
        since = await _ends(pipeline, topic)
        producer = make_producer(pipeline.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(INVOICES_RECEIVED.name, b"not json", key=key)
        finally:
            await producer.stop()
        return await parked_since(since)

    async def open_after_marks(closed: dict[TopicPartition, int], *flags: str) -> int:
        """`dlq list`'s open count, checked against the handled marks: every letter held
        before `closed` is closed, and the open ones are exactly those after the marks.
        Letters parked while it looks (parking is at least once: a fiscalizer that
        rewinds or restarts parks a record it already parked) are allowed for, once."""
        async with admin_client(pipeline.kafka) as admin:
            marks = {tp: o for tp, o in (await handled_marks(admin)).items() if tp.topic == topic}
        assert all(marks.get(tp, 0) >= end for tp, end in closed.items()), (marks, closed)

        async def after_marks() -> int:
            ends = await _ends(pipeline, topic)
            return sum(max(0, end - marks.get(tp, 0)) for tp, end in ends.items())

        low = await after_marks()
        listed = _open(await cli(pipeline, "dlq", "list", *flags), topic)
        high = await after_marks()
        assert low <= listed <= high, (low, listed, high)
        return listed

    await park_one()
    assert _open(await cli(pipeline, "dlq", "list"), topic) >= 1
    preview = await cli(pipeline, "dlq", "ack", INVOICES_RECEIVED.name)
    assert "add --yes" in preview and _open(await cli(pipeline, "dlq", "list"), topic) >= 1
    held = await _ends(pipeline, topic)
    acked = await cli(pipeline, "dlq", "ack", INVOICES_RECEIVED.name, "--yes")
    assert re.search(r"acknowledged [1-9]\d*; \d+ open$", acked.strip()), acked
    await open_after_marks(held, "--no-errors")  # none, unless one was parked again since

    parked = await park_one()
    assert await open_after_marks(held) >= parked
    before = await _ends(pipeline, topic)
    await cli(pipeline, "dlq", "redrive", INVOICES_RECEIVED.name, "--no-progress")
    # The garbage fails again and is parked again: those are open, the redriven ones not.
    again = await parked_since(before)
    assert again >= parked
    assert await open_after_marks(before) >= again
