"""`fiscobridge invoices resend` — deliver stuck invoices again now, with NakDost=true.

    fiscobridge invoices resend --integration <uid>                # every one stuck
    fiscobridge invoices resend --integration <uid> --invoice <zoho invoice id>

Stuck: retrying, failed, rejected or blocked in the journal. One refused before it was
signed is read again from Zoho Books at the integration's next poll instead.
runtime/resend.py says how the request is built and why repeating it is harmless.
"""

from __future__ import annotations

import click

from fiscobridge.commands.db import open_store, run
from fiscobridge.commands.integrations import kafka_producer
from runtime import resend as resending
from runtime.kafka import clients
from runtime.settings import KafkaSettings
from runtime.store.journal import JournalRecord

PAGE = 500
WHO = "fiscobridge invoices resend"


@click.group("invoices")
def invoices() -> None:
    """Operator tools for single invoices."""


@invoices.command("resend")
@click.option("--integration", "uid", required=True, metavar="UID")
@click.option("--invoice", "source_ids", multiple=True, metavar="ID",
              help="the invoice's source (Zoho) id; repeatable; default: every stuck invoice")
def resend(uid: str, source_ids: tuple[str, ...]) -> None:
    """Resend stuck invoices (retrying, failed, rejected) as subsequent deliveries; those
    refused before they were signed (blocked, rejected) are read again from Zoho Books."""

    async def go() -> resending.Outcome:
        store = await open_store(secrets=False)
        try:
            records: list[JournalRecord] = []
            missing: list[str] = []
            if source_ids:
                for source_id in source_ids:
                    record = await store.journal.get(uid, source_id)
                    if record is None:
                        missing.append(source_id)
                    else:
                        records.append(record)
            else:
                for state in resending.RESENDABLE:
                    offset = 0
                    while page := await store.journal.entries(uid, state=state, limit=PAGE,
                                                              offset=offset):
                        records += page
                        offset += PAGE
            outcome = resending.Outcome()
            # Those never signed are queued to be read again; the rest need the broker.
            signed = await resending.queue_unsigned(store.refetch, uid, records, WHO, outcome)
            if signed:
                consumer = clients.consumer(KafkaSettings(), group_id=None)
                async with kafka_producer() as producer:
                    await consumer.start()
                    try:
                        sent = await resending.resend(consumer, producer, uid, signed, who=WHO,
                                                      refetch=store.refetch)
                    finally:
                        await clients.stop_consumer(consumer)
                outcome.sent += sent.sent
                outcome.refused.update(sent.refused)
        finally:
            await store.close()
        for source_id in missing:
            outcome.refused[source_id] = "no such invoice in the journal"
        return outcome

    outcome = run(go())
    for source_id in outcome.sent:
        click.echo(f"resent {source_id}")
    for source_id in outcome.queued:
        click.echo(f"queued {source_id}: never signed; read again from Zoho Books at the "
                   "integration's next poll, and fiscalized unless something still refuses it")
    for source_id, reason in sorted(outcome.refused.items()):
        click.echo(f"not resent {source_id}: {reason}", err=True)
    queued = f", {len(outcome.queued)} queued to be read again" if outcome.queued else ""
    click.echo(f"{len(outcome.sent)} resent{queued}, {len(outcome.refused)} not")
    if source_ids and outcome.refused:
        raise SystemExit(1)
