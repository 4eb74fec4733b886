"""Webhook secrets and integration status, cached so a webhook costs no database read."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from pydantic import SecretStr


@dataclass(frozen=True)
class WebhookTarget:
    uid: str
    status: str
    secret: SecretStr = field(repr=False)


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
