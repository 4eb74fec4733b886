from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.licensing import DEFAULTS, TIERS, Tier
from runtime.settings import ZohoClientSettings


def _interval(tier: Tier) -> float:
    return DEFAULTS[tier].poll_interval.total_seconds()


class PollerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_POLLER_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # Poll interval per tier; defaults from runtime/licensing.py.
    interval_trial_seconds: float = Field(default=_interval(Tier.TRIAL), gt=0)
    interval_starter_seconds: float = Field(default=_interval(Tier.STARTER), gt=0)
    interval_growth_seconds: float = Field(default=_interval(Tier.GROWTH), gt=0)
    interval_scale_seconds: float = Field(default=_interval(Tier.SCALE), gt=0)
    tick_seconds: float = Field(default=5.0, gt=0, description="how often due polls are looked for")
    lease_ttl_seconds: float = Field(
        default=120.0, gt=0, description="a dead poller's integrations are taken over after this"
    )
    overlap_seconds: float = Field(
        default=300.0, ge=0, description="re-read this much before the watermark"
    )
    max_concurrent_polls: int = Field(default=8, ge=1)
    publish_timeout_seconds: float = Field(
        default=60.0, gt=0, description="a poll's invoices not all acked by then: publish failed"
    )
    drain_seconds: float = Field(
        default=20.0, ge=0, description="on SIGTERM, how long a poll still fetching may finish"
    )

    zoho: ZohoClientSettings = Field(
        default_factory=ZohoClientSettings,
        description="the Zoho OAuth client (FISCOBRIDGE_ZOHO_*)",
    )
    zoho_per_minute: int = Field(default=100, ge=1, description="Zoho: 100 calls a minute")
    zoho_window_seconds: float = Field(default=60.0, gt=0)
    zoho_throttle_backoff_seconds: float | None = Field(
        default=None, description="wait after a per-minute refusal (44); default: the window"
    )
    zoho_max_in_flight: int = Field(default=5, ge=1)
    zoho_budget: bool = Field(
        default=True,
        description="stretch each organization's poll interval to fit its daily Zoho call cap",
    )
    zoho_poll_share: float = Field(
        default=0.5, gt=0, le=1, description="share of the daily Zoho call cap polling may use"
    )
    zoho_timeout_seconds: float = Field(default=30.0, gt=0)
    webhook_stretch_max_factor: int = Field(
        default=8, ge=1,
        description="while webhooks arrive, the poll interval doubles per poll up to this "
        "multiple (1: webhooks never stretch polling)",
    )
    webhook_stretch_ceiling_seconds: float = Field(
        default=3600.0, gt=0,
        description="webhooks never stretch the poll interval past this (a dropped "
        "delivery is read within it)",
    )
    contact_cache_seconds: float = Field(
        default=3600.0, ge=0,
        description="how long a Zoho contact read for the buyer's tax number is reused",
    )

    ops_host: str = "127.0.0.1"
    ops_port: int = 0

    def interval(self, tier: str) -> timedelta:
        """How often an integration of `tier` is polled (an unknown tier: the slowest)."""
        seconds = {
            Tier.TRIAL: self.interval_trial_seconds,
            Tier.STARTER: self.interval_starter_seconds,
            Tier.GROWTH: self.interval_growth_seconds,
            Tier.SCALE: self.interval_scale_seconds,
        }
        return timedelta(seconds=seconds[Tier(tier)] if tier in TIERS else max(seconds.values()))

    @property
    def lease_ttl(self) -> timedelta:
        return timedelta(seconds=self.lease_ttl_seconds)

    @property
    def webhook_stretch_ceiling(self) -> timedelta:
        return timedelta(seconds=self.webhook_stretch_ceiling_seconds)

    @property
    def overlap(self) -> timedelta:
        return timedelta(seconds=self.overlap_seconds)
