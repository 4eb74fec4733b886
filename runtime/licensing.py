"""Tiers as the customer sees them: names, connections, monthly limits, poll intervals.

The tiers are the `Tier` enum (schemas/tiers.py); their default terms are the one table
`DEFAULTS` below, which the fiscalizer's and the poller's settings take their defaults
from. The limits are the fiscalizer's variables (FISCOBRIDGE_FISCALIZER_LIMIT_<TIER>), the
poll intervals the poller's (FISCOBRIDGE_POLLER_INTERVAL_<TIER>): `TierSettings`
reads the same variables, so the portal and the CLI show them without importing another
service (tests/unit/test_licensing.py keeps the two views equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import Duration, DurationSettings
from schemas.tiers import TIERS, Tier

__all__ = ["DEFAULTS", "LABELS", "LICENSE_ZONE", "TIERS", "Plan", "Terms", "Tier",
           "TierSettings", "account_tier", "badge", "license_month"]

# The monthly limit is sold to Croatian businesses, whose month turns at local midnight:
# an invoice counts in the month of its fiscalization in this zone (the fiscalizer's
# FISCOBRIDGE_FISCALIZER_TIMEZONE defaults to it).
LICENSE_ZONE = ZoneInfo("Europe/Zagreb")


def license_month(at: datetime, zone: ZoneInfo = LICENSE_ZONE) -> str:
    """The license month an instant falls in: "2026-03"."""
    return at.astimezone(zone).strftime("%Y-%m")


@dataclass(frozen=True)
class Terms:
    """What a tier grants: invoices a month and integrations an account may hold (None: no
    limit), and how often the poller looks at each integration."""

    monthly_limit: int | None
    poll_interval: timedelta
    connections: int | None


# The one table of the tiers' default terms; each is overridden by its variable below.
# The trial is one business trying one organization.
DEFAULTS: dict[Tier, Terms] = {
    Tier.TRIAL: Terms(50, timedelta(minutes=15), 1),
    Tier.STARTER: Terms(500, timedelta(minutes=15), None),
    Tier.GROWTH: Terms(5_000, timedelta(minutes=5), None),
    Tier.SCALE: Terms(None, timedelta(minutes=1), None),
}
LABELS = {tier.value: tier.label for tier in Tier}


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


def _limit(tier: Tier) -> int | None:
    return DEFAULTS[tier].monthly_limit


def _interval(tier: Tier) -> timedelta:
    return DEFAULTS[tier].poll_interval


def _connections(tier: Tier) -> int | None:
    return DEFAULTS[tier].connections


class TierSettings(DurationSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    limit_trial: int | None = Field(
        _limit(Tier.TRIAL), validation_alias=_env("FISCOBRIDGE_FISCALIZER_LIMIT_TRIAL"))
    limit_starter: int | None = Field(
        _limit(Tier.STARTER), validation_alias=_env("FISCOBRIDGE_FISCALIZER_LIMIT_STARTER"))
    limit_growth: int | None = Field(
        _limit(Tier.GROWTH), validation_alias=_env("FISCOBRIDGE_FISCALIZER_LIMIT_GROWTH"))
    limit_scale: int | None = Field(
        _limit(Tier.SCALE), validation_alias=_env("FISCOBRIDGE_FISCALIZER_LIMIT_SCALE"))
    interval_trial: Duration = Field(
        _interval(Tier.TRIAL), gt=timedelta(0),
        validation_alias=_env("FISCOBRIDGE_POLLER_INTERVAL_TRIAL"))
    interval_starter: Duration = Field(
        _interval(Tier.STARTER), gt=timedelta(0),
        validation_alias=_env("FISCOBRIDGE_POLLER_INTERVAL_STARTER"))
    interval_growth: Duration = Field(
        _interval(Tier.GROWTH), gt=timedelta(0),
        validation_alias=_env("FISCOBRIDGE_POLLER_INTERVAL_GROWTH"))
    interval_scale: Duration = Field(
        _interval(Tier.SCALE), gt=timedelta(0),
        validation_alias=_env("FISCOBRIDGE_POLLER_INTERVAL_SCALE"))
    connections_trial: int | None = Field(
        _connections(Tier.TRIAL), validation_alias=_env("FISCOBRIDGE_PORTAL_CONNECTIONS_TRIAL"))
    connections_starter: int | None = Field(
        _connections(Tier.STARTER),
        validation_alias=_env("FISCOBRIDGE_PORTAL_CONNECTIONS_STARTER"))
    connections_growth: int | None = Field(
        _connections(Tier.GROWTH), validation_alias=_env("FISCOBRIDGE_PORTAL_CONNECTIONS_GROWTH"))
    connections_scale: int | None = Field(
        _connections(Tier.SCALE), validation_alias=_env("FISCOBRIDGE_PORTAL_CONNECTIONS_SCALE"))

    def terms(self, tier: str) -> Terms:
        """This deployment's terms for `tier` (ValueError for a name that is no tier)."""
        return {
            Tier.TRIAL: Terms(self.limit_trial, self.interval_trial, self.connections_trial),
            Tier.STARTER: Terms(self.limit_starter, self.interval_starter,
                                self.connections_starter),
            Tier.GROWTH: Terms(self.limit_growth, self.interval_growth, self.connections_growth),
            Tier.SCALE: Terms(self.limit_scale, self.interval_scale, self.connections_scale),
        }[Tier(tier)]

    def monthly_limit(self, tier: str) -> int | None:
        return self.terms(tier).monthly_limit

    def poll_interval(self, tier: str) -> timedelta:
        return self.terms(tier).poll_interval

    def connections(self, tier: str) -> int | None:
        return self.terms(tier).connections

    def plans(self) -> list[Plan]:
        return [
            Plan(tier.value, tier.label, self.connections(tier), self.monthly_limit(tier),
                 self.poll_interval(tier))
            for tier in Tier
        ]


@dataclass(frozen=True)
class Plan:
    tier: str
    label: str
    connections: int | None
    monthly_limit: int | None
    poll_interval: timedelta


def account_tier(tiers: list[str], default: str = "trial") -> str:
    """An account's tier: the highest of its integrations' (set together by the operator)."""
    ranked = [Tier(t) for t in tiers if t in TIERS]
    return max(ranked, key=lambda tier: tier.rank).value if ranked else default


def badge(tier: str, used: int, limit: int | None) -> str:
    """'Trial 5/50'; 'Scale 812' when there is no limit."""
    label = Tier(tier).label if tier in TIERS else tier.title()
    return f"{label} {used}/{limit}" if limit is not None else f"{label} {used}"
