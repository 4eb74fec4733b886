"""`fiscobridge db upgrade|current`, and how every store command opens the store.

With FISCOBRIDGE_DATABASE_URL unset the store is the embedded SQLite file: commands then
migrate it themselves and, without FISCOBRIDGE_MASTER_KEY, use the development key file
(as `fiscobridge dev` does). With a database URL set, the schema must already be
current (`db upgrade`) and the master key must come from the environment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from runtime.settings import StoreSettings
from runtime.store import SchemaOutOfDate, Store
from runtime.store import migrate as migrations
from runtime.store.rebuild import Topics
from runtime.vault import Vault, VaultError

T = TypeVar("T")

# The topics the CLI publishes to and rebuilds from (tests point it at their own).
TOPICS = Topics()


class Refused(click.ClickException):
    """Bad input: nothing was changed (exit code 2, like a usage error)."""

    exit_code = 2


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def open_store(*, secrets: bool = True) -> Store:
    """The store, schema checked (or migrated, when embedded) and master key verified."""
    settings = StoreSettings()
    embedded = not settings.database_url
    try:
        vault = Vault.from_env(settings, allow_dev_keyfile=embedded) if secrets else None
    except VaultError as error:
        raise click.ClickException(str(error)) from None
    store = Store.open(settings.url(), vault=vault)
    try:
        if embedded:
            await store.migrate()
        else:
            await store.require_schema()
        if secrets:
            await store.verify_secrets()
    except (SchemaOutOfDate, VaultError) as error:
        await store.close()
        raise click.ClickException(str(error)) from None
    except BaseException:
        await store.close()
        raise
    return store


@click.group("db")
def db() -> None:
    """The store's database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply migrations (FISCOBRIDGE_DATABASE_URL, default: the embedded SQLite file)."""

    async def go() -> tuple[str | None, str | None]:
        store = Store.open(StoreSettings().url())
        try:
            before = await migrations.current(store.engine)
            await store.migrate(revision)
            return before, await migrations.current(store.engine)
        finally:
            await store.close()

    before, after = run(go())
    if before == after:
        click.echo(f"database schema already at revision {after}")
    else:
        click.echo(f"database schema upgraded from {before or 'empty'} to {after}")


@db.command("current")
def current() -> None:
    """Show the schema revision of the database and the one this code needs."""

    async def go() -> str | None:
        store = Store.open(StoreSettings().url())
        try:
            return await migrations.current(store.engine)
        finally:
            await store.close()

    click.echo(f"database: {run(go()) or 'empty'}; this version needs: {migrations.head()}")
