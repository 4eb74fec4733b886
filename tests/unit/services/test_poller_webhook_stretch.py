"""Webhooks stretch polling: the rule, pure (services/poller/schedule.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.poller.schedule import (
    Schedule,
    Target,
    stretch_interval,
    webhook_factor,
)

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def test_the_factor_doubles_while_webhooks_arrive_and_resets_when_they_stop() -> None:
    factor = 1
    seen = []
    for poll in range(1, 6):
        factor = webhook_factor(factor, T0 + poll * MIN, T0 + (poll - 1) * MIN, max_factor=8)
        seen.append(factor)
    assert seen == [2, 4, 8, 8, 8]
    # Nothing since the previous poll (nor within the minute ingest may lag): normal again.
    assert webhook_factor(8, T0, T0 + 2 * MIN) == 1
    assert webhook_factor(8, None, T0) == 1


def test_a_webhook_recorded_within_the_write_granularity_still_counts() -> None:
    # Ingest writes at most once a minute: a record 50 s before the previous poll may
    # stand for webhooks that arrived after it.
    assert webhook_factor(2, T0 - timedelta(seconds=50), T0) == 4
    assert webhook_factor(2, T0 - timedelta(seconds=61), T0) == 1


def test_max_factor_one_turns_the_stretch_off() -> None:
    assert webhook_factor(1, T0, T0, max_factor=1) == 1


def test_the_stretch_alone_stops_at_the_ceiling_but_keeps_a_longer_budgeted_interval() -> None:
    assert stretch_interval(MIN, 1, HOUR) == MIN
    assert stretch_interval(MIN, 8, HOUR) == 8 * MIN
    assert stretch_interval(15 * MIN, 8, HOUR) == HOUR
    assert stretch_interval(2 * HOUR, 8, HOUR) == 2 * HOUR  # the budget's, not shortened


def test_schedule_keeps_the_factor_per_integration_from_its_previous_attempt() -> None:
    schedule = Schedule(lambda tier: MIN)
    quiet = Target("a", "growth", "1", "https://accounts", "https://api")
    target = Target("b", "growth", "2", "https://accounts", "https://api",
                    webhook_seen_at=T0 - timedelta(seconds=30))  # fmt: skip
    # First poll of the process: the window is one normal interval back.
    assert schedule.webhook_stretch(target, T0) == 2
    assert schedule.webhook_stretch(quiet, T0) == 1
    schedule.attempted("b", T0)
    later = Target("b", "growth", "2", "https://accounts", "https://api",
                   webhook_seen_at=T0 + MIN)  # fmt: skip
    assert later == target  # the webhook time is no part of the target's identity
    assert schedule.webhook_stretch(later, T0 + 2 * MIN) == 4
    schedule.attempted("b", T0 + 2 * MIN)
    # No webhook since T0 + 2 min (the record at T0 + 1 min is within the granularity).
    assert schedule.webhook_stretch(later, T0 + 6 * MIN) == 8
    schedule.attempted("b", T0 + 6 * MIN)
    assert schedule.webhook_stretch(later, T0 + 14 * MIN) == 1
    schedule.forget("b")
    assert schedule.webhook_stretch(later, T0 + 2 * MIN) == 2
