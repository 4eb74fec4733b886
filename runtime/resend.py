"""Resend what is stuck: an operator's request to deliver an invoice again now, with
`NakDost=true` (hr-fiscal-record.md, "Late delivery": an operator can resend).

Used by `fiscobridge invoices resend` and the portal's Resend button. Neither the
journal nor the fiscalizer's entry holds the invoice itself, so the request is built
from the `InvoiceSigned` of the invoice's last reported attempt (found on
`invoices.signed` by the message id the journal recorded) and goes to
`invoices.resend` as an `InvoiceRetry` with `resend=true`. The fiscalizer signs it
again only while that attempt is the invoice's latest and it is not fiscalized
(services/fiscalizer/rules.py, on_retry), so a replayed or doubled resend signs
nothing and a fiscalized invoice is never reported again.

An invoice refused before it was ever signed (blocked, or rejected by the fiscal record)
has no signature to send again: a resend queues it to be read again from the source by
the poller instead (runtime.store.refetch), which delivers it like any other change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from runtime.kafka.clients import partitions_of
from runtime.store.journal import JournalRecord
from runtime.store.refetch import Document, document_of
from schemas.events import InvoiceRetry, InvoiceSigned, InvoiceState
from schemas.topics import INVOICES_RESEND, INVOICES_SIGNED

# What may be resent: not fiscalized, and signed at least once; or refused before it
# was signed (blocked, rejected without a message id): read again from the source.
RESENDABLE = (InvoiceState.RETRYING, InvoiceState.FAILED, InvoiceState.REJECTED,
              InvoiceState.BLOCKED)
# How far before its outcome an attempt's signature is looked for: the attempt waited
# for its retry time before it was signed, then for CIS (both bounded by settings far
# below this).
LOOK_BACK = timedelta(hours=1)


class RequestsRefetch(Protocol):
    """Queues documents to be read again (runtime.store.Store.refetch)."""

    async def request(self, uid: str, documents: Iterable[Document], reason: str) -> int: ...


@dataclass
class Outcome:
    sent: list[str] = field(default_factory=list)  # source ids
    # source id -> why not: a state that is not resendable, or no signature to resend
    refused: dict[str, str] = field(default_factory=dict)
    queued: list[str] = field(default_factory=list)  # never signed: read again from Zoho


def request(signed: InvoiceSigned, now: datetime, who: str) -> InvoiceRetry:
    """The resend of `signed`'s invoice, based on its attempt."""
    return InvoiceRetry(
        integration_uid=signed.integration_uid, invoice=signed.invoice,
        profile=signed.profile, protection_code=signed.protection_code,
        attempt=signed.attempt, first_attempt_at=signed.first_attempt_at, not_before=now,
        reason_code="resend", message=f"Resent by {who}.", occurred_at=now,
        fiscal_number=signed.fiscal_number, resend=True,
        # Whether its outcome was late is not known here; the reporter's count of late
        # invoices may count this one again if the outcome was the first late one.
        late=signed.late,
    )


def why_not(record: JournalRecord) -> str | None:
    if record.state not in RESENDABLE:
        return (f"it is {record.state.value}; only retrying, failed, rejected or blocked "
                "invoices are resent")
    if record.message_id is None and record.state is InvoiceState.RETRYING:
        return "it has no signature on record to send again"
    return None


def never_signed(record: JournalRecord) -> bool:
    """Refused before it was signed: a resend reads it again from the source."""
    return record.message_id is None


async def find_signed(
    consumer: AIOKafkaConsumer, uid: str, wanted: dict[str, datetime]
) -> dict[str, InvoiceSigned]:
    """The signed messages with these ids (message id -> outcome time), read from the
    integration's partition of `invoices.signed` (`consumer` unsubscribed, no group)."""
    if not wanted:
        return {}
    topic = INVOICES_SIGNED.name
    partitions = [tp.partition for tp in await partitions_of(consumer, topic)]
    if not partitions:
        return {}
    # Every topic is keyed by integration uid with the producer's default partitioner.
    tp = TopicPartition(topic, DefaultPartitioner()(uid.encode(), partitions, partitions))
    consumer.assign([tp])
    since = min(wanted.values()) - LOOK_BACK
    start = (await consumer.offsets_for_times({tp: int(since.timestamp() * 1000)}))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    if start is None:
        return {}
    consumer.seek(tp, start.offset)
    found: dict[str, InvoiceSigned] = {}
    ids = {message_id.encode(): message_id for message_id in wanted}
    position, idle = start.offset, 0
    while position < end and len(found) < len(wanted):
        batch = await consumer.getmany(tp, timeout_ms=1000)
        for record in batch.get(tp, []):
            position = record.offset + 1
            if record.offset >= end or record.value is None:
                continue
            # Cheap test before parsing: the id appears in the record's JSON.
            hit = next((i for i in ids if i in record.value), None)
            if hit is not None:
                signed = InvoiceSigned.from_json(record.value)
                if signed.message_id == ids[hit] and signed.integration_uid == uid:
                    found[signed.message_id] = signed
        if not batch:
            idle += 1
            if idle >= 10:  # nothing more readable (e.g. only aborted records left)
                break
            position = await consumer.position(tp)
    return found


async def queue_unsigned(
    refetch: RequestsRefetch, uid: str, records: Iterable[JournalRecord], who: str,
    outcome: Outcome,
) -> list[JournalRecord]:
    """Queue the records never signed to be read again; the others, to be resent."""
    rest: list[JournalRecord] = []
    unsigned: list[JournalRecord] = []
    for record in records:
        reason = why_not(record)
        if reason is not None:
            outcome.refused[record.source_invoice_id] = reason
        elif never_signed(record):
            unsigned.append(record)
        else:
            rest.append(record)
    if unsigned:
        await refetch.request(
            uid, [document_of(r.source_invoice_id, r.kind) for r in unsigned],
            f"resent by {who}")
        outcome.queued += [r.source_invoice_id for r in unsigned]
    return rest


async def resend(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, uid: str,
    records: Iterable[JournalRecord], who: str, now: datetime | None = None,
    *, refetch: RequestsRefetch,
) -> Outcome:
    """Publish a resend for each record that may be resent, queue those never signed to
    be read again from the source; say why for the others."""
    now = now or datetime.now(UTC)
    outcome = Outcome()
    wanted: dict[str, JournalRecord] = {}
    for record in await queue_unsigned(refetch, uid, records, who, outcome):
        assert record.message_id is not None
        wanted[record.message_id] = record
    found = await find_signed(consumer, uid,
                              {m: r.last_occurred_at for m, r in wanted.items()})
    for message_id, record in wanted.items():
        signed = found.get(message_id)
        if signed is None:
            outcome.refused[record.source_invoice_id] = (
                "its signed message is no longer on invoices.signed (kept 14 days); the next "
                "delivery from Zoho (poll or webhook) signs it again")
            continue
        retry = request(signed, now, who)
        await producer.send_and_wait(INVOICES_RESEND.name, retry.to_json(), key=retry.key)
        outcome.sent.append(record.source_invoice_id)
    return outcome
