"""What the fiscalizer needs to know about an integration, cached.

Reading the store and loading a PKCS#12 file per invoice would cost more than signing
it; integrations change rarely, so views are cached for a short time and dropped at
once when an `IntegrationEvent` for the integration passes by.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from fiscal.authority import Authority
from schemas.errors import CodedError
from services.fiscalizer.rules import Trigger


class IntegrationUnusable(CodedError):
    code = "integration_unusable"


@dataclass(frozen=True)
class IntegrationView:
    uid: str
    status: str
    tier: str
    # The integration's tax authority and its settings, as the authority validated them.
    authority: Authority = field(repr=False, compare=False)
    fiscal_settings: Any
    pfx: bytes = field(repr=False)
    pfx_password: SecretStr
    trigger: Trigger = Trigger.ISSUED
    starts_at: datetime | None = None  # nothing created before it is fiscalized

    def credentials(self) -> Any:
        """The loaded certificate (the authority caches it); CredentialsError when it
        cannot be used now."""
        return self.authority.credentials(
            self.pfx, self.pfx_password.get_secret_value(), self.fiscal_settings
        )


Loader = Callable[[str], Awaitable[IntegrationView | None]]


class IntegrationDirectory:
    default_trigger = Trigger.ISSUED

    def __init__(self, load: Loader, ttl_seconds: float = 30.0) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._views: dict[str, tuple[float, IntegrationView | None]] = {}

    async def get(self, uid: str) -> IntegrationView | None:
        hit = self._views.get(uid)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        view = await self._load(uid)
        self._views[uid] = (time.monotonic(), view)
        return view

    def invalidate(self, uid: str) -> None:
        self._views.pop(uid, None)
