"""What the write-back stage does with one fiscalized invoice: which values go where, and
the outcome (written_back | waiting | failed) that the portal shows.

Rules:
- A `fiscalized` status with a JIR is written back (the final write: fiscal number, ZKI,
  JIR, QR with `jir=`); a write-back never blocks or repeats a fiscalization, it only
  follows it.
- Before the JIR: an invoice signed but not yet fiscalized (a `retrying` status with its
  ZKI and fiscal number, e.g. while CIS is unreachable and it waits for a subsequent
  delivery) gets the fields its authority renders without a receipt (hr-cis: fiscal
  number, ZKI and the QR with `zki=`; V-SDC: nothing), so the customer can print a valid
  invoice meanwhile. Its outcome is `waiting` with reason ZKI_WRITTEN: `written_back`
  means the final fields are on the document, and only the JIR's write says so.
  This early write happens once per invoice and never after the final one: it is made
  only while the invoice's latest recorded outcome (`written`, the store's) is none or
  another `waiting` (not yet written) and the invoice has no JIR yet (`has_receipt`,
  the journal's: a retried change of a fiscalized invoice is such a status too); after
  ZKI_WRITTEN, `written_back` or `failed` a status without a JIR changes nothing,
  however late or often it arrives. Without `written` (no store to ask) there is no
  early write. A storno that goes as a comment
  is written only with its JIR (the comment is added once). Every other status is
  ignored (no outcome).
- The values go into the invoice custom fields the integration maps
  (`integrations.writeback_fields`); with none mapped the outcome is waiting.
- Writing the same values again is harmless (Zoho's PUT sets them), so a redelivered
  status is simply written again.
- A storno of a voided invoice (source id ending ':storno') has no Zoho document of its
  own: its fiscal data go as a comment onto the invoice it takes back, once: a redelivered
  or replayed status finds the comment there (by the storno's fiscal number) and adds
  none.
- A credit note is fiscalized as its own storno: its fiscal data go into the credit
  note's custom fields mapped under `creditnote.<role>`; with none mapped it waits.
- A write-back waiting for its mapping is written once the mapping is set: setting it
  announces a `settings_changed` integration event with `writeback_fields` in its details,
  and the service re-drives that integration's waiting write-backs (`redrive`). A status
  answered "waiting" while the mapping was being set looks at the mapping once more
  after its outcome is recorded, so neither side misses the other.
- A transient Zoho failure is retried with capped backoff for as long as it takes (the
  first one publishes waiting, so the portal says so); one that needs the customer is
  failed, with what to do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import DBAPIError

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.writeback import (
    Action,
    Failure,
    FieldMap,
    add_storno_comment,
    write_back,
)
from fiscal.authorities import DEFAULT_AUTHORITY, Authorities, authority_of
from runtime.store.integrations import IntegrationRecord
from runtime.store.writeback import WriteBackOutcome
from schemas.events import InvoiceState, InvoiceStatus, WriteBackState, WriteBackStatus
from schemas.invoice import STORNO_SUFFIX, DocumentKind
from services.writeback.sessions import NotConnected

log = logging.getLogger("fiscobridge.writeback")

NO_MAPPING = "no custom fields mapped"
NO_CREDIT_NOTE_MAPPING = "no credit note custom fields mapped"
MAPPING_WAITS = (NO_MAPPING, NO_CREDIT_NOTE_MAPPING)


class Stopping(Exception):
    """The stage is stopping while a write-back waits to be retried: the record stays
    uncommitted and is read again by the partition's next owner."""


ZKI_WRITTEN = ("fiscal number, ZKI and QR code (zki=) are on the invoice; the JIR is "
               "written once the tax authority gives it")


def due(status: InvoiceStatus) -> bool:
    """Whether this status is one to write back (a fiscalized invoice with its JIR)."""
    return status.state is InvoiceState.FISCALIZED and bool(status.receipt_id)


