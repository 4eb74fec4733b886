"""Webhook secrets and integration status, cached so a webhook costs no database read."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import SecretStr

# After a signature mismatch the target is read again at most this often: a rotated
# secret works at once instead of after the cache's TTL, and forged webhooks cannot turn
# into a database read each.
RECHECK_SECONDS = 1.0


@dataclass(frozen=True)
class WebhookTarget:
    uid: str
    status: str
    secret: SecretStr = field(repr=False)
    # The secret before the last rotation, accepted until `previous_until` (a grace
    # period for the owner to paste the new one into Zoho Books).
    previous: SecretStr | None = field(default=None, repr=False)
    previous_until: datetime | None = None
    # How its documents are read (the poller reads the same) and where its Zoho is.
    read_options: Mapping[str, Any] = field(default_factory=dict)
    organization_id: str | None = None
    api_domain: str | None = None
    accounts_server: str | None = None
    # Nothing created before it is the integration's (connectors.zoho.rejected).
    starts_at: datetime | None = None
    # Fiscalizes only paid documents (connectors.zoho.rejected.paid_only).
    paid_only: bool = False

    def secrets(self, now: datetime) -> list[str]:
        accepted = [self.secret.get_secret_value()]
        if self.previous is not None and self.previous_until is not None \
                and now < self.previous_until:
            accepted.append(self.previous.get_secret_value())
        return accepted


Loader = Callable[[str], Awaitable[WebhookTarget | None]]


class WebhookDirectory:
    def __init__(self, load: Loader, ttl_seconds: float, unknown_ttl_seconds: float) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._unknown_ttl = unknown_ttl_seconds
        self._cache: dict[str, tuple[float, WebhookTarget | None]] = {}

    async def get(self, uid: str) -> WebhookTarget | None:
        now = time.monotonic()
        hit = self._cache.get(uid)
        if hit is not None:
            ttl = self._ttl if hit[1] is not None else self._unknown_ttl
            if now - hit[0] < ttl:
                return hit[1]
        target = await self._load(uid)
        self._cache[uid] = (now, target)
        return target

    async def recheck(self, uid: str) -> WebhookTarget | None:
        """The target read again, unless the cached one is fresher than RECHECK_SECONDS
        (then None: nothing new to try)."""
        hit = self._cache.get(uid)
        if hit is not None and time.monotonic() - hit[0] < RECHECK_SECONDS:
            return None
        self._cache.pop(uid, None)
        return await self.get(uid)
