"""Secrets at rest: never in clear in the database; master-key rotation under load."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from runtime.store import Store
from runtime.vault import DecryptionFailed, MasterKey, UnknownKeyId, Vault
from tests.fixtures.certs import Pfx
from tests.fixtures.store import Database, _asyncpg_dsn

REFRESH = "1000.4b1f6c0d2e3a5b7c9d8e0f1a2b3c4d5e.6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c"
ACCESS = "1000.9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b.3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d"


def _vault(*keys: tuple[str, bytes]) -> Vault:
    return Vault(tuple(MasterKey(key_id, key) for key_id, key in keys))


async def _populate(
    store: Store, pfx: Pfx, cert: FiscalCertificate, settings: FiscalSettings, n: int
) -> dict[str, str]:
    account, _ = await store.accounts.ensure("owner@obrt.hr")
    secrets = {}
    for i in range(n):
        created = await store.integrations.create(
            account_id=account.account_id,
            fiscal_settings=settings,
            pfx=pfx.data,
            password=pfx.password,
            certificate=cert,
        )
        uid = created.record.uid
        secrets[uid] = created.webhook_secret
        await store.tokens.set(
            uid,
            refresh_token=f"{REFRESH}-{i}",
            access_token=f"{ACCESS}-{i}",
            access_expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    return secrets


def _windows(data: bytes, size: int = 24) -> Iterator[bytes]:
    for start in range(0, len(data) - size, len(data) // 16):
        yield data[start : start + size]


def _assert_nothing_in_clear(raw: bytes, pfx: Pfx, plain: list[str]) -> None:
    for text in [pfx.password, *plain]:
        for encoded in (text.encode(), text.encode().hex().encode()):
            assert encoded not in raw, f"a secret is in clear: {text[:6]}..."
    for window in _windows(pfx.data):
        assert window not in raw and window.hex().encode() not in raw, "PFX bytes in clear"


async def _raw_database(database: Database) -> bytes:
    if database.path is not None:
        directory = database.path.parent
        files = sorted(p for p in directory.iterdir() if p.name.startswith(database.path.name))
        assert any(p.name.endswith("-wal") for p in files), "expected the WAL file too"
        return b"".join(p.read_bytes() for p in files)
    conn = await asyncpg.connect(_asyncpg_dsn(database.url))
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
        chunks = []
        for (table,) in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table}"'):
                for value in row.values():
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
        return b"\n".join(chunks)
    finally:
        await conn.close()


async def test_no_secret_in_clear_in_the_database(
    store: Store,
    database: Database,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    secrets = await _populate(store, demo_pfx, demo_certificate, fiscal_settings, 3)
    tokens = [f"{REFRESH}-{i}" for i in range(3)] + [f"{ACCESS}-{i}" for i in range(3)]
    raw = await _raw_database(database)
    assert b"owner@obrt.hr" in raw  # the scan does see the data
    _assert_nothing_in_clear(raw, demo_pfx, [*secrets.values(), *tokens])
    # ... and the secrets are really there, readable through the vault.
    for uid, secret in secrets.items():
        assert await store.integrations.webhook_secret(uid) == secret


async def test_rotation_rewraps_everything_and_is_idempotent(
    store: Store,
    database: Database,
    vault: Vault,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    secrets = await _populate(store, demo_pfx, demo_certificate, fiscal_settings, 5)
    (old_id,) = vault.key_ids
    old_key = vault._keys[old_id].key
    new = ("new", os.urandom(32))
    assert await store.key_usage() == {old_id: 5 * 5}  # webhook, pfx, password, 2 tokens

    new_only = Store.open(database.url, vault=_vault(new))
    both = Store.open(database.url, vault=_vault(new, (old_id, old_key)))
    try:
        with pytest.raises(UnknownKeyId, match=f"'{old_id}'"):
            await new_only.verify_secrets()
        report = await both.rotate_secrets(batch_size=2)
        assert report.total_rewrapped == 25 and report.already_current == 0
        assert report.rewrapped["certificates.pfx"] == 5
        assert await store.key_usage() == {"new": 25}
        assert await new_only.verify_secrets() == {"new": 25}
        for uid, secret in secrets.items():
            assert await new_only.integrations.webhook_secret(uid) == secret
            assert await new_only.integrations.certificate(uid) == (
                demo_pfx.data,
                demo_pfx.password,
            )
        again = await both.rotate_secrets()
        assert (again.total_rewrapped, again.already_current) == (0, 25)
        _assert_nothing_in_clear(await _raw_database(database), demo_pfx, list(secrets.values()))
    finally:
        await new_only.close()
        await both.close()


async def test_rotation_while_a_service_keeps_writing_loses_no_update(
    store: Store,
    database: Database,
    vault: Vault,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    secrets = await _populate(store, demo_pfx, demo_certificate, fiscal_settings, 4)
    (old_id,) = vault.key_ids
    keys = _vault(("new", os.urandom(32)), (old_id, vault._keys[old_id].key))
    rotating = Store.open(database.url, vault=keys)
    poller = Store.open(database.url, vault=keys)  # services run with both keys meanwhile
    written: dict[str, str] = {}

    async def refresh_tokens() -> None:
        for n in range(15):
            for uid in secrets:
                token = f"{ACCESS}-refreshed-{n}"
                await poller.tokens.set_access(uid, token, datetime.now(UTC))
                written[uid] = token
            await asyncio.sleep(0)

    try:
        report, _ = await asyncio.gather(rotating.rotate_secrets(batch_size=1), refresh_tokens())
        assert report.total_rewrapped > 0
        await rotating.rotate_secrets()  # picks up anything a stale writer left behind
        assert set(await store.key_usage()) == {"new"}
        for uid, token in written.items():
            tokens = await poller.tokens.get(uid)
            assert tokens is not None and tokens.access_token == token
    finally:
        await rotating.close()
        await poller.close()


async def test_wrong_master_key_is_a_clear_startup_error(
    store: Store,
    database: Database,
    vault: Vault,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    await _populate(store, demo_pfx, demo_certificate, fiscal_settings, 1)
    (key_id,) = vault.key_ids
    impostor = Store.open(database.url, vault=_vault((key_id, os.urandom(32))))
    try:
        with pytest.raises(DecryptionFailed, match="not the key they were written with"):
            await impostor.verify_secrets()
    finally:
        await impostor.close()
    assert base64.b64encode(vault._keys[key_id].key) not in await _raw_database(database)
