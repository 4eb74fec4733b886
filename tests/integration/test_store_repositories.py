"""Repositories the services call, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from runtime.store import IntegrationStatus, InvalidInput, NotFound, Store
from runtime.store.integrations import CreatedIntegration
from runtime.store.models import Certificate, Integration, User
from runtime.vault import DecryptionFailed
from tests.fixtures.certs import Pfx
from tests.fixtures.store import Database


async def _create(
    store: Store, pfx: Pfx, cert: FiscalCertificate, settings: FiscalSettings, **kwargs: str
) -> CreatedIntegration:
    account, _ = await store.accounts.ensure(kwargs.pop("email", "owner@obrt.hr"))
    return await store.integrations.create(
        account_id=account.account_id,
        fiscal_settings=settings,
        pfx=pfx.data,
        password=pfx.password,
        certificate=cert,
        **kwargs,
    )


async def test_accounts_hash_passwords_with_argon2id(store: Store) -> None:
    created = await store.accounts.create("Owner@Obrt.hr ", "correct horse")
    assert created.email == "owner@obrt.hr" and created.has_password
    with pytest.raises(InvalidInput, match="already exists"):
        await store.accounts.create("owner@obrt.hr", "other")
    async with store.transaction() as session:
        stored = await session.scalar(select(User.password_hash))
    assert stored is not None and stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    # $argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$salt$hash; OWASP's minimum is 19 MiB.
    params = re.fullmatch(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[^$]+\$[^$]+", stored)
    assert params is not None, stored
    assert int(params[1]) >= 19456, f"argon2id memory cost {params[1]} KiB is below 19456"
    assert await store.accounts.authenticate("OWNER@obrt.hr", "correct horse") == created
    assert await store.accounts.authenticate("owner@obrt.hr", "wrong") is None
    assert await store.accounts.authenticate("nobody@obrt.hr", "correct horse") is None
    with pytest.raises(InvalidInput, match="not an e-mail"):
        await store.accounts.create("not-an-email")


async def test_create_integration(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    created = await _create(store, demo_pfx, demo_certificate, fiscal_settings)
    uid = created.record.uid
    assert re.fullmatch(r"[a-z2-7]{24}", uid)
    assert re.fullmatch(r"[A-Za-z0-9]{32}", created.webhook_secret)
    assert created.webhook_secret not in repr(created)

    record = await store.integrations.get(uid)
    assert record is not None and record == created.record
    assert record.status is IntegrationStatus.PENDING
    assert (record.tier, record.type, record.fiscal_profile) == ("trial", "zoho_books", "hr-cis")
    assert FiscalSettings.model_validate(record.fiscal_settings) == fiscal_settings
    assert record.created_at.tzinfo is not None
    assert record.webhook_path == f"/webhook/zoho/{uid}"

    assert await store.integrations.webhook_secret(uid) == created.webhook_secret
    assert await store.integrations.certificate(uid) == (demo_pfx.data, demo_pfx.password)
    info = await store.integrations.certificate_info(uid)
    assert (info.oib, info.fingerprint_sha256, info.not_after) == (
        demo_certificate.oib,
        demo_certificate.fingerprint_sha256,
        demo_certificate.not_after,
    )
    assert await store.integrations.list_active() == []
    assert await store.lease.acquire(uid, "poller-1", timedelta(seconds=30))  # poll row exists


async def test_invalid_integration_is_refused_and_writes_nothing(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    with pytest.raises(InvalidInput, match="tier 'gold'"):
        await _create(store, demo_pfx, demo_certificate, fiscal_settings, tier="gold")
    with pytest.raises(InvalidInput, match="does not match"):
        await _create(store, demo_pfx, demo_certificate, fiscal_settings, uid="bad uid/1")
    assert await store.integrations.find() == []
    with pytest.raises(NotFound, match="'missing' has no certificate"):
        await store.integrations.certificate("missing")


async def test_certificate_replacement_keeps_history_and_one_current(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
    expired_pfx: Pfx,
) -> None:
    uid = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    replacement = await store.integrations.replace_certificate(
        uid, pfx=expired_pfx.data, password="second", certificate=demo_certificate
    )
    assert await store.integrations.certificate(uid) == (expired_pfx.data, "second")
    history = await store.integrations.certificate_history(uid)
    assert [c.is_current for c in history] == [False, True]
    assert history[0].replaced_at is not None and history[1] == replacement
    # The database itself refuses a second current certificate.
    with pytest.raises(IntegrityError):
        async with store.transaction() as session:
            await session.execute(update(Certificate).values(is_current=True))


async def test_ciphertext_swapped_between_integrations_does_not_decrypt(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    a = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    b = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    async with store.transaction() as session:
        secret_of_a = await session.scalar(
            select(Integration.webhook_secret).where(Integration.uid == a)
        )
        await session.execute(
            update(Integration).where(Integration.uid == b).values(webhook_secret=secret_of_a)
        )
    with pytest.raises(DecryptionFailed, match="integrity check"):
        await store.integrations.webhook_secret(b)


async def test_tokens(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    uid = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    assert await store.tokens.get(uid) is None
    expires = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    await store.tokens.set(
        uid, refresh_token="1000.refresh", access_token="1000.a1", access_expires_at=expires
    )
    tokens = await store.tokens.get(uid)
    assert tokens is not None
    assert (tokens.refresh_token, tokens.access_token, tokens.access_expires_at) == (
        "1000.refresh",
        "1000.a1",
        expires,
    )
    assert "1000." not in repr(tokens)
    await store.tokens.set_access(uid, "1000.a2", expires + timedelta(hours=1))
    tokens = await store.tokens.get(uid)
    assert tokens is not None and (tokens.refresh_token, tokens.access_token) == (
        "1000.refresh",
        "1000.a2",
    )
    assert await store.tokens.delete(uid) and await store.tokens.get(uid) is None
    with pytest.raises(NotFound):
        await store.tokens.set("missing", refresh_token="x")


async def test_times_come_back_aware_and_naive_times_are_refused(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    uid = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    zagreb = datetime.fromisoformat("2025-03-30T03:30:00+02:00")
    assert await store.watermark.advance(uid, zagreb)
    back = await store.watermark.get(uid)
    assert back == zagreb and back is not None and back.utcoffset() == timedelta(0)
    with pytest.raises(Exception, match="naive datetime"):
        await store.watermark.advance(uid, datetime(2025, 4, 1))


async def test_watermark_only_moves_forward_and_is_fenced_by_the_lease(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    uid = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    t0 = datetime(2025, 5, 1, 8, tzinfo=UTC)
    assert await store.watermark.get(uid) is None
    assert await store.watermark.advance(uid, t0)
    assert not await store.watermark.advance(uid, t0 - timedelta(minutes=5))
    assert await store.watermark.get(uid) == t0
    # Only the holder of an unexpired lease advances it when fenced.
    now = datetime(2025, 5, 1, 9, tzinfo=UTC)
    assert await store.lease.acquire(uid, "a", timedelta(seconds=60), now=now)
    later = t0 + timedelta(minutes=1)
    assert not await store.watermark.advance(uid, later, holder="b", now=now)
    assert not await store.watermark.advance(
        uid, later, holder="a", now=now + timedelta(seconds=61)
    )
    assert await store.watermark.advance(uid, later, holder="a", now=now)
    assert await store.watermark.get(uid) == later


async def test_an_earlier_start_chosen_during_a_poll_is_not_overwritten_by_it(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    """A poll reads the watermark, lists, then advances it. If the owner chose an earlier
    start in between, that start is where the next poll must read from: the poll's
    advance from what it read is refused, whether it read a watermark or none."""
    uid = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    now = datetime(2025, 5, 1, 9, tzinfo=UTC)
    first_read = await store.watermark.get(uid)
    assert first_read is None
    await store.integrations.choose_start(uid, now - timedelta(days=30), now=now)
    assert not await store.watermark.advance(uid, now, read=first_read)
    assert await store.watermark.get(uid) == now - timedelta(days=30)

    read = await store.watermark.get(uid)
    assert await store.watermark.advance(uid, now, read=read)
    await store.integrations.choose_start(uid, now - timedelta(days=40), now=now)
    assert not await store.watermark.advance(uid, now + timedelta(minutes=1), read=now)
    assert await store.watermark.get(uid) == now - timedelta(days=40)


async def test_lease_lifecycle(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    uid = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    now = datetime(2025, 5, 1, 9, tzinfo=UTC)
    ttl = timedelta(seconds=30)
    assert await store.lease.acquire(uid, "a", ttl, now=now)
    assert not await store.lease.acquire(uid, "b", ttl, now=now + timedelta(seconds=29))
    assert await store.lease.acquire(uid, "a", ttl, now=now + timedelta(seconds=20))  # extend
    assert not await store.lease.acquire(uid, "b", ttl, now=now + timedelta(seconds=49))
    assert await store.lease.holder(uid, now=now + timedelta(seconds=49)) == "a"
    assert await store.lease.acquire(uid, "b", ttl, now=now + timedelta(seconds=51))  # expired
    assert not await store.lease.release(uid, "a")
    assert await store.lease.release(uid, "b")
    assert await store.lease.holder(uid) is None
    assert await store.lease.acquire(uid, "a", ttl, now=now)
    assert not await store.lease.acquire("missing", "a", ttl)


async def test_lease_acquire_is_atomic_across_processes(
    store: Store,
    database: Database,
    vault: object,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    uid = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    # One engine per contender: separate connections, as separate poller processes have.
    contenders = [Store.open(database.url) for _ in range(8)]
    try:
        for _ in range(5):
            await store.lease.release(uid, await store.lease.holder(uid) or "")
            results = await asyncio.gather(
                *(
                    c.lease.acquire(uid, f"poller-{i}", timedelta(seconds=30))
                    for i, c in enumerate(contenders)
                )
            )
            assert sum(results) == 1
            winner = results.index(True)
            assert await store.lease.holder(uid) == f"poller-{winner}"
    finally:
        for contender in contenders:
            await contender.close()


async def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError):
        async with store.transaction() as session:
            await session.execute(
                text("INSERT INTO poll_state (integration_uid) VALUES ('no-such-integration')")
            )


async def test_zoho_read_options_and_webhook_seen(
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    uid = (await _create(store, demo_pfx, demo_certificate, fiscal_settings)).record.uid
    record = await store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == {}
    assert record.webhook_seen_at is None
    options = {"buyer_tax_field": "cf_oib", "payment_modes": {"stripe": "card"}}
    await store.integrations.set_zoho_read_options(uid, options)
    record = await store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == options
    await store.integrations.set_zoho_read_options(uid, {})
    record = await store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == {}
    with pytest.raises(NotFound):
        await store.integrations.set_zoho_read_options("missing", options)

    # Written at most once a minute, whichever instance writes.
    at = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    assert await store.integrations.webhook_seen(uid, at)
    assert not await store.integrations.webhook_seen(uid, at + timedelta(seconds=59))
    record = await store.integrations.get(uid)
    assert record is not None and record.webhook_seen_at == at
    assert await store.integrations.webhook_seen(uid, at + timedelta(seconds=60))
    record = await store.integrations.get(uid)
    assert record is not None and record.webhook_seen_at == at + timedelta(seconds=60)
    assert not await store.integrations.webhook_seen("missing", at)
