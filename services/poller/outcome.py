"""What a poll's ending means for the integration and for the next poll. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connectors.zoho.errors import (
    ClientInvalid,
    DailyLimitReached,
    RateLimited,
    RefreshLimitReached,
    TokenInvalid,
    ZohoError,
)


class PollOutcome(StrEnum):
    OK = "ok"
    RATE_LIMITED = "rate_limited"  # stopped early by the per-minute limit; progress kept
    DAILY_LIMIT = "daily_limit"  # the organization's quota is spent until its reset
    REFRESH_LIMIT = "refresh_limit"  # Zoho's 10 token refreshes per 10 minutes are used
    TOKEN_INVALID = "token_invalid"  # the grant is gone: inactive until reconnected
    CLIENT_INVALID = "client_invalid"  # our OAuth client id/secret is refused
    LEASE_BUSY = "lease_busy"  # another poller holds the integration
    PUBLISH_FAILED = "publish_failed"  # the broker did not ack: watermark kept
    NOT_CONFIGURED = "not_configured"  # no Zoho OAuth client, or no grant stored
    ERROR = "error"  # Zoho unreachable or refusing for another reason


@dataclass(frozen=True)
class Ending:
    outcome: PollOutcome
    retry_at: datetime | None = None  # the next poll must not start before this


def ending_of(error: ZohoError | None) -> Ending:
    """How a sync that stopped on `error` (None: completed) ends the poll."""
    if error is None:
        return Ending(PollOutcome.OK)
    if isinstance(error, TokenInvalid):
        return Ending(PollOutcome.TOKEN_INVALID)
    if isinstance(error, RefreshLimitReached):
        return Ending(PollOutcome.REFRESH_LIMIT, error.retry_at)
    if isinstance(error, ClientInvalid):
        return Ending(PollOutcome.CLIENT_INVALID)
    if isinstance(error, DailyLimitReached):
        return Ending(PollOutcome.DAILY_LIMIT, error.retry_at)
    if isinstance(error, RateLimited):
        return Ending(PollOutcome.RATE_LIMITED, error.retry_at)
    return Ending(PollOutcome.ERROR)
