"""`fiscobridge secrets new-key|status|rotate` — the master key under the stored secrets.

Rotating, step by step:
  1. `fiscobridge secrets new-key` and put it first in FISCOBRIDGE_MASTER_KEY, keeping
     the old key after it: `FISCOBRIDGE_MASTER_KEY=new:<key>,old:<key>`; restart services
     (they write with the new key and still read the old one).
  2. `fiscobridge secrets rotate` re-encrypts every stored secret under the new key, in
     small transactions, while the services keep running. It can be run again at will.
  3. Remove the old key from FISCOBRIDGE_MASTER_KEY and restart services.
"""

from __future__ import annotations

import click

from fiscobridge.commands.db import open_store, run
from runtime.vault import new_key


@click.group("secrets")
def secrets() -> None:
    """Master key of the stored secrets: generate, inspect, rotate."""


@secrets.command("new-key")
@click.option("--id", "key_id", default=None, help="prefix the key with 'ID:'")
def new_key_cmd(key_id: str | None) -> None:
    """Print a fresh master key for FISCOBRIDGE_MASTER_KEY."""
    key = new_key()
    click.echo(f"{key_id}:{key}" if key_id else key)


@secrets.command("status")
def status() -> None:
    """Which master keys protect how many stored secrets."""

    async def go() -> None:
        store = await open_store()
        try:
            assert store.vault is not None
            usage = await store.key_usage()
            click.echo(f"current key: {store.vault.current_key_id}")
            for key_id, n in sorted(usage.items()):
                click.echo(f"  {key_id}: {n} secret(s)")
            stale = sum(n for key_id, n in usage.items() if key_id != store.vault.current_key_id)
            click.echo(f"{stale} secret(s) under older keys"
                       + ("; run `fiscobridge secrets rotate`" if stale else ""))
        finally:
            await store.close()

    run(go())


@secrets.command("rotate")
@click.option("--batch-size", default=50, show_default=True, type=click.IntRange(1, 10_000),
              help="rows re-encrypted per transaction")
def rotate(batch_size: int) -> None:
    """Re-encrypt every stored secret under the current (first) master key."""

    async def go() -> None:
        store = await open_store()
        try:
            assert store.vault is not None
            report = await store.rotate_secrets(batch_size=batch_size)
            click.echo(f"re-encrypted {report.total_rewrapped} secret(s) under key "
                       f"{store.vault.current_key_id!r}; {report.already_current} already were")
            for column, n in sorted(report.rewrapped.items()):
                click.echo(f"  {column}: {n}")
            old = [k for k in store.vault.key_ids if k != store.vault.current_key_id]
            if old and set(await store.key_usage()) == {store.vault.current_key_id}:
                click.echo(f"no secret needs {', '.join(old)} any more; remove it from "
                           "FISCOBRIDGE_MASTER_KEY")
        finally:
            await store.close()

    run(go())
