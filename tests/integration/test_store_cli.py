"""The operator CLI (`integrations`, `secrets`, `rebuild-state`, `db`) against the real
broker and both databases; and no secret in any of its output or logs."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from unittest import mock

import pytest
from click.testing import CliRunner, Result

from fiscal.hr_cis.settings import FiscalSettings
from fiscobridge.cli import cli
from fiscobridge.commands import db as db_commands
from runtime.kafka import clients
from runtime.logging import JsonFormatter
from runtime.settings import KafkaSettings
from runtime.store import IntegrationStatus, Store
from runtime.store import migrate as migrations
from runtime.store.rebuild import Topics
from runtime.vault import MasterKey, Vault
from schemas.events import IntegrationEvent, IntegrationEventKind, InvoiceState
from services.portal.projector import Projector
from tests.e2e.zoho_helpers import read_topic
from tests.fixtures.certs import OPERATOR_OIB, Pfx
from tests.fixtures.kafka import MakeTopic
from tests.fixtures.store import Database, invoice_status_at, projection_snapshot

pytestmark = pytest.mark.kafka

Invoke = Callable[..., Awaitable[Result]]
REFRESH = "1000.cafebabe0123456789abcdef.refresh-token-value"
ACCESS = "1000.deadbeef0123456789abcdef.access-token-value"


@pytest.fixture
async def topics(make_topic: MakeTopic, monkeypatch: pytest.MonkeyPatch) -> Topics:
    topics = Topics(status=await make_topic(partitions=2), events=await make_topic(partitions=2))
    monkeypatch.setattr(db_commands, "TOPICS", topics)
    return topics


@pytest.fixture
def cli_env(
    store: Store,
    database: Database,
    master_key: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    topics: Topics,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FISCOBRIDGE_DATABASE_URL", database.url)
    monkeypatch.setenv("FISCOBRIDGE_MASTER_KEY", master_key)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)


@pytest.fixture
def invoke(cli_env: None) -> Invoke:
    """Run `fiscobridge ARGS...` in-process (in a thread: the CLI runs its own loop)."""
    runner = CliRunner()

    async def run(*args: str, input: str | None = None) -> Result:
        return await asyncio.to_thread(runner.invoke, cli, list(args), input=input)

    return run


@pytest.fixture
def pfx_files(tmp_path: Path, demo_pfx: Pfx, expired_pfx: Pfx) -> dict[str, Path]:
    files = {
        "demo": tmp_path / "demo.pfx",
        "expired": tmp_path / "expired.pfx",
        "password": tmp_path / "password.txt",
        "junk": tmp_path / "junk.pfx",
    }
    files["demo"].write_bytes(demo_pfx.data)
    files["expired"].write_bytes(expired_pfx.data)
    files["password"].write_text(demo_pfx.password + "\n")
    files["junk"].write_bytes(b"this is not a certificate")
    return files


def create_args(pfx: Path, password_file: Path, settings: FiscalSettings, **over: str) -> list[str]:
    options = {
        "--account": "owner@obrt.hr",
        "--pfx": str(pfx),
        "--password-file": str(password_file),
        "--oib": settings.oib,
        "--premises": settings.premises_code,
        "--device": settings.device_code,
        "--operator-oib": settings.operator_oib,
        **over,
    }
    return ["integrations", "create", *(x for pair in options.items() for x in pair)]


async def end_offsets(kafka: KafkaSettings, topics: Topics) -> int:
    consumer = clients.consumer(kafka, group_id=None)
    await consumer.start()
    try:
        from aiokafka import TopicPartition

        parts = [TopicPartition(t, p) for t in topics.names for p in range(2)]
        return sum((await consumer.end_offsets(parts)).values())
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong-password", "wrong_password"),
        ("expired", "certificate_expired"),
        ("oib-mismatch", "oib_mismatch"),
        ("not-pkcs12", "not_pkcs12"),
        ("bad-premises", "premises code"),
    ],
)
async def test_create_refuses_a_bad_certificate_and_changes_nothing(
    invoke: Invoke,
    store: Store,
    pfx_files: dict[str, Path],
    fiscal_settings: FiscalSettings,
    kafka_settings: KafkaSettings,
    topics: Topics,
    case: str,
    code: str,
) -> None:
    pfx, over = pfx_files["demo"], {}
    if case == "wrong-password":
        over = {"--password-file": str(pfx_files["junk"])}
    elif case == "expired":
        pfx = pfx_files["expired"]
    elif case == "oib-mismatch":
        over = {"--oib": OPERATOR_OIB}
    elif case == "not-pkcs12":
        pfx = pfx_files["junk"]
    elif case == "bad-premises":
        over = {"--premises": "POSL 1!"}
    result = await invoke(*create_args(pfx, pfx_files["password"], fiscal_settings, **over))
    assert result.exit_code == 2, result.output
    assert code in result.stderr and "refused" in result.stderr
    assert result.stdout == ""
    assert await store.integrations.find() == []
    assert await store.accounts.get("owner@obrt.hr") is None
    assert await end_offsets(kafka_settings, topics) == 0


async def test_create_fails_clearly_when_kafka_is_unreachable(
    invoke: Invoke,
    store: Store,
    pfx_files: dict[str, Path],
    fiscal_settings: FiscalSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    result = await invoke(*create_args(pfx_files["demo"], pfx_files["password"], fiscal_settings))
    assert result.exit_code == 1
    assert "unreachable" in result.stderr and "nothing was changed" in result.stderr
    assert await store.integrations.find() == []


async def test_password_sources_are_exclusive_and_env_works(
    invoke: Invoke,
    store: Store,
    pfx_files: dict[str, Path],
    fiscal_settings: FiscalSettings,
    demo_pfx: Pfx,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = create_args(pfx_files["demo"], pfx_files["password"], fiscal_settings)
    result = await invoke(*args, "--password-env", "PFX_PASSWORD")
    assert result.exit_code == 2 and "one way only" in result.output
    monkeypatch.setenv("PFX_PASSWORD", demo_pfx.password)
    args = [a for a in args if a not in ("--password-file", str(pfx_files["password"]))]
    result = await invoke(*args, "--password-env", "PFX_PASSWORD")
    assert result.exit_code == 0, result.output
    result = await invoke(*args, input=demo_pfx.password + "\n")  # the prompt
    assert result.exit_code == 0, result.output
    assert demo_pfx.password not in result.output
    assert len(await store.integrations.find()) == 2


async def test_a_full_cycle_never_shows_a_secret_where_it_should_not(
    invoke: Invoke,
    store: Store,
    database: Database,
    master_key: str,
    pfx_files: dict[str, Path],
    demo_pfx: Pfx,
    fiscal_settings: FiscalSettings,
    kafka_settings: KafkaSettings,
    topics: Topics,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything...
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # ...SQL, parameters and rows included
    outputs: list[str] = []

    async def ok(*args: str, input: str | None = None) -> str:
        result = await invoke(*args, input=input)
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout + result.stderr)
        return result.stdout

    created = await ok(
        *create_args(
            pfx_files["demo"], pfx_files["password"], fiscal_settings, **{"--tier": "growth"}
        )
    )
    uid = re.search(r"created integration (\S+) \(pending\)", created)[1]  # type: ignore[index]
    secret = re.search(r"webhook secret: (\S+)", created)[1]  # type: ignore[index]
    assert f"/webhook/zoho/{uid}" in created
    assert await store.integrations.webhook_secret(uid) == secret

    # The portal's OAuth flow would store tokens; rotation must carry them too.
    await store.tokens.set(
        uid,
        refresh_token=REFRESH,
        access_token=ACCESS,
        access_expires_at=datetime.now(UTC) + timedelta(hours=1),
    )

    shown = await ok("integrations", "show", uid)
    assert "pending" in shown and "growth" in shown and fiscal_settings.oib in shown
    revealed = await ok("integrations", "show", uid, "--show-webhook-secret")
    assert secret in revealed
    assert "active" in await ok("integrations", "activate", uid)
    assert re.search(r"^jir:\s+-$", await ok("integrations", "writeback-fields", uid), re.M)
    announced = await end_offsets(kafka_settings, topics)
    mapped = await ok("integrations", "writeback-fields", uid, "jir=4600000000000903",
                      "qr_url=4600000000000904", "creditnote.jir=4600000000000913")
    assert re.search(r"^jir:\s+4600000000000903$", mapped, re.M)
    assert re.search(r"^zki:\s+-$", mapped, re.M)
    assert re.search(r"^creditnote\.jir:\s+4600000000000913$", mapped, re.M)
    record = await store.integrations.get(uid)
    assert record is not None and record.writeback_fields == {
        "jir": "4600000000000903", "qr_url": "4600000000000904",
        "creditnote.jir": "4600000000000913"}
    # Announced, for the write-back stage to write back what waited for a mapping.
    assert await end_offsets(kafka_settings, topics) == announced + 1
    [event] = [e for e in await read_topic(kafka_settings, topics.events, IntegrationEvent)
               if e.kind is IntegrationEventKind.SETTINGS_CHANGED]
    assert event.integration_uid == uid and event.details == {
        "writeback_fields": record.writeback_fields}
    unknown = await invoke("integrations", "writeback-fields", uid, "jirr=1")
    assert unknown.exit_code == 2 and "unknown write-back roles" in unknown.stderr
    assert await end_offsets(kafka_settings, topics) == announced + 1  # nothing changed
    assert uid in await ok("integrations", "list", "--status", "active")

    new_key = "k2:" + base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("FISCOBRIDGE_MASTER_KEY", f"{new_key},{master_key}")
    rotated = await ok("secrets", "rotate")
    assert "re-encrypted 5 secret(s) under key 'k2'" in rotated
    assert "re-encrypted 0 secret(s)" in await ok("secrets", "rotate")
    monkeypatch.setenv("FISCOBRIDGE_MASTER_KEY", new_key)
    assert "k2: 5 secret(s)" in await ok("secrets", "status")

    aborted = await invoke("integrations", "remove", uid, input="n\n")
    assert aborted.exit_code == 1
    record = await store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.ACTIVE
    assert "active -> removed" in await ok("integrations", "remove", uid, "--yes")
    again = await invoke("integrations", "activate", uid)
    assert again.exit_code == 2 and "final" in again.stderr

    key_id, _, encoded = new_key.partition(":")
    reader = Store.open(database.url, vault=Vault((MasterKey(key_id, base64.b64decode(encoded)),)))
    try:
        tokens = await reader.tokens.get(uid)
        assert tokens is not None and tokens.refresh_token == REFRESH
        assert await reader.integrations.certificate(uid) == (demo_pfx.data, demo_pfx.password)
    finally:
        await reader.close()

    # Each record as the services write it (runtime.logging's JSON lines, `extra=` fields
    # included, which caplog.text's default format drops) and its raw attributes as well.
    formatter = JsonFormatter("cli")
    logs = "\n".join(f"{formatter.format(r)}\n{vars(r)!r}" for r in caplog.records)
    assert "INSERT INTO" in logs, "the logs were not captured"
    everything = logs + "\n".join(outputs)
    for value in (
        demo_pfx.password,
        REFRESH,
        ACCESS,
        master_key.split(":")[1],
        new_key.split(":")[1],
    ):
        assert value not in everything
    # The webhook secret: once when created, once when explicitly asked for; never logged.
    assert secret not in logs
    assert [secret in o for o in outputs].count(True) == 2
    assert secret in outputs[0] and secret in outputs[2]


async def test_remove_keeps_the_journal_and_the_license_usage(
    invoke: Invoke,
    store: Store,
    pfx_files: dict[str, Path],
    fiscal_settings: FiscalSettings,
    topics: Topics,
) -> None:
    created = await invoke(*create_args(pfx_files["demo"], pfx_files["password"], fiscal_settings))
    assert created.exit_code == 0, created.output
    uid = re.search(r"created integration (\S+)", created.stdout)[1]  # type: ignore[index]
    assert (await invoke("integrations", "activate", uid)).exit_code == 0
    # Fiscalized invoices, as the projector records them: journal rows and the month's usage.
    t0 = datetime.now(UTC).replace(microsecond=0)
    await store.apply([
        invoice_status_at(
            InvoiceState.FISCALIZED, t0 + timedelta(seconds=n), uid=uid, source_id=f"46{n:014d}"
        )
        for n in range(3)
    ])
    before = await projection_snapshot(store)
    assert len([row for row in before["journal"] if uid in row]) == 3
    assert [u for u in before["usage"] if u[0] == uid] == [(uid, mock.ANY, 3)]

    removed = await invoke("integrations", "remove", uid, "--yes")
    assert removed.exit_code == 0, removed.output
    assert f"integration {uid}: active -> removed" in removed.stdout
    assert "note: access granted in Zoho Books is not revoked from here" in removed.stdout
    assert "Zoho's connected apps" in removed.stdout

    record = await store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.REMOVED
    after = await projection_snapshot(store)
    assert after["journal"] == before["journal"]  # row for row, receipts included
    assert after["usage"] == before["usage"]
    assert len(await store.journal.entries(uid)) == 3


async def test_rebuild_state_restores_the_same_state_row_for_row(
    invoke: Invoke,
    store: Store,
    pfx_files: dict[str, Path],
    fiscal_settings: FiscalSettings,
    kafka_settings: KafkaSettings,
    topics: Topics,
) -> None:
    uids = []
    for _ in range(3):
        result = await invoke(
            *create_args(pfx_files["demo"], pfx_files["password"], fiscal_settings)
        )
        assert result.exit_code == 0, result.output
        uids.append(re.search(r"created integration (\S+)", result.stdout)[1])  # type: ignore[index]
    for args in (("activate", uids[0]), ("activate", uids[1]), ("remove", uids[1], "--yes")):
        assert (await invoke("integrations", *args)).exit_code == 0
    producer = clients.producer(kafka_settings)
    await producer.start()
    try:
        t0 = datetime(2025, 3, 31, 21, 0, tzinfo=UTC)
        for n in range(10):
            for state in (InvoiceState.RETRYING, InvoiceState.FISCALIZED):
                event = invoice_status_at(
                    state, t0 + timedelta(minutes=30 * n), uid=uids[0], source_id=f"46{n:014d}"
                )
                await producer.send_and_wait(topics.status, event.to_json(), key=event.key)
    finally:
        await producer.stop()
    # The live projector catches up (status events from the CLI are already applied).
    stop = asyncio.Event()
    task = asyncio.create_task(
        Projector(store, kafka_settings, topics=topics, group_id="test-cli-rebuild").run(stop)
    )
    async with asyncio.timeout(60):
        while len((await projection_snapshot(store))["journal"]) < 10:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
    stop.set()
    await task
    before = await projection_snapshot(store)
    # 21:00 and 21:30 UTC are still March in Zagreb (CEST); 22:00 UTC is 1 April.
    assert await store.usage.count(uids[0], "2025-03") == 2
    assert await store.usage.count(uids[0], "2025-04") == 8

    result = await invoke("rebuild-state", "--yes")
    assert result.exit_code == 0, result.output
    assert f"replayed 20 record(s) of {topics.status}" in result.stdout
    assert f"replayed 6 record(s) of {topics.events}" in result.stdout  # 3 created, 3 changes
    assert "fiscal journal: 10 invoice(s)" in result.stdout
    assert await projection_snapshot(store) == before
    statuses = [r.status for r in await store.integrations.find()]
    assert sorted(statuses) == sorted(
        [IntegrationStatus.ACTIVE, IntegrationStatus.REMOVED, IntegrationStatus.PENDING]
    )


async def test_db_upgrade_command(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FISCOBRIDGE_DATABASE_URL", database.url)
    runner = CliRunner()
    head = migrations.head()
    first = await asyncio.to_thread(runner.invoke, db_commands.db, ["upgrade"])
    assert first.exit_code == 0 and f"upgraded from empty to {head}" in first.output
    second = await asyncio.to_thread(runner.invoke, db_commands.db, ["upgrade"])
    assert f"already at revision {head}" in second.output
    current = await asyncio.to_thread(runner.invoke, db_commands.db, ["current"])
    assert f"database: {head}; this version needs: {head}" in current.output


async def test_embedded_default_uses_the_dev_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    monkeypatch.delenv("FISCOBRIDGE_DATABASE_URL", raising=False)
    monkeypatch.delenv("FISCOBRIDGE_MASTER_KEY", raising=False)
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["secrets", "status"])
    assert result.exit_code == 0, result.output
    assert "0 secret(s) under older keys" in result.stdout
    assert (tmp_path / "fiscobridge.db").exists()
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600


async def test_a_shared_database_needs_the_master_key_from_the_environment(
    database: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    monkeypatch.setenv("FISCOBRIDGE_DATABASE_URL", database.url)
    monkeypatch.delenv("FISCOBRIDGE_MASTER_KEY", raising=False)
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, cli, ["secrets", "status"])
    assert result.exit_code == 1
    assert "FISCOBRIDGE_MASTER_KEY is not set" in result.stderr
    assert not (tmp_path / "master.key").exists()
    monkeypatch.setenv("FISCOBRIDGE_MASTER_KEY", "k:" + base64.b64encode(os.urandom(32)).decode())
    result = await asyncio.to_thread(runner.invoke, cli, ["integrations", "list"])
    assert result.exit_code == 1 and "fiscobridge db upgrade" in result.stderr
