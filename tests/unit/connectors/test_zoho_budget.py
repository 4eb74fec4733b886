"""The daily call budget: the poll interval stretches until polling fits in its share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.zoho.budget import (
    LONGEST_INTERVAL,
    DailyBudget,
    calls_per_day,
    interval_for,
    plan_cap,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
TIERS = {
    "starter": timedelta(minutes=15),
    "growth": timedelta(minutes=5),
    "scale": timedelta(minutes=1),
}

# An organization issuing 200 invoices a day, all paid at issue: each costs one detail
# and one payments call; every poll lists invoices and credit notes (one page each).
DETAILS = 200 + 200
LISTS = 2


def test_plans_cap_calls_as_zoho_documents() -> None:
    assert (plan_cap("Free"), plan_cap("standard"), plan_cap("Professional")) == (1000, 2000, 5000)
    assert plan_cap(None) == plan_cap("something new") == 1000


@pytest.mark.parametrize(("tier", "calls"), [("starter", 592), ("growth", 976), ("scale", 3280)])
def test_what_each_tier_would_spend_unbudgeted(tier: str, calls: int) -> None:
    assert (
        calls_per_day(TIERS[tier], list_calls_per_poll=LISTS, detail_calls_per_day=DETAILS) == calls
    )


@pytest.mark.parametrize(
    ("cap", "tier", "minutes", "calls"),
    [
        # Free: half of 1,000 leaves 100 list calls after 400 detail calls: 50 polls.
        (1000, "starter", 28.8, 500),
        (1000, "growth", 28.8, 500),
        (1000, "scale", 28.8, 500),
        # Standard: half of 2,000 leaves 600: 300 polls, every 4.8 minutes at best.
        (2000, "starter", 15, 592),
        (2000, "growth", 5, 976),
        (2000, "scale", 4.8, 1000),
    ],
)
def test_the_interval_stretches_to_half_the_plans_cap(
    cap: int, tier: str, minutes: float, calls: int
) -> None:
    interval = interval_for(
        cap, list_calls_per_poll=LISTS, detail_calls_per_day=DETAILS, floor=TIERS[tier]
    )
    assert interval == timedelta(minutes=minutes)
    spent = calls_per_day(interval, list_calls_per_poll=LISTS, detail_calls_per_day=DETAILS)
    assert spent == calls <= cap / 2


def test_a_budget_eaten_by_details_still_polls_four_times_a_day() -> None:
    interval = interval_for(1000, list_calls_per_poll=2, detail_calls_per_day=900)
    assert interval == LONGEST_INTERVAL == timedelta(hours=6)


def test_the_headers_limit_replaces_the_plans_guess() -> None:
    budget = DailyBudget(cap=plan_cap("free"))
    budget.record_poll(list_calls=2, detail_calls=400, now=NOW)
    assert budget.interval(TIERS["scale"], NOW) == timedelta(minutes=28.8)
    budget.observe(limit=2000, remaining=None, reset_seconds=None, now=NOW)
    assert budget.interval(TIERS["scale"], NOW) == timedelta(minutes=4.8)


def test_what_is_left_today_bounds_the_interval_too() -> None:
    # Other apps spent the day's quota: 100 calls left for 10 hours, half for polling.
    budget = DailyBudget(cap=10_000)
    budget.record_poll(list_calls=2, detail_calls=0, now=NOW)
    budget.observe(limit=10_000, remaining=100, reset_seconds=10 * 3600, now=NOW)
    assert budget.interval(TIERS["scale"], NOW) == timedelta(hours=10) * 2 / 50


def test_detail_calls_older_than_a_day_no_longer_count() -> None:
    budget = DailyBudget(cap=1000)
    budget.record_poll(list_calls=1, detail_calls=450, now=NOW)
    assert budget.detail_calls_per_day() == 450
    budget.record_poll(list_calls=1, detail_calls=3, now=NOW + timedelta(days=1, seconds=1))
    assert budget.detail_calls_per_day() == 3


def test_share_must_be_a_fraction() -> None:
    with pytest.raises(ValueError):
        DailyBudget(share=0)
