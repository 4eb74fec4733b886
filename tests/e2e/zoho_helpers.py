"""Integrations connected to the Zoho Books sandbox, as the portal's connect flow leaves
them: an OAuth grant stored (encrypted) with the connection's organization, accounts
server and API domain. Used by the poller's integration and end-to-end tests."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import TopicPartition
from pydantic import SecretStr

from connectors.zoho.oauth import DEFAULT_SCOPES, TokenSet
from runtime.kafka.clients import consumer as make_consumer
from runtime.kafka.clients import partitions_of
from runtime.settings import KafkaSettings, ZohoClientSettings
from runtime.store.store import Store
from schemas.events import Event, InvoiceReceived
from services.poller.settings import PollerSettings
from tests.fixtures.zoho import ZohoSandboxHandle


@dataclass(frozen=True)
class ZohoGrant:
    """One user's consent for one OAuth client, reaching one organization."""

    client: dict[str, Any]  # client_id, client_secret, redirect_uris
    user: dict[str, Any]
    organization_id: str
    tokens: TokenSet
    accounts_server: str


async def zoho_grant(
    zoho: ZohoSandboxHandle,
    client: dict[str, Any],
    *,
    dc: str = "com",
    limits: dict[str, Any] | None = None,
    scopes: tuple[str, ...] = DEFAULT_SCOPES,
    organization: dict[str, Any] | None = None,
) -> ZohoGrant:
    """A new user and organization in `dc`, and the user's consent, exchanged for tokens.

    `organization`: the sandbox organization's options (plan, inclusive_tax, ...)."""
    user = await zoho.user(dc)
    org = await zoho.organization([user["email"]], limits=limits, **(organization or {}))
    redirect = await zoho.authorize(client, user, scopes=scopes)
    tokens = await zoho.oauth(client).exchange_code(
        redirect["code"], redirect["accounts-server"]
    )
    return ZohoGrant(client, user, org["organization_id"], tokens, redirect["accounts-server"])


async def reauthorize(zoho: ZohoSandboxHandle, grant: ZohoGrant) -> ZohoGrant:
    """The same user consents again (the portal's Reconnect): a new refresh token."""
    redirect = await zoho.authorize(grant.client, grant.user)
    tokens = await zoho.oauth(grant.client).exchange_code(
        redirect["code"], redirect["accounts-server"]
    )
    return ZohoGrant(
        grant.client, grant.user, grant.organization_id, tokens, redirect["accounts-server"]
    )


async def store_connection(store: Store, uid: str, grant: ZohoGrant) -> None:
    assert grant.tokens.refresh_token is not None
    await store.tokens.set(
        uid,
        refresh_token=grant.tokens.refresh_token,
        access_token=grant.tokens.access_token,
        access_expires_at=grant.tokens.expires_at,
    )
    await store.integrations.set_zoho_connection(
        uid,
        organization_id=grant.organization_id,
        accounts_server=grant.accounts_server,
        api_domain=grant.tokens.api_domain,
    )


def poller_env(zoho: ZohoSandboxHandle, client: dict[str, Any]) -> dict[str, str]:
    """The environment a `fiscobridge run poller` needs to reach the sandbox."""
    return {
        "FISCOBRIDGE_ZOHO_CLIENT_ID": client["client_id"],
        "FISCOBRIDGE_ZOHO_CLIENT_SECRET": client["client_secret"],
        "FISCOBRIDGE_ZOHO_ACCOUNTS_SERVERS": ",".join(zoho.accounts_servers),
    }


def poller_settings(
    zoho: ZohoSandboxHandle, client: dict[str, Any], **overrides: Any
) -> PollerSettings:
    """Settings for an in-process poller on the sandbox: every tick polls again, and the
    client-side rate limit and the daily call budget are off (tests that want them set
    them, with the sandbox's)."""
    fields: dict[str, Any] = {
        "zoho": ZohoClientSettings(
            client_id=client["client_id"], client_secret=SecretStr(client["client_secret"]),
            accounts_servers=zoho.accounts_servers,
        ),
        **{f"interval_{tier}": 0.001 for tier in ("trial", "starter", "growth", "scale")},
        "tick": 0.05,
        "lease_ttl": 30,
        "zoho_budget": False,
        "zoho_per_minute": 1_000_000,
        **overrides,
    }
    return PollerSettings(_env_file=None, **fields)


async def read_topic(kafka: KafkaSettings, topic: str, model: type[Event], *,
                     skip_unreadable: bool = False) -> list[Any]:
    """Every event on `topic` from its beginning to its current end; `skip_unreadable`
    passes over records that are not such an event (other tests park garbage there)."""
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        partitions: list[TopicPartition] = await partitions_of(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        events: list[Any] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    if r.value is None:
                        continue
                    try:
                        events.append(model.from_json(r.value))
                    except ValueError:
                        if not skip_unreadable:
                            raise
            await asyncio.sleep(0)
        return events
    finally:
        await consumer.stop()


def versions(events: list[InvoiceReceived], uid: str) -> Counter[tuple[str, datetime]]:
    """How often each (invoice_id, last_modified) of `uid` was published."""
    return Counter(
        (e.invoice.source_id, e.invoice.last_modified_at)
        for e in events
        if e.integration_uid == uid
    )
