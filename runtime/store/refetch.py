"""Documents to read again from the source, by id, at the integration's next poll.

Rule: an invoice refused before it was signed (shown `blocked`, or `rejected` by the
fiscal record: no message id) was issued all the same and must still be fiscalized
once what refused it is put right. When the fix is in Zoho, the edit brings the
document back through webhook or poll by itself. When it is on FiscoBridge's side
(a plan with room, the tax mapping, the read options, a certificate, a reconnect),
nothing in Zoho changes, so nothing would bring it back: every such change queues the
integration's stuck documents here (`requeue_stuck`, applied with the change's event by
runtime.store.projection), as does a person's resend of one of them (runtime.resend).
A refusal decided before such a change but projected after it was not there to be
queued: the projection queues it when it comes (`let_through_at`).

The poller reads the queued documents of an integration by id at its next poll,
publishes them with the poll's changes, and then `done` deletes their requests.
Publishing one again is safe: the fiscalizer's per-invoice state makes every delivery
idempotent, and a document still refused is shown blocked again with its reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from runtime.store.models import JournalEntry, RefetchRequest
from runtime.store.repository import Repository
from schemas.events import InvoiceState
from schemas.invoice import STORNO_SUFFIX, DocumentKind

# Shown so, and never signed: what was refused before a signature existed.
STUCK_STATES = (InvoiceState.BLOCKED.value, InvoiceState.REJECTED.value)
REASON_LENGTH = 200


@dataclass(frozen=True)
class Document:
    source_invoice_id: str
    kind: DocumentKind


def document_of(source_invoice_id: str, kind: str) -> Document:
    """The source document behind a journal row (a storno's is its voided invoice)."""
    if source_invoice_id.endswith(STORNO_SUFFIX):
        return Document(source_invoice_id.removesuffix(STORNO_SUFFIX), DocumentKind.INVOICE)
    return Document(source_invoice_id, DocumentKind(kind))


def _upsert(connection: Connection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(RefetchRequest.__table__)
    # Asked again while queued: the newer request (it makes the integration due again).
    statement = insert.on_conflict_do_update(
        index_elements=["integration_uid", "source_invoice_id"],
        set_={"requested_at": insert.excluded.requested_at, "reason": insert.excluded.reason},
    )
    connection.execute(statement, rows)


def _rows(uid: str, documents: Iterable[Document], at: datetime, reason: str
          ) -> list[dict[str, Any]]:
    unique = {d.source_invoice_id: d for d in documents}
    return [
        {"integration_uid": uid, "source_invoice_id": d.source_invoice_id,
         "kind": d.kind.value, "requested_at": at, "reason": reason[:REASON_LENGTH]}
        for _, d in sorted(unique.items())
    ]


def queue(connection: Connection, uid: str, documents: Iterable[Document], at: datetime,
          reason: str) -> int:
    """Queue `documents` of the integration; the number queued. Within the caller's
    transaction."""
    rows = _rows(uid, documents, at, reason)
    _upsert(connection, rows)
    return len(rows)


def requeue_stuck(connection: Connection, uid: str, at: datetime, reason: str) -> int:
    """Queue every document of the integration that was refused before it was signed;
    the number queued. Within the caller's transaction."""
    journal = JournalEntry.__table__
    found = connection.execute(
        select(journal.c.source_invoice_id, journal.c.kind).where(
            journal.c.integration_uid == uid,
            journal.c.state.in_(STUCK_STATES),
            journal.c.message_id.is_(None),
        )
    )
    return queue(connection, uid, (document_of(r.source_invoice_id, r.kind) for r in found),
                 at, reason)


class Refetches(Repository):
    async def request(
        self, uid: str, documents: Iterable[Document], reason: str,
        *, now: datetime | None = None,
    ) -> int:
        rows = _rows(uid, documents, now or datetime.now(UTC), reason)
        async with self._tx() as session:
            await session.run_sync(lambda s: _upsert(s.connection(), rows))
        return len(rows)

    async def pending(self, uid: str, *, limit: int) -> list[Document]:
        """The integration's queued documents, oldest request first."""
        table = RefetchRequest.__table__
        async with self._tx() as session:
            result = await session.execute(
                select(table.c.source_invoice_id, table.c.kind)
                .where(table.c.integration_uid == uid)
                .order_by(table.c.requested_at, table.c.source_invoice_id)
                .limit(limit)
            )
            return [Document(r.source_invoice_id, DocumentKind(r.kind)) for r in result]

    async def requested(self) -> dict[str, datetime]:
        """Each integration with queued documents: its newest request."""
        table = RefetchRequest.__table__
        async with self._tx() as session:
            result = await session.execute(
                select(table.c.integration_uid, func.max(table.c.requested_at))
                .group_by(table.c.integration_uid)
            )
            return {uid: at for uid, at in result}

    async def done(self, uid: str, documents: Sequence[Document],
                   *, requested_before: datetime) -> int:
        """Delete the requests of these documents made before `requested_before` (the
        poll's start: a request made during the poll waits for the next one)."""
        if not documents:
            return 0
        ids = sorted({d.source_invoice_id for d in documents})
        async with self._tx() as session:
            result = await session.execute(
                delete(RefetchRequest).where(
                    RefetchRequest.integration_uid == uid,
                    RefetchRequest.source_invoice_id.in_(ids),
                    RefetchRequest.requested_at < requested_before,
                )
            )
            return int(getattr(result, "rowcount", 0) or 0)
