"""Migrations: from empty, from the previous revision with data in it, and in step
with the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from runtime.settings import StoreSettings
from runtime.store import SchemaOutOfDate, Store
from runtime.store import migrate as migrations
from runtime.store.models import Base
from runtime.store.setup import prepare_embedded_store
from tests.fixtures.store import Database

PROJECTION_TABLES = {"fiscal_journal", "license_usage", "processed_events"}


async def _tables(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_revisions_form_a_sequence() -> None:
    assert migrations.head() == "0012"


async def test_applies_from_empty(database: Database) -> None:
    store = Store.open(database.url)
    try:
        assert await migrations.current(store.engine) is None
        with pytest.raises(SchemaOutOfDate, match="fiscobridge db upgrade"):
            await store.require_schema()
        await store.migrate()
        assert await migrations.current(store.engine) == "0012"
        await store.require_schema()
        assert {t.name for t in Base.metadata.sorted_tables} <= await _tables(store)
        await store.migrate()  # a second run is a no-op
        assert await migrations.current(store.engine) == "0012"
    finally:
        await store.close()


async def test_upgrades_from_previous_revision_keeping_data(database: Database) -> None:
    store = Store.open(database.url)
    try:
        await store.migrate("0001")
        assert not PROJECTION_TABLES & await _tables(store)
        created = datetime(2025, 3, 1, 12, tzinfo=UTC)
        async with store.engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO accounts (id, name, created_at) VALUES ('a1', 'Obrt', :t)"),
                {"t": created.replace(tzinfo=None) if database.backend == "sqlite" else created},
            )
            await conn.execute(
                text(
                    "INSERT INTO integrations (uid, account_id, type, status, tier, created_at,"
                    " fiscal_profile, fiscal_settings, webhook_secret) VALUES ('int-1', 'a1',"
                    " 'zoho_books', 'active', 'growth', :t, 'hr-cis', :s, :w)"
                ),
                {
                    "t": created.replace(tzinfo=None) if database.backend == "sqlite" else created,
                    "s": '{"oib": "69435151530"}',
                    "w": b"\x01ciphertext",
                },
            )
        await store.migrate()
        assert PROJECTION_TABLES <= await _tables(store)
        record = await store.integrations.get("int-1")
        assert record is not None
        assert (record.status, record.tier, record.created_at) == ("active", "growth", created)
        assert record.fiscal_settings == {"oib": "69435151530"}
        assert record.status_changed_at is None  # column added by 0002, empty for old rows
    finally:
        await store.close()


async def test_upgrade_gives_a_shared_organization_to_its_first_integration(
    database: Database,
) -> None:
    """Before 0003 two integrations could hold one Zoho organization; after it the first
    keeps it and the other is inactive, with a reason naming the holder."""
    store = Store.open(database.url)
    try:
        await store.migrate("0002")
        first = datetime(2025, 3, 1, 12, tzinfo=UTC)
        second = datetime(2025, 4, 1, 12, tzinfo=UTC)

        def at(t: datetime) -> datetime:
            return t.replace(tzinfo=None) if database.backend == "sqlite" else t

        async with store.engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO accounts (id, name, created_at) VALUES ('a1', 'Obrt', :t)"),
                {"t": at(first)},
            )
            for uid, created, status, org in (
                ("int-1", first, "active", "777"), ("int-2", second, "active", "777"),
                ("int-3", second, "pending", None), ("int-4", first, "removed", "888"),
                ("int-5", second, "active", "888"),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO integrations (uid, account_id, type, status, tier,"
                        " created_at, fiscal_profile, fiscal_settings, webhook_secret,"
                        " zoho_organization_id) VALUES (:u, 'a1', 'zoho_books', :st, 'growth',"
                        " :t, 'hr-cis', '{}', :w, :o)"
                    ),
                    {"u": uid, "t": at(created), "st": status, "w": b"\x01", "o": org},
                )
        await store.migrate()
        records = {r.uid: r for r in await store.integrations.find()}
        assert records["int-1"].status == "active"
        assert records["int-1"].starts_at == first
        assert records["int-2"].status == "inactive"
        assert "int-1" in (records["int-2"].status_reason or "")
        assert records["int-3"].starts_at is None  # never connected: starts when it is
        assert records["int-5"].status == "active"  # int-4 was removed: 888 was free
        assert await store.integrations.holder_of("777") == "int-1"
        assert await store.integrations.holder_of("888") == "int-5"
    finally:
        await store.close()


async def test_downgrade_then_upgrade_round_trips(database: Database) -> None:
    store = Store.open(database.url)
    try:
        await store.migrate()
        await migrations.downgrade(store.engine, "0001")
        assert await migrations.current(store.engine) == "0001"
        assert not PROJECTION_TABLES & await _tables(store)
        await store.migrate()
        assert await migrations.current(store.engine) == "0012"
    finally:
        await store.close()


async def test_migrations_match_the_models(database: Database) -> None:
    store = Store.open(database.url)
    try:
        await store.migrate()
        async with store.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}),
                    Base.metadata,
                )
            )
        assert diff == []
    finally:
        await store.close()


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    store = Store.open(f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
    try:
        await store.migrate()
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 30_000
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await store.close()


async def test_prepare_embedded_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    settings = StoreSettings(database_url="", master_key=None)
    # Runs its own event loop, as `fiscobridge dev` calls it from a plain function.
    assert await asyncio.to_thread(prepare_embedded_store, settings) == {}
    assert (tmp_path / "master.key").exists()
    store = Store.open(settings.url())
    try:
        assert await migrations.current(store.engine) == migrations.head()
    finally:
        await store.close()
