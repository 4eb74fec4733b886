"""Setting an integration's write-back mapping, the same way from the CLI and the portal.

The mapping (role -> Zoho customfield_id, `connectors.zoho.writeback.FieldMap`) is stored
first, then announced as a `settings_changed` integration event carrying it under
`writeback_fields`. The write-back service reads that event and writes back whatever
waited for a mapping (services/writeback/service.py), so the order matters: an event
read before the store holds the mapping would find nothing to write with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from connectors.zoho.writeback import FieldMap
from schemas.events import IntegrationEvent, IntegrationEventKind

MAPPING_DETAIL = "writeback_fields"

Announce = Callable[[IntegrationEvent], Awaitable[object]]


class StoresMapping(Protocol):
    """What set_mapping needs of the store (runtime.store.Store.integrations)."""

    async def set_writeback_fields(self, uid: str, fields: Mapping[str, str]) -> None: ...


def mapping_event(uid: str, fields: Mapping[str, str], by: str) -> IntegrationEvent:
    return IntegrationEvent(
        integration_uid=uid, kind=IntegrationEventKind.SETTINGS_CHANGED,
        reason=f"write-back mapping set by {by}",
        details={MAPPING_DETAIL: dict(fields)},
    )


def sets_mapping(event: IntegrationEvent) -> bool:
    """Whether this integration event sets the write-back mapping."""
    return event.kind is IntegrationEventKind.SETTINGS_CHANGED and MAPPING_DETAIL in event.details


async def set_mapping(
    integrations: StoresMapping, announce: Announce, uid: str, fields: Mapping[str, str],
    *, by: str,
) -> None:
    """Check, store, then announce the mapping. A bad mapping raises ValueError before
    anything is stored; a failed announcement propagates with the mapping stored (the
    caller says so: setting it again re-drives what waits)."""
    FieldMap(fields)
    await integrations.set_writeback_fields(uid, fields)
    await announce(mapping_event(uid, fields, by))
