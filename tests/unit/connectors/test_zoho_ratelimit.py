"""The per-organization limiter, on a virtual clock: window, in-flight cap, 429 answers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from connectors.zoho.errors import DailyLimitReached, RateLimited
from connectors.zoho.ratelimit import RateLimiter


class VirtualTime:
    """Sleeping moves time forward instantly, so limits are tested without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.start_wall = datetime(2025, 4, 9, 21, 30, tzinfo=UTC)
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start_wall + timedelta(seconds=self.now - 1000.0)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def limiter(clock: VirtualTime, **options: object) -> RateLimiter:
    return RateLimiter(
        monotonic=clock.monotonic,
        wall=clock.wall,
        sleep=clock.sleep,
        **options,  # type: ignore[arg-type]
    )


async def take(rate: RateLimiter, n: int) -> list[float]:
    """Start `n` calls one after another; the virtual instants they started at."""
    started = []
    for _ in range(n):
        async with rate.slot():
            started.append(rate._monotonic())
    return started


async def test_at_most_per_minute_calls_start_in_any_window() -> None:
    clock = VirtualTime()
    rate = limiter(clock, per_minute=100, window=60.0, margin=0.0)
    started = await take(rate, 250)

    for i in range(len(started) - 100):
        assert started[i + 100] - started[i] >= 60.0
    assert started[99] == 1000.0
    assert started[100] == 1060.0
    assert started[200] == 1120.0


async def test_window_is_kept_a_little_wider_than_zohos() -> None:
    clock = VirtualTime()
    rate = limiter(clock, per_minute=100, window=60.0)
    started = await take(rate, 101)
    assert started[100] == pytest.approx(1061.2)


async def test_no_more_than_max_in_flight_at_once() -> None:
    clock = VirtualTime()
    rate = limiter(clock, max_in_flight=5)
    active = 0
    peak = 0

    async def call() -> None:
        nonlocal active, peak
        async with rate.slot():
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.001)
            active -= 1

    await asyncio.gather(*(call() for _ in range(30)))
    assert peak == 5
    assert rate.calls == 30


async def test_per_minute_throttle_holds_every_call_back_for_the_backoff() -> None:
    clock = VirtualTime()
    rate = limiter(clock, window=60.0)
    error = rate.throttled(44, "too many", httpx.Headers())

    assert type(error) is RateLimited
    assert error.code == 44
    assert error.retry_at == clock.wall() + timedelta(seconds=60)
    started = await take(rate, 1)
    assert started == [1060.0]


async def test_concurrency_throttle_backs_off_briefly() -> None:
    clock = VirtualTime()
    rate = limiter(clock, concurrency_backoff=2.0)
    rate.throttled(1070, "concurrency", httpx.Headers())
    assert await take(rate, 1) == [1002.0]


async def test_daily_limit_stops_every_call_until_the_reset_the_headers_give() -> None:
    clock = VirtualTime()
    rate = limiter(clock)
    headers = httpx.Headers({"X-Rate-Limit-Reset": "9000", "X-Rate-Limit-Remaining": "0"})
    error = rate.throttled(45, "daily", headers)

    assert isinstance(error, DailyLimitReached)
    assert error.retry_at == clock.wall() + timedelta(seconds=9000)
    with pytest.raises(DailyLimitReached) as caught:
        await take(rate, 1)
    assert caught.value.retry_at == error.retry_at
    assert rate.calls == 0

    clock.now += 9000
    assert await take(rate, 1) == [10000.0]


async def test_confirmed_daily_limit_without_a_reset_waits_for_midnight_in_the_day_zone() -> None:
    clock = VirtualTime()  # 21:30 UTC = 23:30 in Zagreb (summer time)
    spent = httpx.Headers({"X-Rate-Limit-Remaining": "0"})
    zagreb = limiter(clock, day_tz=ZoneInfo("Europe/Zagreb"))
    error = zagreb.throttled(45, "daily", spent)
    assert error.retry_at == datetime(2025, 4, 9, 22, 0, tzinfo=UTC)

    utc = limiter(clock)
    assert utc.throttled(45, "daily", spent).retry_at == datetime(2025, 4, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "headers", [{}, {"X-Rate-Limit-Remaining": "412", "X-Rate-Limit-Reset": "9000"}]
)
async def test_an_unconfirmed_daily_limit_only_backs_off(headers: dict[str, str]) -> None:
    clock = VirtualTime()
    rate = limiter(clock, throttle_backoff=60.0)
    error = rate.throttled(45, "daily", httpx.Headers(headers))
    assert not isinstance(error, DailyLimitReached)
    assert rate.daily_blocked_until is None
    assert await take(rate, 1) == [1060.0]


async def test_concurrency_refusals_lower_the_calls_in_flight_down_to_one() -> None:
    clock = VirtualTime()
    rate = limiter(clock, max_in_flight=3, concurrency_backoff=0.0)
    rate.throttled(1070, "concurrency", httpx.Headers())
    assert rate.max_in_flight == 2
    for _ in range(5):
        rate.throttled(1070, "concurrency", httpx.Headers())
    assert rate.max_in_flight == 1

    inside = 0
    most = 0

    async def call() -> None:
        nonlocal inside, most
        async with rate.slot():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(call() for _ in range(4)))
    assert most == 1


async def test_headers_feed_the_organizations_budget() -> None:
    clock = VirtualTime()
    rate = limiter(clock)
    rate.observe(
        httpx.Headers(
            {
                "X-Rate-Limit-Limit": "2000",
                "X-Rate-Limit-Remaining": "1500",
                "X-Rate-Limit-Reset": "600",
            }
        )
    )
    assert (rate.budget.cap, rate.budget.remaining) == (2000, 1500)
    assert rate.budget.reset_at == clock.wall() + timedelta(seconds=600)


async def test_spent_quota_in_headers_stops_calls_before_zoho_refuses() -> None:
    clock = VirtualTime()
    rate = limiter(clock)
    rate.observe(httpx.Headers({"X-Rate-Limit-Remaining": "12", "X-Rate-Limit-Reset": "60"}))
    assert await take(rate, 1) == [1000.0]

    rate.observe(httpx.Headers({"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "60"}))
    with pytest.raises(DailyLimitReached):
        await take(rate, 1)


async def test_unreadable_reset_header_is_not_trusted() -> None:
    clock = VirtualTime()
    rate = limiter(clock)
    error = rate.throttled(
        45,
        "daily",
        httpx.Headers({"X-Rate-Limit-Reset": "1744243200", "X-Rate-Limit-Remaining": "0"}),
    )
    assert error.retry_at == datetime(2025, 4, 10, 0, 0, tzinfo=UTC)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0)
