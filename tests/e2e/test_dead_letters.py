"""A record a service cannot process goes to `<topic>.dlq`, byte for byte with the reason
in its headers, and the records after it on its partition are still processed and
committed: one bad record never stalls a business's invoices."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from fiscobridge.provision import DemoIntegration
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.kafka.clients import producer as make_producer
from runtime.kafka.dlq import ERROR_MESSAGE, ERROR_TYPE, SOURCE
from sandbox.load import StatusWatcher, send_webhook, zoho_invoice
from sandbox.poster import WebhookPoster
from schemas.events import InvoiceSigned, InvoiceState
from schemas.topics import INVOICES_RECEIVED, INVOICES_SIGNED
from tests.e2e.conftest import Pipeline
from tests.factories import make_invoice

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

VALID_AFTER = 5


async def _produce(
    pipeline: Pipeline, topic: str, key: bytes, values: list[bytes]
) -> tuple[int, list[int]]:
    """Publish the values in order with one key (so on one partition): partition, offsets."""
    producer = make_producer(pipeline.kafka)
    await producer.start()
    try:
        metas = [await producer.send_and_wait(topic, v, key=key) for v in values]
    finally:
        await producer.stop()
    (partition,) = {m.partition for m in metas}
    return partition, [m.offset for m in metas]


async def _ends(pipeline: Pipeline, topic: str) -> dict[TopicPartition, int]:
    consumer = make_consumer(pipeline.kafka, group_id=None)
    await consumer.start()
    try:
        return await consumer.end_offsets(await partitions_of(consumer, topic))
    finally:
        await consumer.stop()


async def _dead_letters(
    pipeline: Pipeline, since: dict[TopicPartition, int], sources: set[str], timeout: float = 60,
) -> dict[str, ConsumerRecord]:
    """Dead letters after the offsets `since` whose source header is in `sources`."""
    found: dict[str, ConsumerRecord] = {}
    consumer = make_consumer(pipeline.kafka, group_id=None)
    await consumer.start()
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while found.keys() != sources and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    source = dict(record.headers).get(SOURCE, b"").decode()
                    if source in sources:
                        found[source] = record
    finally:
        await consumer.stop()
    return found


async def _committed_past(
    pipeline: Pipeline, group: str, tp: TopicPartition, offset: int, timeout: float = 60
) -> int | None:
    """Wait until the group's committed offset on `tp` is beyond `offset`; the last seen."""
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.kafka.bootstrap_servers)
    await admin.start()
    committed = None
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
            meta = offsets.get(tp)
            committed = meta.offset if meta is not None else None
            if committed is not None and committed > offset:
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    return committed


async def _fiscalize_after(pipeline: Pipeline, made: DemoIntegration, run: int) -> None:
    """Send VALID_AFTER webhooks for the integration; each must end fiscalized."""
    watcher = StatusWatcher(pipeline.kafka)
    await watcher.start()
    try:
        expected = set()
        async with WebhookPoster() as http:
            for n in range(1, VALID_AFTER + 1):
                payload = zoho_invoice(n, run=run)
                expected.add((made.uid, payload["invoice"]["invoice_id"]))  # type: ignore[index]
                status = await send_webhook(
                    http, pipeline.stack.ingest_url, made.uid, made.webhook_secret, payload
                )
                assert status == 202
        assert await watcher.wait_for(expected, timeout=120) == set()
        states = {watcher.outcomes.final[k][0].state for k in expected}
        assert states == {InvoiceState.FISCALIZED}
    finally:
        await watcher.stop()


def _assert_dead_letter(
    record: ConsumerRecord, key: bytes, value: bytes, error_type: str | None = None
) -> None:
    headers = dict(record.headers)
    assert record.key == key and record.value == value
    assert headers[ERROR_TYPE] and headers[ERROR_MESSAGE]
    if error_type is not None:
        assert headers[ERROR_TYPE].decode() == error_type


async def test_reporter_parks_bad_records_and_its_partition_moves_on(pipeline: Pipeline) -> None:
    made = await pipeline.integration()
    key = made.uid.encode()
    garbage = b"\x00\xffnot json at all {"
    # Decodes as an InvoiceSigned, but its document is no XML: submitting it raises.
    unsendable = InvoiceSigned(
        integration_uid=made.uid,
        invoice=make_invoice(source_id=str(uuid.uuid4().int)[:18]),
        profile="hr-cis",
        message_id=str(uuid.uuid4()),
        protection_code="0" * 32,
        document="this is not a signed RacunZahtjev",
    ).to_json()
    since = await _ends(pipeline, INVOICES_SIGNED.dlq)
    partition, offsets = await _produce(pipeline, INVOICES_SIGNED.name, key,
                                        [garbage, unsendable])
    sources = {f"{INVOICES_SIGNED.name}/{partition}/{o}" for o in offsets}

    await _fiscalize_after(pipeline, made, run=881)

    found = await _dead_letters(pipeline, since, sources)
    assert found.keys() == sources
    _assert_dead_letter(found[f"{INVOICES_SIGNED.name}/{partition}/{offsets[0]}"], key, garbage)
    _assert_dead_letter(found[f"{INVOICES_SIGNED.name}/{partition}/{offsets[1]}"], key,
                        unsendable, "ValueError")
    group = pipeline.stack.extra_env["FISCOBRIDGE_REPORTER_GROUP_ID"]
    tp = TopicPartition(INVOICES_SIGNED.name, partition)
    committed = await _committed_past(pipeline, group, tp, offsets[-1] + VALID_AFTER)
    assert committed is not None and committed > offsets[-1] + VALID_AFTER, committed


async def test_fiscalizer_parks_garbage_and_its_partition_moves_on(pipeline: Pipeline) -> None:
    made = await pipeline.integration()
    key = made.uid.encode()
    garbage = b"<invoice>not json</invoice>\xfe"
    since = await _ends(pipeline, INVOICES_RECEIVED.dlq)
    partition, (offset,) = await _produce(pipeline, INVOICES_RECEIVED.name, key, [garbage])
    source = f"{INVOICES_RECEIVED.name}/{partition}/{offset}"

    await _fiscalize_after(pipeline, made, run=882)

    found = await _dead_letters(pipeline, since, {source})
    assert found.keys() == {source}
    _assert_dead_letter(found[source], key, garbage)
    group = pipeline.stack.extra_env["FISCOBRIDGE_FISCALIZER_APP_ID"]
    tp = TopicPartition(INVOICES_RECEIVED.name, partition)
    committed = await _committed_past(pipeline, group, tp, offset + VALID_AFTER)
    assert committed is not None and committed > offset + VALID_AFTER, committed


async def test_reporter_readyz_answers_200_with_the_broker_up(pipeline: Pipeline) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{pipeline.stack.ops_url('reporter')}/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"kafka": True}}
