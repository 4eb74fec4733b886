"""The write-back stage against the real broker, the store and the Zoho Books sandbox's
real HTTP API: fiscalized statuses in, fiscal fields on the sandbox's invoices and
outcomes on the write-back topic out, dead letters for what is no status, and offsets
committed only past what was processed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from pydantic import SecretStr

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.kafka.clients import producer as make_producer
from runtime.kafka.dlq import ERROR_TYPE
from runtime.settings import KafkaSettings, ZohoClientSettings
from runtime.store import Store
from runtime.store.rebuild import publish_and_apply
from runtime.writeback_mapping import set_mapping
from schemas.events import (
    IntegrationEvent,
    IntegrationEventKind,
    InvoiceRef,
    InvoiceState,
    InvoiceStatus,
    WriteBackState,
    WriteBackStatus,
)
from schemas.invoice import DocumentKind
from services.writeback.service import WriteBack
from services.writeback.sessions import ZohoSessions
from services.writeback.settings import WriteBackSettings
from services.writeback.stage import (
    NO_CREDIT_NOTE_MAPPING,
    NO_MAPPING,
    ZKI_WRITTEN,
    Backoff,
    WriteBackStage,
)
from tests.e2e.zoho_helpers import read_topic, store_connection, zoho_grant
from tests.fixtures.certs import Pfx
from tests.fixtures.kafka import MakeTopic
from tests.fixtures.zoho import ZohoSandboxHandle

pytestmark = pytest.mark.kafka
SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
FAST = {"per_minute": 100_000, "daily": 1_000_000}
ISSUED = datetime(2026, 12, 2, 9, 41, 7, tzinfo=UTC)  # 10:41 in Zagreb


def fiscalized(uid: str, source_id: str, number: str, n: int, *, total: str = "12.38",
               kind: DocumentKind = DocumentKind.INVOICE) -> InvoiceStatus:
    return InvoiceStatus(
        integration_uid=uid, state=InvoiceState.FISCALIZED, reason_code="ok", message="",
        invoice=InvoiceRef(source_id=source_id, number=number, version="v1", kind=kind,
                           total=Decimal(total), issued_at=ISSUED),
        receipt_id=f"00000000-0000-4000-8000-{n:012d}", protection_code=f"{n:032x}",
        fiscal_number=f"{n}/POSL1/1",
    )


async def until(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.2)


@SQLITE
async def test_fiscalized_invoices_get_their_fiscal_fields_in_zoho(
    store: Store, kafka_settings: KafkaSettings, make_topic: MakeTopic,
    zoho_sandbox: ZohoSandboxHandle, demo_pfx: Pfx, demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    client = await zoho_sandbox.oauth_client()
    account, _ = await store.accounts.ensure("owner@obrt.hr")

    async def integration() -> tuple[str, str]:
        grant = await zoho_grant(zoho_sandbox, client, limits=FAST)
        created = await store.integrations.create(
            account_id=account.account_id, fiscal_settings=fiscal_settings,
            pfx=demo_pfx.data, password=demo_pfx.password, certificate=demo_certificate,
            tier="scale",
        )
        uid = created.record.uid
        await store_connection(store, uid, grant)
        await store.apply([IntegrationEvent(integration_uid=uid,
                                            kind=IntegrationEventKind.CONNECTED)])
        return uid, grant.organization_id

    mapped, org = await integration()
    unmapped, other_org = await integration()
    settings = WriteBackSettings(
        zoho=ZohoClientSettings(
            client_id=client["client_id"], client_secret=SecretStr(client["client_secret"]),
            accounts_servers=list(zoho_sandbox.accounts_servers),
        ),
        group_id=f"wb-{mapped}",
        retry_base=0.05, retry_cap=0.2, commit_interval=0.1,
    )
    status_topic = await make_topic(partitions=3)
    dlq = await make_topic(partitions=1)
    writeback_topic = await make_topic(partitions=1)

    async with httpx.AsyncClient() as http:
        sessions = ZohoSessions(store, http, settings)
        record = await store.integrations.get(mapped)
        assert record is not None
        books = await sessions.client(record)
        fields = {f["api_name"]: f["customfield_id"] for f in await books.invoice_custom_fields()}
        note_fields = {f["api_name"]: f["customfield_id"]
                       for f in await books.credit_note_custom_fields()}
        await store.integrations.set_writeback_fields(mapped, {
            "fiscal_number": fields["cf_fiskalni_broj"], "zki": fields["cf_zki"],
            "jir": fields["cf_jir"], "qr_url": fields["cf_qr_url"],
            **{f"creditnote.{role}": note_fields[api] for role, api in (
                ("fiscal_number", "cf_fiskalni_broj"), ("zki", "cf_zki"), ("jir", "cf_jir"),
                ("qr_url", "cf_qr_url"))},
        })
        first = await zoho_sandbox.create_invoice(org)
        second = await zoho_sandbox.create_invoice(org)
        voided = await zoho_sandbox.create_invoice(org)
        credited = await zoho_sandbox.create_invoice(org)
        note = await zoho_sandbox.create_credit_note(
            org, invoices_credited=[{"invoice_id": credited["invoice_id"], "amount": "12.38"}])
        elsewhere = await zoho_sandbox.create_invoice(other_org)

        statuses = [
            fiscalized(mapped, first["invoice_id"], first["invoice_number"], 1),
            fiscalized(mapped, second["invoice_id"], second["invoice_number"], 2),
            fiscalized(mapped, voided["invoice_id"] + ":storno",
                       voided["invoice_number"] + " storno", 3, total="-12.38"),
            fiscalized(mapped, note["creditnote_id"], note["creditnote_number"], 4,
                       total="-12.38", kind=DocumentKind.CREDIT_NOTE),
            fiscalized(unmapped, elsewhere["invoice_id"], elsewhere["invoice_number"], 5),
            # not fiscalized: no write-back, no outcome
            InvoiceStatus(integration_uid=mapped, state=InvoiceState.RETRYING,
                          reason_code="s005", message="",
                          invoice=InvoiceRef(source_id="x", number="x", version="v")),
        ]
        producer = make_producer(kafka_settings)
        await producer.start()
        try:
            for status in statuses:
                await producer.send_and_wait(status_topic, status.to_json(), key=status.key)
            # Delivered twice (a replay): written again with the same values; the
            # storno's comment is not added again.
            for again in (statuses[0], statuses[2]):
                await producer.send_and_wait(status_topic, again.to_json(), key=again.key)
            await producer.send_and_wait(status_topic, b"not a status", key=mapped.encode())
        finally:
            await producer.stop()

        stage = WriteBackStage(store.integrations.get, sessions.client,
                               Backoff(settings.retry_base.total_seconds(),
                                       settings.retry_cap.total_seconds()))
        service = WriteBack(kafka_settings, settings, stage, status_topic=status_topic,
                            writeback_topic=writeback_topic)
        service.dead_letters._dlq[status_topic] = dlq  # the test's own dead-letter topic
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        try:
            async def outcomes() -> list[WriteBackStatus] | None:
                found: list[WriteBackStatus] = await read_topic(
                    kafka_settings, writeback_topic, WriteBackStatus)
                return found if len(found) >= 7 else None

            published = await until(outcomes)
            await until(lambda: _read_raw(kafka_settings, dlq))
            await asyncio.sleep(0.5)  # a commit interval
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)

    by_source = {(o.integration_uid, o.source_id): o for o in published}
    assert len(published) == 7  # the replayed statuses were written (and said) again
    written = by_source[(mapped, first["invoice_id"])]
    assert (written.state, written.reason, written.fiscal_number) == (
        WriteBackState.WRITTEN_BACK, None, "1/POSL1/1")
    credit = by_source[(mapped, note["creditnote_id"])]
    assert (credit.state, credit.reason, credit.fiscal_number) == (
        WriteBackState.WRITTEN_BACK, None, "4/POSL1/1")
    shown_note = await zoho_sandbox.show_credit_note(org, note["creditnote_id"])
    jir4 = "00000000-0000-4000-8000-000000000004"
    assert shown_note["written_back"] == {
        "cf_fiskalni_broj": "4/POSL1/1", "cf_zki": f"{4:032x}", "cf_jir": jir4,
        "cf_qr_url": f"https://porezna.gov.hr/rn?jir={jir4}&datv=20261202_1041&izn=-1238",
    }
    assert (await zoho_sandbox.show_invoice(org, credited["invoice_id"]))["written_back"] == {}
    assert (by_source[(unmapped, elsewhere["invoice_id"])].state,
            by_source[(unmapped, elsewhere["invoice_id"])].reason) == (
        WriteBackState.WAITING, NO_MAPPING)
    assert ("x" not in {s for _, s in by_source})

    for invoice, n in ((first, 1), (second, 2)):
        shown = await zoho_sandbox.show_invoice(org, invoice["invoice_id"])
        jir = f"00000000-0000-4000-8000-{n:012d}"
        assert shown["written_back"] == {
            "cf_fiskalni_broj": f"{n}/POSL1/1", "cf_zki": f"{n:032x}", "cf_jir": jir,
            "cf_qr_url": f"https://porezna.gov.hr/rn?jir={jir}&datv=20261202_1041&izn=1238",
        }
        assert shown["invoice"]["status"] == invoice["status"]  # only the fields changed
    storno = await zoho_sandbox.show_invoice(org, voided["invoice_id"])
    assert storno["written_back"] == {}
    [comment] = storno["comments"]
    assert "3/POSL1/1" in comment["description"] and "izn=-1238" in comment["description"]
    untouched = await zoho_sandbox.show_invoice(other_org, elsewhere["invoice_id"])
    assert untouched["written_back"] == {}

    [letter] = await _read_raw(kafka_settings, dlq)
    assert letter.value == b"not a status"
    assert dict(letter.headers)[ERROR_TYPE] == b"ValidationError"
    # Everything was processed, so everything is committed.
    consumer = make_consumer(kafka_settings, group_id=settings.group_id)
    await consumer.start()
    try:
        parts: list[TopicPartition] = await partitions_of(consumer, status_topic)
        ends = await consumer.end_offsets(parts)
        assert {tp: await consumer.committed(tp) or 0 for tp in parts} == ends
    finally:
        await consumer.stop()


@SQLITE
async def test_write_backs_waiting_for_a_mapping_are_written_once_it_is_set(
    store: Store, kafka_settings: KafkaSettings, make_topic: MakeTopic,
    zoho_sandbox: ZohoSandboxHandle, demo_pfx: Pfx, demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    """An invoice and a credit note fiscalized before the customer mapped any field wait;
    setting the mapping (as the CLI and the portal do) writes both back, without another
    fiscalization; an unrelated settings change re-drives nothing."""
    client = await zoho_sandbox.oauth_client()
    account, _ = await store.accounts.ensure("owner@obrt.hr")
    grant = await zoho_grant(zoho_sandbox, client, limits=FAST)
    created = await store.integrations.create(
        account_id=account.account_id, fiscal_settings=fiscal_settings,
        pfx=demo_pfx.data, password=demo_pfx.password, certificate=demo_certificate,
        tier="scale",
    )
    uid, org = created.record.uid, grant.organization_id
    await store_connection(store, uid, grant)
    await store.apply([IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.CONNECTED)])
    settings = WriteBackSettings(
        zoho=ZohoClientSettings(
            client_id=client["client_id"], client_secret=SecretStr(client["client_secret"]),
            accounts_servers=list(zoho_sandbox.accounts_servers),
        ),
        group_id=f"wb-{uid}",
        retry_base=0.05, retry_cap=0.2, commit_interval=0.1,
    )
    status_topic, events_topic, writeback_topic = [
        await make_topic(partitions=2) for _ in range(3)]

    invoice = await zoho_sandbox.create_invoice(org)
    note = await zoho_sandbox.create_credit_note(
        org, invoices_credited=[{"invoice_id": invoice["invoice_id"], "amount": "12.38"}])
    statuses = [
        fiscalized(uid, invoice["invoice_id"], invoice["invoice_number"], 1),
        fiscalized(uid, note["creditnote_id"], note["creditnote_number"], 2, total="-12.38",
                   kind=DocumentKind.CREDIT_NOTE),
    ]
    await store.apply(statuses)  # the projector's journal, which the re-drive reads

    async def record(outcome: WriteBackStatus) -> None:
        await store.writebacks.apply(
            integration_uid=outcome.integration_uid, source_id=outcome.source_id,
            state=outcome.state.value, reason=outcome.reason,
            fiscal_number=outcome.fiscal_number, event_id=outcome.event_id,
            occurred_at=outcome.occurred_at)

    async with httpx.AsyncClient() as http:
        sessions = ZohoSessions(store, http, settings)
        stage = WriteBackStage(store.integrations.get, sessions.client,
                               Backoff(settings.retry_base.total_seconds(),
                                       settings.retry_cap.total_seconds()))
        service = WriteBack(kafka_settings, settings, stage, status_topic=status_topic,
                            writeback_topic=writeback_topic, events_topic=events_topic,
                            waiting=store.writebacks.waiting, record=record)
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        producer = make_producer(kafka_settings)
        await producer.start()
        try:
            for status in statuses:
                await producer.send_and_wait(status_topic, status.to_json(), key=status.key)

            async def states() -> dict[str, tuple[str, str | None]] | None:
                found = {s.invoice.source_id: await store.writebacks.get(uid, s.invoice.source_id)
                         for s in statuses}
                if any(o is None for o in found.values()):
                    return None
                return {k: (o.state, o.reason) for k, o in found.items() if o is not None}

            assert await until(states) == {
                invoice["invoice_id"]: ("waiting", NO_MAPPING),
                note["creditnote_id"]: ("waiting", NO_CREDIT_NOTE_MAPPING),
            }

            async def announce(event: IntegrationEvent) -> object:
                return await publish_and_apply(producer, store, event, topic=events_topic)

            # Another setting changes: nothing waiting is touched.
            await announce(IntegrationEvent(
                integration_uid=uid, kind=IntegrationEventKind.SETTINGS_CHANGED,
                reason="start moved", details={"starts_at": "2026-12-01T00:00:00+01:00"}))
            await asyncio.sleep(1.0)
            unchanged = await store.writebacks.get(uid, invoice["invoice_id"])
            assert unchanged is not None and unchanged.state == "waiting"

            known = await store.integrations.get(uid)
            assert known is not None
            books = await sessions.client(known)
            fields = {f["api_name"]: f["customfield_id"]
                      for f in await books.invoice_custom_fields()}
            note_fields = {f["api_name"]: f["customfield_id"]
                           for f in await books.credit_note_custom_fields()}
            with pytest.raises(ValueError, match="unknown write-back roles"):
                await set_mapping(store.integrations, announce, uid, {"jr": "1"}, by="a typo")
            assert known.writeback_fields == {}
            assert (await store.integrations.get(uid)) == known  # nothing was stored
            await set_mapping(store.integrations, announce, uid, {
                "jir": fields["cf_jir"], "fiscal_number": fields["cf_fiskalni_broj"],
                "creditnote.jir": note_fields["cf_jir"],
            }, by="the owner in the test")

            async def written() -> bool:
                now = await states()
                return now is not None and {s for s, _ in now.values()} == {"written_back"}

            await until(written)
        finally:
            await producer.stop()
            stop.set()
            await asyncio.wait_for(running, 30)

    shown = await zoho_sandbox.show_invoice(org, invoice["invoice_id"])
    assert shown["written_back"] == {"cf_jir": statuses[0].receipt_id,
                                     "cf_fiskalni_broj": "1/POSL1/1"}
    shown_note = await zoho_sandbox.show_credit_note(org, note["creditnote_id"])
    assert shown_note["written_back"] == {"cf_jir": statuses[1].receipt_id}
    outcomes = await read_topic(kafka_settings, writeback_topic, WriteBackStatus)
    assert sorted((o.source_id, o.state.value) for o in outcomes) == sorted([
        (invoice["invoice_id"], "waiting"), (note["creditnote_id"], "waiting"),
        (invoice["invoice_id"], "written_back"), (note["creditnote_id"], "written_back")])
    # Each answers the status that was fiscalized: nothing was fiscalized again.
    assert {o.status_event_id for o in outcomes} == {s.event_id for s in statuses}


async def _read_raw(kafka: KafkaSettings, topic: str) -> list[Any]:
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        parts = await partitions_of(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        records: list[Any] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for got in batch.values():
                records += got
        return records
    finally:
        await consumer.stop()




@SQLITE
async def test_a_retried_invoice_shows_its_zki_until_its_jir_is_written(
    store: Store, kafka_settings: KafkaSettings, make_topic: MakeTopic,
    zoho_sandbox: ZohoSandboxHandle, demo_pfx: Pfx, demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    """Signed while CIS is unreachable: the Zoho invoice shows its fiscal number, ZKI and
    the zki= QR (outcome waiting); with its JIR the JIR and the jir= QR (written back);
    a retrying status that arrives after that changes nothing."""
    client = await zoho_sandbox.oauth_client()
    account, _ = await store.accounts.ensure("owner@obrt.hr")
    grant = await zoho_grant(zoho_sandbox, client, limits=FAST)
    created = await store.integrations.create(
        account_id=account.account_id, fiscal_settings=fiscal_settings,
        pfx=demo_pfx.data, password=demo_pfx.password, certificate=demo_certificate,
        tier="scale",
    )
    uid, org = created.record.uid, grant.organization_id
    await store_connection(store, uid, grant)
    await store.apply([IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.CONNECTED)])
    settings = WriteBackSettings(
        zoho=ZohoClientSettings(
            client_id=client["client_id"], client_secret=SecretStr(client["client_secret"]),
            accounts_servers=list(zoho_sandbox.accounts_servers),
        ),
        group_id=f"wb-{uid}",
        retry_base=0.05, retry_cap=0.2, commit_interval=0.1,
    )
    status_topic, writeback_topic = [await make_topic(partitions=2) for _ in range(2)]

    async def record(outcome: WriteBackStatus) -> None:
        await store.writebacks.apply(
            integration_uid=outcome.integration_uid, source_id=outcome.source_id,
            state=outcome.state.value, reason=outcome.reason,
            fiscal_number=outcome.fiscal_number, event_id=outcome.event_id,
            occurred_at=outcome.occurred_at)

    async with httpx.AsyncClient() as http:
        sessions = ZohoSessions(store, http, settings)
        known = await store.integrations.get(uid)
        assert known is not None
        books = await sessions.client(known)
        fields = {f["api_name"]: f["customfield_id"] for f in await books.invoice_custom_fields()}
        await store.integrations.set_writeback_fields(uid, {
            "fiscal_number": fields["cf_fiskalni_broj"], "zki": fields["cf_zki"],
            "jir": fields["cf_jir"], "qr_url": fields["cf_qr_url"]})
        invoice = await zoho_sandbox.create_invoice(org)
        final = fiscalized(uid, invoice["invoice_id"], invoice["invoice_number"], 7)
        zki, jir = final.protection_code, final.receipt_id

        def retrying(attempt: int) -> InvoiceStatus:
            return final.model_copy(update={
                "event_id": f"retry-{uid}-{attempt}", "state": InvoiceState.RETRYING,
                "reason_code": "s006", "receipt_id": None, "attempt": attempt,
                "late": attempt > 1})

        stage = WriteBackStage(store.integrations.get, sessions.client,
                               Backoff(settings.retry_base.total_seconds(),
                                       settings.retry_cap.total_seconds()),
                               written=store.writebacks.get)
        service = WriteBack(kafka_settings, settings, stage, status_topic=status_topic,
                            writeback_topic=writeback_topic, record=record)
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        producer = make_producer(kafka_settings)
        await producer.start()

        async def send(status: InvoiceStatus) -> None:
            await producer.send_and_wait(status_topic, status.to_json(), key=status.key)

        async def outcome_is(state: str, reason: str | None) -> Any:
            async def check() -> bool:
                got = await store.writebacks.get(uid, invoice["invoice_id"])
                return got is not None and (got.state, got.reason) == (state, reason)
            return await until(check)

        async def all_processed() -> bool:
            watcher = make_consumer(kafka_settings, group_id=settings.group_id)
            await watcher.start()
            try:
                parts = await partitions_of(watcher, status_topic)
                ends = await watcher.end_offsets(parts)
                return [await watcher.committed(tp) or 0 for tp in parts] == [
                    ends[tp] for tp in parts]
            finally:
                await watcher.stop()

        try:
            await send(retrying(1))
            await outcome_is("waiting", ZKI_WRITTEN)
            shown = await zoho_sandbox.show_invoice(org, invoice["invoice_id"])
            assert shown["written_back"] == {
                "cf_fiskalni_broj": "7/POSL1/1", "cf_zki": zki,
                "cf_qr_url": f"https://porezna.gov.hr/rn?zki={zki}&datv=20261202_1041&izn=1238",
            }
            await send(retrying(2))  # the next try's status: written once is enough
            await send(final)
            await outcome_is("written_back", None)
            with_jir = {
                "cf_fiskalni_broj": "7/POSL1/1", "cf_zki": zki, "cf_jir": jir,
                "cf_qr_url": f"https://porezna.gov.hr/rn?jir={jir}&datv=20261202_1041&izn=1238",
            }
            assert (await zoho_sandbox.show_invoice(org, invoice["invoice_id"]))[
                "written_back"] == with_jir
            await send(retrying(3))  # out of order, after the JIR
            await until(all_processed)
        finally:
            await producer.stop()
            stop.set()
            await asyncio.wait_for(running, 30)

    assert (await zoho_sandbox.show_invoice(org, invoice["invoice_id"]))[
        "written_back"] == with_jir
    latest = await store.writebacks.get(uid, invoice["invoice_id"])
    assert latest is not None and (latest.state, latest.reason) == ("written_back", None)
    published = await read_topic(kafka_settings, writeback_topic, WriteBackStatus)
    assert [(o.state, o.reason, o.status_event_id) for o in published] == [
        (WriteBackState.WAITING, ZKI_WRITTEN, f"retry-{uid}-1"),
        (WriteBackState.WRITTEN_BACK, None, final.event_id),
    ]
