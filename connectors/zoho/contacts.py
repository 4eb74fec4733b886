"""The buyer's contact, read when the document itself carries no tax number.

A Croatian organization (Zoho's Global edition) often keeps the buyer's OIB on the
contact (`tax_reg_no`/`vat_reg_no`/`gst_no`, or a contact custom field) and not on the
invoice. `GET /contacts/{contact_id}` (scope `ZohoBooks.contacts.READ`) answers
`{"code": 0, "message": "success", "contact": {...}}`.

One contact is shared by many invoices, and every call counts against the
organization's daily cap: contacts are cached per (organization, contact) for `ttl`
(default one hour; a tax number rarely changes, and an edited one is read again after
that), concurrent requests for one contact share one call, and a contact Zoho says does
not exist (404, code 1002) is cached as absent too. A grant without the contacts scope
(connected before it was asked for: 401, code 57) stops further contact calls for that
client; its invoices map without the contact until the customer reconnects.
Throttling, outages and a spent daily quota are raised: the caller retries the document
later rather than map it without a tax number it would otherwise have had.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.errors import ZohoApiError

__all__ = ["CONTACTS_SCOPE_MISSING", "ContactCache"]

SCOPE_MISSING = 57
NOT_FOUND = 1002
CONTACTS_SCOPE_MISSING = "contacts"  # the marker in ZohoBooksClient.scopes_missing

Contact = Mapping[str, Any]


class ContactCache:
    def __init__(
        self,
        *,
        ttl: timedelta = timedelta(hours=1),
        max_entries: int = 10_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], tuple[datetime, Contact | None]] = (
            OrderedDict()
        )
        self._pending: dict[tuple[str, str], asyncio.Future[Contact | None]] = {}
        self.calls = 0  # contact reads sent to Zoho (the client's limiter counts them too)

    def peek(self, organization_id: str, contact_id: str) -> tuple[Contact | None] | None:
        """The fresh cached answer as a 1-tuple (its contact may be None: Zoho has
        none), or None when it must be read."""
        hit = self._entries.get((organization_id, contact_id))
        if hit is None or self._clock() - hit[0] >= self.ttl:
            return None
        return (hit[1],)

    async def get(self, client: ZohoBooksClient, contact_id: str) -> Contact | None:
        """The contact, from the cache while fresh; None when Zoho has none or the grant
        may not read contacts."""
        key = (client.organization_id, contact_id)
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            self._entries.move_to_end(key)
            return hit[1]
        if CONTACTS_SCOPE_MISSING in client.scopes_missing:
            return None
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Contact | None] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            contact = await self._read(client, contact_id)
        except BaseException as error:
            if isinstance(error, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(error)
                future.exception()  # retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(contact)
            if CONTACTS_SCOPE_MISSING not in client.scopes_missing:
                self._entries[key] = (self._clock(), contact)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return contact
        finally:
            del self._pending[key]

    async def _read(self, client: ZohoBooksClient, contact_id: str) -> Contact | None:
        self.calls += 1
        try:
            return await client.contact(contact_id)
        except ZohoApiError as error:
            if error.http_status == 404 or error.code == NOT_FOUND:
                return None
            if error.http_status == 401 and error.code == SCOPE_MISSING:
                client.scopes_missing.add(CONTACTS_SCOPE_MISSING)
                return None
            raise

    def forget(self, organization_id: str, contact_id: str) -> None:
        self._entries.pop((organization_id, contact_id), None)
