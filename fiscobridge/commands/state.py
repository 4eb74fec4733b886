"""`fiscobridge rebuild-state` — rebuild the projection from the event topics."""

from __future__ import annotations

import click

from fiscobridge.commands import db
from fiscobridge.commands.db import open_store, run
from runtime.settings import KafkaSettings
from runtime.store.rebuild import RebuildRefused, rebuild


@click.command("rebuild-state")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--allow-truncated", is_flag=True,
              help="rebuild even if the topics lost their oldest records (journal entries "
                   "only they held are then lost)")
def rebuild_state(yes: bool, allow_truncated: bool) -> None:
    """Drop the fiscal journal, license usage and integration status, and replay
    `invoices.status` and `integrations.events` from the beginning.

    All in one transaction: on any failure the current state stays. On the embedded
    SQLite store, stop the other services first (the rebuild holds the write lock).
    """
    if not yes:
        click.confirm("Rebuild the projection from the topics?", abort=True)

    async def go() -> None:
        store = await open_store(secrets=False)
        try:
            report = await rebuild(store, KafkaSettings(), topics=db.TOPICS,
                                   allow_truncated=allow_truncated)
        except RebuildRefused as error:
            raise click.ClickException(str(error)) from None
        finally:
            await store.close()
        for topic, n in sorted(report.records.items()):
            click.echo(f"replayed {n} record(s) of {topic}")
        outcomes = ", ".join(f"{o.value} {n}" for o, n in sorted(report.outcomes.items()))
        click.echo(f"events: {outcomes or 'none'}; undecodable: {report.undecodable}")
        click.echo(f"fiscal journal: {report.journal_entries} invoice(s)")
        click.echo("integrations: " + (", ".join(
            f"{status} {n}" for status, n in sorted(report.integrations.items())) or "none"))

    run(go())
