"""Tier facts the portal and the CLI show are the services' own, and "late" counts
working days."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runtime.licensing import (
    DEFAULTS,
    LICENSE_ZONE,
    TIERS,
    Tier,
    TierSettings,
    account_tier,
    badge,
    license_month,
)
from runtime.store import models
from schemas.events import IntegrationEvent, IntegrationEventKind
from services.fiscalizer.settings import FiscalizerSettings
from services.poller.settings import PollerSettings
from services.portal.web.invoices import late_cutoff


def test_defaults_equal_the_fiscalizers_limits_and_the_pollers_intervals() -> None:
    tiers, fiscalizer, poller = TierSettings(), FiscalizerSettings(), PollerSettings()
    for tier in TIERS:
        assert tiers.monthly_limit(tier) == fiscalizer.monthly_limit(tier), tier
        assert tiers.poll_interval(tier) == poller.interval(tier), tier


def test_the_services_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FISCOBRIDGE_FISCALIZER_LIMIT_STARTER", "700")
    monkeypatch.setenv("FISCOBRIDGE_POLLER_INTERVAL_GROWTH", "120")
    tiers = TierSettings()
    assert tiers.monthly_limit("starter") == 700 == FiscalizerSettings().monthly_limit("starter")
    assert tiers.poll_interval("growth") == timedelta(minutes=2) == PollerSettings().interval(
        "growth")
    assert tiers.connections("trial") == 1


def test_a_poll_intervals_old_seconds_variable_is_read_by_both_views(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FISCOBRIDGE_POLLER_INTERVAL_TRIAL_SECONDS", "90")
    assert TierSettings().poll_interval("trial") == timedelta(seconds=90) == PollerSettings(
    ).interval("trial")


def test_one_tier_enum_names_every_tier() -> None:
    assert TIERS == ("trial", "starter", "growth", "scale") == tuple(Tier)
    assert set(DEFAULTS) == set(Tier)
    assert models.TIERS == TIERS
    assert [plan.tier for plan in TierSettings().plans()] == list(TIERS)
    event = IntegrationEvent(integration_uid="u", kind=IntegrationEventKind.TIER_CHANGED,
                             tier="growth")
    assert event.tier is Tier.GROWTH
    assert IntegrationEvent.from_json(event.to_json()).tier == "growth"
    with pytest.raises(ValueError):
        IntegrationEvent(integration_uid="u", kind=IntegrationEventKind.TIER_CHANGED,
                         tier="platinum")


def test_the_migrations_tier_check_is_the_enum() -> None:
    """The CHECK is written out in the first migration (migrations never change); it must
    allow exactly the enum's tiers. A new tier needs a migration that widens it."""
    migration = Path(models.__file__).parent / "migrations" / "versions"
    text = (migration / "0001_accounts_integrations.py").read_text()
    (allowed,) = re.findall(r"tier IN \(([^)]*)\)", text)
    assert tuple(re.findall(r"'([a-z]+)'", allowed)) == TIERS


def test_defaults_come_from_the_one_table() -> None:
    tiers = TierSettings()
    for tier in Tier:
        assert tiers.terms(tier) == DEFAULTS[tier], tier
    assert FiscalizerSettings().monthly_limit("platinum") is None
    assert PollerSettings().interval("platinum") == timedelta(minutes=15)


def test_the_license_month_turns_at_midnight_in_zagreb() -> None:
    assert FiscalizerSettings().timezone == LICENSE_ZONE.key == "Europe/Zagreb"
    assert license_month(datetime(2026, 3, 31, 22, 30, tzinfo=UTC)) == "2026-04"
    assert license_month(datetime(2026, 3, 31, 21, 30, tzinfo=UTC)) == "2026-03"


def test_badge_and_account_tier() -> None:
    assert badge("trial", 5, 50) == "Trial 5/50"
    assert badge("scale", 812, None) == "Scale 812"
    assert account_tier(["trial", "growth", "starter"]) == "growth"
    assert account_tier([], "trial") == "trial"


def test_late_means_two_working_days() -> None:
    # Monday 10:00 in Zagreb: two working days back is the Thursday before, 10:00.
    monday = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    assert late_cutoff(monday) == datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
    wednesday = datetime(2026, 3, 11, 9, 0, tzinfo=UTC)
    assert late_cutoff(wednesday) == datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