def before_receipt(status: InvoiceStatus) -> bool:
    """Whether this status is of an invoice signed but not fiscalized yet: retried with
    its ZKI and fiscal number, no receipt (the early write's, once)."""
    return (status.state is InvoiceState.RETRYING and not status.receipt_id
            and bool(status.protection_code) and bool(status.fiscal_number))


def early_write_open(last: WriteBackOutcome | None) -> bool:
    """Whether an early (pre-JIR) write may still be made after the invoice's latest
    recorded outcome: nothing is written yet. After the early write (ZKI_WRITTEN), the
    final one (written_back) or a refusal (failed) it must not be made: it would repeat
    itself, take the JIR's place on the document or hide what the customer must fix."""
    if last is None:
        return True
    return last.state == WriteBackState.WAITING.value and last.reason != ZKI_WRITTEN


_AUTHORITIES = Authorities()


def values_of(status: InvoiceStatus, authority: str = DEFAULT_AUTHORITY) -> dict[str, str]:
    """role -> value, for the roles of connectors.zoho.writeback.ROLES this status has, as
    the integration's tax authority renders its receipt (fiscal/authority.py)."""
    return _AUTHORITIES.get(authority).receipt_fields(status)


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
Written = Callable[[str, str], Awaitable[WriteBackOutcome | None]]
HasReceipt = Callable[[str, str], Awaitable[bool]]
LoadIntegration = Callable[[str], Awaitable[IntegrationRecord | None]]
ClientOf = Callable[[IntegrationRecord], Awaitable[ZohoBooksClient]]


