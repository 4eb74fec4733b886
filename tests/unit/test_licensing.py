"""Tier facts the portal and the CLI show are the services' own, and "late" counts
working days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runtime.licensing import TIERS, TierSettings, account_tier, badge
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
    monkeypatch.setenv("FISCOBRIDGE_POLLER_INTERVAL_GROWTH_SECONDS", "120")
    tiers = TierSettings()
    assert tiers.monthly_limit("starter") == 700 == FiscalizerSettings().monthly_limit("starter")
    assert tiers.poll_interval("growth") == timedelta(minutes=2) == PollerSettings().interval(
        "growth")
    assert tiers.connections("trial") == 1


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
