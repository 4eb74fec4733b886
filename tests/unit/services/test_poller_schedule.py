"""Which integrations the poller polls, and when: pure scheduling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.zoho.errors import (
    ClientInvalid,
    DailyLimitReached,
    RateLimited,
    RefreshLimitReached,
    TokenInvalid,
    ZohoApiError,
    ZohoUnavailable,
)
from runtime.store.integrations import IntegrationRecord
from runtime.store.models import IntegrationStatus
from services.poller.outcome import PollOutcome, ending_of
from services.poller.schedule import Schedule, Target, target_of
from services.poller.settings import PollerSettings

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def record(**overrides: object) -> IntegrationRecord:
    fields: dict[str, object] = dict(
        uid="int-1",
        account_id="acc",
        type="zoho_books",
        status=IntegrationStatus.ACTIVE,
        tier="growth",
        created_at=T0,
        fiscal_profile="hr-cis",
        fiscal_settings={},
        zoho_organization_id="20000000001",
        zoho_accounts_server="https://accounts.zoho.eu",
        zoho_api_domain="https://www.zohoapis.eu",
        status_reason=None,
        status_changed_at=None,
        starts_at=T0,
    )
    fields.update(overrides)
    return IntegrationRecord(**fields)  # type: ignore[arg-type]


def target(uid: str, tier: str = "growth") -> Target:
    return Target(
        uid, tier, "20000000001", "https://accounts.zoho.eu", "https://www.zohoapis.eu", T0
    )


def test_default_intervals_by_tier() -> None:
    settings = PollerSettings(_env_file=None)
    assert settings.interval("trial") == 15 * MIN
    assert settings.interval("starter") == 15 * MIN
    assert settings.interval("growth") == 5 * MIN
    assert settings.interval("scale") == 1 * MIN
    # A tier this code does not know yet is polled at the slowest pace, never not at all.
    assert settings.interval("enterprise") == 15 * MIN


def test_intervals_and_zoho_client_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FISCOBRIDGE_POLLER_INTERVAL_SCALE", "2.5")
    monkeypatch.setenv("FISCOBRIDGE_ZOHO_CLIENT_ID", "1000.SHARED")
    monkeypatch.setenv("FISCOBRIDGE_ZOHO_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv(
        "FISCOBRIDGE_ZOHO_ACCOUNTS_SERVERS", "http://127.0.0.1:8450, http://127.0.0.1:8452"
    )
    settings = PollerSettings(_env_file=None)
    assert settings.interval("scale") == timedelta(seconds=2.5)
    assert settings.zoho.client_id == "1000.SHARED"
    assert settings.zoho.client_secret.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.zoho.accounts_servers == ["http://127.0.0.1:8450", "http://127.0.0.1:8452"]
    monkeypatch.setenv(
        "FISCOBRIDGE_ZOHO_ACCOUNTS_SERVERS", '["http://127.0.0.1:8450", "http://x:1"]'
    )
    servers = PollerSettings(_env_file=None).zoho.accounts_servers
    assert servers == ["http://127.0.0.1:8450", "http://x:1"]
    # The shared variable wins over the poller's old name (read only when it is unset).
    monkeypatch.setenv("FISCOBRIDGE_POLLER_ZOHO_CLIENT_ID", "1000.POLLER")
    assert PollerSettings(_env_file=None).zoho.client_id == "1000.SHARED"


def test_only_active_integrations_connected_to_zoho_are_polled() -> None:
    assert target_of(record()) == target("int-1")
    assert target_of(record(status=IntegrationStatus.INACTIVE)) is None
    assert target_of(record(status=IntegrationStatus.PENDING)) is None
    assert target_of(record(zoho_organization_id=None)) is None  # e.g. a demo integration
    assert target_of(record(zoho_api_domain="")) is None
    assert target_of(record(zoho_accounts_server=None)) is None
    assert target_of(record(starts_at=None)) is None  # cannot tell its invoices from older


def test_new_integrations_are_due_at_once_then_at_their_tiers_interval() -> None:
    settings = PollerSettings(_env_file=None)
    schedule = Schedule(settings.interval)
    scale, growth, starter = target("s", "scale"), target("g", "growth"), target("t", "starter")
    everyone = [scale, growth, starter]
    assert schedule.due(everyone, T0) == [growth, scale, starter]  # by uid when equally due
    for t in everyone:
        schedule.attempted(t.uid, T0)
    assert schedule.due(everyone, T0 + 59 * timedelta(seconds=1)) == []
    assert schedule.due(everyone, T0 + MIN) == [scale]
    assert schedule.due(everyone, T0 + 5 * MIN) == [scale, growth]
    assert schedule.due(everyone, T0 + 15 * MIN) == [scale, growth, starter]


def test_longest_overdue_comes_first() -> None:
    schedule = Schedule(lambda tier: 5 * MIN)
    a, b = target("a"), target("b")
    schedule.attempted("a", T0 + MIN)
    schedule.attempted("b", T0)
    assert schedule.due([a, b], T0 + 10 * MIN) == [b, a]
    new = target("c")
    assert schedule.due([a, b, new], T0 + 10 * MIN)[0] == b
    assert new in schedule.due([a, b, new], T0 + 10 * MIN)


def test_a_tier_change_takes_effect_at_the_next_tick() -> None:
    schedule = Schedule(PollerSettings(_env_file=None).interval)
    schedule.attempted("x", T0)
    assert schedule.due([target("x", "starter")], T0 + 2 * MIN) == []
    assert schedule.due([target("x", "scale")], T0 + 2 * MIN) == [target("x", "scale")]


def test_deferral_pushes_the_next_poll_past_the_interval_and_is_cleared_by_a_poll() -> None:
    schedule = Schedule(lambda tier: MIN)
    x = target("x")
    tomorrow = T0 + timedelta(hours=15)
    schedule.attempted("x", T0, not_before=tomorrow)
    assert schedule.next_due(x, T0) == tomorrow
    assert schedule.due([x], tomorrow - timedelta(seconds=1)) == []
    assert schedule.due([x], tomorrow) == [x]
    schedule.attempted("x", tomorrow)
    assert schedule.next_due(x, tomorrow) == tomorrow + MIN


def test_a_request_to_read_documents_again_makes_it_due_soon_but_not_through_a_hold() -> None:
    schedule = Schedule(lambda tier: 15 * MIN)
    x = target("x")
    gap = timedelta(seconds=30)
    schedule.attempted("x", T0, not_before=T0 + 60 * MIN)  # the call budget's stretch
    asked = {"x": T0 + MIN}
    assert schedule.due([x], T0 + MIN + gap, requested=asked, min_gap=gap) == [x]
    # Not before every service has seen the change that let them through.
    assert schedule.due([x], T0 + MIN + gap / 2, requested=asked, min_gap=gap) == []
    soon = {"x": T0 + timedelta(seconds=1)}  # asked just after the poll
    assert schedule.due([x], T0 + gap, requested=soon, min_gap=gap) == []
    assert schedule.due([x], T0 + gap + timedelta(seconds=1), requested=soon,
                        min_gap=gap) == [x]
    assert schedule.due([x], T0 + 2 * MIN, requested={"x": T0 - MIN}, min_gap=gap) == []
    assert schedule.due([x], T0 + 2 * MIN) == []  # no request: the stretch stands
    # The poll that read them: requests older than it make nothing due.
    schedule.attempted("x", T0 + 2 * MIN)
    assert schedule.due([x], T0 + 3 * MIN, requested=asked, min_gap=gap) == []
    # A hold an error asked for (the daily quota spent) is waited out all the same.
    quota = T0 + 10 * 60 * MIN
    schedule.attempted("x", T0 + 3 * MIN, not_before=quota, hold=quota)
    later = {"x": T0 + 4 * MIN}
    assert schedule.due([x], T0 + 5 * MIN, requested=later, min_gap=gap) == []
    assert schedule.due([x], quota, requested=later, min_gap=gap) == [x]


def test_a_short_deferral_does_not_shorten_the_interval() -> None:
    schedule = Schedule(lambda tier: 5 * MIN)
    schedule.attempted("x", T0, not_before=T0 + MIN)
    assert schedule.next_due(target("x"), T0) == T0 + 5 * MIN


def test_integrations_no_longer_pollable_are_forgotten_and_due_at_once_when_back() -> None:
    schedule = Schedule(lambda tier: 15 * MIN)
    a, b = target("a"), target("b")
    schedule.attempted("a", T0)
    schedule.attempted("b", T0, not_before=T0 + timedelta(hours=1))
    assert schedule.retain(["a"]) == {"b"}
    assert schedule.known() == {"a"}
    assert schedule.retain(["a"]) == set()
    # b reconnected: polled at once, not an interval (or a stale deferral) later.
    assert schedule.due([a, b], T0 + MIN) == [b]


@pytest.mark.parametrize(
    ("error", "outcome", "has_retry_at"),
    [
        (None, PollOutcome.OK, False),
        (TokenInvalid("revoked", error="invalid_code"), PollOutcome.TOKEN_INVALID, False),
        (ClientInvalid("bad secret", error="invalid_client"), PollOutcome.CLIENT_INVALID, False),
        (RefreshLimitReached("10 in 10 min", retry_at=T0), PollOutcome.REFRESH_LIMIT, True),
        (DailyLimitReached(45, "day", retry_at=T0), PollOutcome.DAILY_LIMIT, True),
        (RateLimited(44, "minute", retry_at=T0), PollOutcome.RATE_LIMITED, True),
        (ZohoUnavailable(-1, "refused"), PollOutcome.ERROR, False),
        (ZohoApiError(6041, "not associated", http_status=401), PollOutcome.ERROR, False),
    ],
)
def test_how_a_sync_error_ends_the_poll(
    error: Exception | None, outcome: PollOutcome, has_retry_at: bool
) -> None:
    ending = ending_of(error)  # type: ignore[arg-type]
    assert ending.outcome is outcome
    assert (ending.retry_at == T0) if has_retry_at else ending.retry_at is None



def test_the_target_says_whether_the_integration_fiscalizes_paid_documents_only() -> None:
    """What the poller shows blocked depends on it (connectors.zoho.rejected)."""
    issued = target_of(record())
    paid = target_of(record(fiscal_settings={"trigger": "paid"}))
    assert issued is not None and paid is not None
    assert (issued.paid_only, paid.paid_only) == (False, True)
