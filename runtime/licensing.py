"""Tiers as the customer sees them: names, connections, monthly limits, poll intervals.

The limits are the fiscalizer's (FISCOBRIDGE_FISCALIZER_LIMIT_<TIER>) and the poll
intervals the poller's (FISCOBRIDGE_POLLER_INTERVAL_<TIER>_SECONDS): this module reads
the same variables with the same defaults, so the portal and the CLI can show them
without importing another service (tests/unit/test_licensing.py keeps the defaults
equal to the services' own).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TIERS = ("trial", "starter", "growth", "scale")
LABELS = {"trial": "Trial", "starter": "Starter", "growth": "Growth", "scale": "Scale"}


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class TierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    limit_trial: int | None = Field(50, validation_alias=_env("FISCOBRIDGE_FISCALIZER_LIMIT_TRIAL"))
    limit_starter: int | None = Field(
        500, validation_alias=_env("FISCOBRIDGE_FISCALIZER_LIMIT_STARTER"))
    limit_growth: int | None = Field(
        5_000, validation_alias=_env("FISCOBRIDGE_FISCALIZER_LIMIT_GROWTH"))
    limit_scale: int | None = Field(
        None, validation_alias=_env("FISCOBRIDGE_FISCALIZER_LIMIT_SCALE"))
    interval_trial_seconds: float = Field(
        15 * 60, gt=0, validation_alias=_env("FISCOBRIDGE_POLLER_INTERVAL_TRIAL_SECONDS"))
    interval_starter_seconds: float = Field(
        15 * 60, gt=0, validation_alias=_env("FISCOBRIDGE_POLLER_INTERVAL_STARTER_SECONDS"))
    interval_growth_seconds: float = Field(
        5 * 60, gt=0, validation_alias=_env("FISCOBRIDGE_POLLER_INTERVAL_GROWTH_SECONDS"))
    interval_scale_seconds: float = Field(
        60, gt=0, validation_alias=_env("FISCOBRIDGE_POLLER_INTERVAL_SCALE_SECONDS"))
    # Integrations an account may have that are not removed (None: no limit). The trial
    # is one business trying one organization.
    connections_trial: int | None = Field(
        1, validation_alias=_env("FISCOBRIDGE_PORTAL_CONNECTIONS_TRIAL"))
    connections_starter: int | None = Field(
        None, validation_alias=_env("FISCOBRIDGE_PORTAL_CONNECTIONS_STARTER"))
    connections_growth: int | None = Field(
        None, validation_alias=_env("FISCOBRIDGE_PORTAL_CONNECTIONS_GROWTH"))
    connections_scale: int | None = Field(
        None, validation_alias=_env("FISCOBRIDGE_PORTAL_CONNECTIONS_SCALE"))

    def monthly_limit(self, tier: str) -> int | None:
        limit: int | None = getattr(self, f"limit_{tier}")
        return limit

    def poll_interval(self, tier: str) -> timedelta:
        return timedelta(seconds=getattr(self, f"interval_{tier}_seconds"))

    def connections(self, tier: str) -> int | None:
        value: int | None = getattr(self, f"connections_{tier}")
        return value

    def plans(self) -> list[Plan]:
        return [
            Plan(tier, LABELS[tier], self.connections(tier), self.monthly_limit(tier),
                 self.poll_interval(tier))
            for tier in TIERS
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
    ranked = [t for t in tiers if t in TIERS]
    return max(ranked, key=TIERS.index) if ranked else default


def badge(tier: str, used: int, limit: int | None) -> str:
    """'Trial 5/50'; 'Scale 812' when there is no limit."""
    label = LABELS.get(tier, tier.title())
    return f"{label} {used}/{limit}" if limit is not None else f"{label} {used}"
