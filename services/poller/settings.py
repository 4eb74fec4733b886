from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.licensing import DEFAULTS, TIERS, Tier
from runtime.settings import Duration, DurationSettings, ZohoClientSettings

_ZERO = timedelta(0)


def _interval(tier: Tier) -> timedelta:
    return DEFAULTS[tier].poll_interval


class PollerSettings(DurationSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_POLLER_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # Poll interval per tier; defaults from runtime/licensing.py.
    interval_trial: Duration = Field(default=_interval(Tier.TRIAL), gt=_ZERO)
    interval_starter: Duration = Field(default=_interval(Tier.STARTER), gt=_ZERO)
    interval_growth: Duration = Field(default=_interval(Tier.GROWTH), gt=_ZERO)
    interval_scale: Duration = Field(default=_interval(Tier.SCALE), gt=_ZERO)
    tick: Duration = Field(
        default=timedelta(seconds=5), gt=_ZERO, description="how often due polls are looked for"
    )
    lease_ttl: Duration = Field(
        default=timedelta(minutes=2), gt=_ZERO,
        description="a dead poller's integrations are taken over after this",
    )
    overlap: Duration = Field(
        default=timedelta(minutes=5), ge=_ZERO, description="re-read this much before the watermark"
    )
    max_concurrent_polls: int = Field(default=8, ge=1)
    refetch_per_poll: int = Field(
        default=100, ge=1,
        description="documents queued to be read again (runtime.store.refetch) read per poll",
    )
    refetch_min_gap: Duration = Field(
        default=timedelta(seconds=30), ge=_ZERO,
        description="a new request to read documents again polls the integration this long "
        "after the request and after its last poll (at least the services' 30 s cache of an "
        "integration, so that they all apply the change that let the documents through)",
    )
    publish_timeout: Duration = Field(
        default=timedelta(minutes=1), gt=_ZERO,
        description="a poll's invoices not all acked by then: publish failed",
    )
    drain: Duration = Field(
        default=timedelta(seconds=20), ge=_ZERO,
        description="on SIGTERM, how long a poll still fetching may finish",
    )

    zoho: ZohoClientSettings = Field(
        default_factory=ZohoClientSettings,
        description="the Zoho OAuth client (FISCOBRIDGE_ZOHO_*)",
    )
    zoho_per_minute: int = Field(default=100, ge=1, description="Zoho: 100 calls a minute")
    zoho_window: Duration = Field(
        default=timedelta(minutes=1), gt=_ZERO,
        description="the rolling window zoho_per_minute counts calls in",
    )
    zoho_throttle_backoff: Duration | None = Field(
        default=None, ge=_ZERO,
        description="wait after a per-minute refusal (44); default: the window",
    )
    zoho_max_in_flight: int = Field(default=5, ge=1)
    zoho_budget: bool = Field(
        default=True,
        description="stretch each organization's poll interval to fit its daily Zoho call cap",
    )
    zoho_poll_share: float = Field(
        default=0.5, gt=0, le=1, description="share of the daily Zoho call cap polling may use"
    )
    zoho_timeout: Duration = Field(
        default=timedelta(seconds=30), gt=_ZERO, description="one Zoho HTTP request"
    )
    webhook_stretch_max_factor: int = Field(
        default=8, ge=1,
        description="while webhooks arrive, the poll interval doubles per poll up to this "
        "multiple (1: webhooks never stretch polling)",
    )
    webhook_stretch_ceiling: Duration = Field(
        default=timedelta(hours=1), gt=_ZERO,
        description="webhooks never stretch the poll interval past this (a dropped "
        "delivery is read within it)",
    )
    contact_cache: Duration = Field(
        default=timedelta(hours=1), ge=_ZERO,
        description="how long a Zoho contact read for the buyer's tax number is reused",
    )

    ops_host: str = "127.0.0.1"
    ops_port: int = 0

    def interval(self, tier: str) -> timedelta:
        """How often an integration of `tier` is polled (an unknown tier: the slowest)."""
        intervals = {
            Tier.TRIAL: self.interval_trial,
            Tier.STARTER: self.interval_starter,
            Tier.GROWTH: self.interval_growth,
            Tier.SCALE: self.interval_scale,
        }
        return intervals[Tier(tier)] if tier in TIERS else max(intervals.values())