class RecentIntegrations:
    """The store's integration records, each kept for `ttl`: one read per integration and
    interval, not one per invoice. The write-back forgets a record when an event of its
    integration arrives (a mapping set, a reconnect), and before a look that must see
    the store as it is now."""

    def __init__(self, load: LoadIntegration, ttl: timedelta,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._ttl = ttl.total_seconds()
        self._clock = clock
        self._records: dict[str, tuple[float, IntegrationRecord | None]] = {}

    async def __call__(self, uid: str) -> IntegrationRecord | None:
        hit = self._records.get(uid)
        if hit is not None and self._clock() - hit[0] < self._ttl:
            return hit[1]
        record = await self._load(uid)
        self._records[uid] = (self._clock(), record)
        return record

    def forget(self, uid: str) -> None:
        self._records.pop(uid, None)


class WriteBackStage:
    def __init__(
        self, load: LoadIntegration, client_of: ClientOf, backoff: Backoff,
        *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        written: Written | None = None, has_receipt: HasReceipt | None = None,
    ) -> None:
        """`written(integration_uid, source_id)`: the invoice's latest recorded outcome
        (the store's `writebacks.get`); without it no early (pre-JIR) write is made.
        `has_receipt(integration_uid, source_id)`: whether the invoice is known to be
        fiscalized with its receipt (the journal's), so no early write either."""
        self.load = load
        self.written = written
        self.has_receipt = has_receipt
        self.client_of = client_of
        self.backoff = backoff
        self.clock = clock
        # One write-back per document at a time in this process: two deliveries of a
        # storno must not both find no comment and both add one, and an early write's
        # look at what was written must not pass while the JIR's write is under way.
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    async def process(
        self, status: InvoiceStatus, publish: Publish, stop: asyncio.Event
    ) -> WriteBackStatus | None:
        """Write one status back and publish its final outcome (None: not one to write)."""
        early = not due(status)
        if early and (self.written is None or not before_receipt(status)):
            return None
        key = (status.integration_uid, status.invoice.source_id)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                if early and not await self._early_write_open(status):
                    return None
                return await self._process(status, publish, stop, early=early)
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _early_write_open(self, status: InvoiceStatus) -> bool:
        assert self.written is not None
        uid, source_id = status.integration_uid, status.invoice.source_id
        try:
            if self.has_receipt is not None and await self.has_receipt(uid, source_id):
                return False
            last = await self.written(uid, source_id)
        except (OSError, DBAPIError) as error:
            # Not knowing what is on the document, writing could take the JIR's place:
            # the invoice's next status (another try, or its JIR) writes it instead.
            log.warning("early write-back skipped: the store is unavailable",
                        extra={"error": repr(error)})
            return False
        return early_write_open(last)

    async def _process(
        self, status: InvoiceStatus, publish: Publish, stop: asyncio.Event, *,
        early: bool = False,
    ) -> WriteBackStatus | None:
        attempt = 0
        told_waiting = False
        looked_again = False
        while True:
            attempt += 1
            outcome, failure = await self._try(status, early=early)
            if outcome is None and failure is None:
                return None  # an early write with nothing to write
            if failure is None or failure.action is not Action.RETRY:
                assert outcome is not None
                await publish(outcome)
                if (outcome.state is WriteBackState.WAITING and outcome.reason in MAPPING_WAITS
                        and not looked_again and await self._mapped_now(status)):
                    looked_again = True  # set while this one was answered: write it now
                    continue
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

    def forget(self, uid: str) -> None:
        """The integration changed: read its record from the store again next time."""
        if isinstance(self.load, RecentIntegrations):
            self.load.forget(uid)

    async def _mapped_now(self, status: InvoiceStatus) -> bool:
        self.forget(status.integration_uid)  # the store as it is now
        try:
            record = await self.load(status.integration_uid)
            fields = FieldMap(record.writeback_fields) if record is not None else None
        except (OSError, DBAPIError, ValueError):
            return False  # the mapping's own event re-drives it, or its failure is shown
        return fields is not None and fields.maps(
            credit_note=status.invoice.kind is DocumentKind.CREDIT_NOTE)

    async def _try(
        self, status: InvoiceStatus, *, early: bool = False
    ) -> tuple[WriteBackStatus | None, Failure | None]:
        """One try: the outcome to publish, or the failure to retry (outcome None); both
        None when an early write has nothing to write."""
        ref = status.invoice
        # A voided invoice's storno is kind credit_note (negative amounts) but has no Zoho
        # document of its own: its values go as a comment, never into credit note fields.
        as_comment = ref.source_id.endswith(STORNO_SUFFIX)
        credit_note = ref.kind is DocumentKind.CREDIT_NOTE and not as_comment
        if early and as_comment:
            return None, None
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
        if early and not values:
            return None, None  # the authority prints nothing before its answer (V-SDC)
        try:
            client = await self.client_of(record)
        except NotConnected as why:
            return self._outcome(status, WriteBackState.WAITING, str(why)), None
        if as_comment:
            original = ref.source_id[: -len(STORNO_SUFFIX)]
            added, failure = await add_storno_comment(client, original, values)
            if failure is not None:
                return self._settle(status, failure)
            on = f"invoice {ref.number.removesuffix(' storno')}"
            return self._outcome(status, WriteBackState.WRITTEN_BACK,
                                 f"as a comment on {on}" if added
                                 else f"as a comment on {on} (already there)"), None
        try:
            fields = FieldMap(record.writeback_fields)
        except ValueError as error:
            return self._outcome(status, WriteBackState.FAILED, str(error)), None
        if not fields.maps(credit_note=credit_note):
            return self._outcome(status, WriteBackState.WAITING,
                                 NO_CREDIT_NOTE_MAPPING if credit_note else NO_MAPPING), None
        if early and not fields.values(values, credit_note=credit_note):
            return None, None  # only roles known with the JIR are mapped: they wait for it
        refused = await write_back(client, ref.source_id, fields, values,
                                   credit_note=credit_note)
        if refused is None and early:
            return self._outcome(status, WriteBackState.WAITING, ZKI_WRITTEN), None
        if refused is None:
            unwritten = sorted(fields.mapped_roles(credit_note=credit_note) - set(values))
            document = "credit note" if credit_note else "invoice"
            reason = (f"not known for this {document}: {', '.join(unwritten)}" if unwritten
                      else None)
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
