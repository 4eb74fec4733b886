"""What the write-back stage does with one fiscalized invoice: which values go where, and
the outcome (written_back | waiting | failed) that the portal shows.

Rules:
- Only a `fiscalized` status with a JIR is written back; every other status is ignored
  (no outcome): a write-back never blocks or repeats a fiscalization, it only follows it.
- The values go into the invoice custom fields the integration maps
  (`integrations.writeback_fields`); with none mapped the outcome is waiting.
- Writing the same values again is harmless (Zoho's PUT sets them), so a redelivered
  status is simply written again.
- A storno (source id ending ':storno') has no Zoho invoice of its own: its fiscal data
  go as a comment onto the invoice it takes back.
- A credit note is a Zoho credit note, whose custom fields the connector cannot write
  yet: waiting, with that reason.
- A transient Zoho failure is retried with capped backoff for as long as it takes (the
  first one publishes waiting, so the portal says so); one that needs the customer is
  failed, with what to do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.errors import ZohoError
from connectors.zoho.writeback import Action, Failure, FieldMap, classify, write_back
from fiscal.authorities import DEFAULT_AUTHORITY, Authorities, authority_of
from runtime.store.integrations import IntegrationRecord
from schemas.events import InvoiceState, InvoiceStatus, WriteBackState, WriteBackStatus
from schemas.invoice import DocumentKind
from services.writeback.sessions import NotConnected

log = logging.getLogger("fiscobridge.writeback")

STORNO_SUFFIX = ":storno"  # the fiscalizer keys a storno apart from its invoice this way
NO_MAPPING = "no custom fields mapped"
CREDIT_NOTE_WAITING = (
    "a Zoho credit note's custom fields cannot be written by FiscoBridge yet: print its"
    " fiscal number, ZKI, JIR and QR code from the portal"
)


class Stopping(Exception):
    """The stage is stopping while a write-back waits to be retried: the record stays
    uncommitted and is read again by the partition's next owner."""


def due(status: InvoiceStatus) -> bool:
    """Whether this status is one to write back (a fiscalized invoice with its JIR)."""
    return status.state is InvoiceState.FISCALIZED and bool(status.receipt_id)


_AUTHORITIES = Authorities()


def values_of(status: InvoiceStatus, authority: str = DEFAULT_AUTHORITY) -> dict[str, str]:
    """role -> value, for the roles of connectors.zoho.writeback.ROLES this status has, as
    the integration's tax authority renders its receipt (fiscal/authority.py)."""
    return _AUTHORITIES.get(authority).receipt_fields(status)


def comment_text(values: dict[str, str]) -> str:
    labels = (("fiscal_number", "Broj storno računa"), ("zki", "ZKI"), ("jir", "JIR"),
              ("qr_url", "QR"))
    lines = [f"{label}: {values[role]}" for role, label in labels if role in values]
    return "Fiskalizirani storno (FiscoBridge)\n" + "\n".join(lines)


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int, retry_at: datetime | None, now: datetime) -> float:
        """Seconds before try `attempt + 1`: doubling from base, never above cap; Zoho's
        own retry_at (a throttle, a spent quota) is waited for, in steps of at most cap."""
        delay = min(self.base * 2 ** (attempt - 1), self.cap)
        if retry_at is not None:
            delay = max(delay, min((retry_at - now).total_seconds(), self.cap))
        return delay


Publish = Callable[[WriteBackStatus], Awaitable[None]]
LoadIntegration = Callable[[str], Awaitable[IntegrationRecord | None]]
ClientOf = Callable[[IntegrationRecord], Awaitable[ZohoBooksClient]]


class WriteBackStage:
    def __init__(
        self, load: LoadIntegration, client_of: ClientOf, backoff: Backoff,
        *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.load = load
        self.client_of = client_of
        self.backoff = backoff
        self.clock = clock

    async def process(
        self, status: InvoiceStatus, publish: Publish, stop: asyncio.Event
    ) -> WriteBackStatus | None:
        """Write one status back and publish its final outcome (None: not one to write)."""
        if not due(status):
            return None
        attempt = 0
        told_waiting = False
        while True:
            attempt += 1
            outcome, failure = await self._try(status)
            if failure is None or failure.action is not Action.RETRY:
                assert outcome is not None
                await publish(outcome)
                return outcome
            if not told_waiting:  # once, so the portal says why it is not there yet
                told_waiting = True
                await publish(self._outcome(status, WriteBackState.WAITING,
                                            f"Zoho is not available, retrying: {failure.reason}"))
            delay = self.backoff.delay(attempt, failure.retry_at, self.clock())
            log.info("write-back retry", extra={"attempt": attempt, "delay": delay,
                                                "reason": failure.reason})
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                continue
            raise Stopping(failure.reason)

    async def _try(self, status: InvoiceStatus) -> tuple[WriteBackStatus | None, Failure | None]:
        """One try: the outcome to publish, or the failure to retry (outcome None)."""
        ref = status.invoice
        if ref.kind is DocumentKind.CREDIT_NOTE:
            return self._outcome(status, WriteBackState.WAITING, CREDIT_NOTE_WAITING), None
        try:
            record = await self.load(status.integration_uid)
        except (OSError, DBAPIError) as error:  # the store is down: wait for it, lose nothing
            return None, Failure(Action.RETRY, f"the store is unavailable ({type(error).__name__})")
        if record is None:
            return self._outcome(status, WriteBackState.WAITING,
                                 "the integration is not known to the store"), None
        if record.type != "zoho_books":
            return self._outcome(status, WriteBackState.WAITING,
                                 f"write-back is not available for {record.type}"), None
        values = values_of(status, authority_of(record.fiscal_settings))
        try:
            client = await self.client_of(record)
        except NotConnected as why:
            return self._outcome(status, WriteBackState.WAITING, str(why)), None
        if ref.source_id.endswith(STORNO_SUFFIX):
            original = ref.source_id[: -len(STORNO_SUFFIX)]
            try:
                await client.add_comment(original, comment_text(values))
            except ZohoError as error:
                return self._settle(status, classify(error))
            return self._outcome(status, WriteBackState.WRITTEN_BACK,
                                 f"as a comment on invoice {ref.number.removesuffix(' storno')}"
                                 ), None
        if not record.writeback_fields:
            return self._outcome(status, WriteBackState.WAITING, NO_MAPPING), None
        try:
            fields = FieldMap(record.writeback_fields)
        except ValueError as error:
            return self._outcome(status, WriteBackState.FAILED, str(error)), None
        refused = await write_back(client, ref.source_id, fields, values)
        if refused is None:
            unwritten = sorted(set(fields.fields) - set(values))
            reason = f"not known for this invoice: {', '.join(unwritten)}" if unwritten else None
            return self._outcome(status, WriteBackState.WRITTEN_BACK, reason), None
        return self._settle(status, refused)

    def _settle(
        self, status: InvoiceStatus, failure: Failure
    ) -> tuple[WriteBackStatus | None, Failure | None]:
        if failure.action is Action.RETRY:
            return None, failure
        return self._outcome(status, WriteBackState.FAILED, failure.reason), failure

    def _outcome(
        self, status: InvoiceStatus, state: WriteBackState, reason: str | None
    ) -> WriteBackStatus:
        return WriteBackStatus(
            integration_uid=status.integration_uid, source_id=status.invoice.source_id,
            state=state, reason=reason, fiscal_number=status.fiscal_number,
            status_event_id=status.event_id,
        )
