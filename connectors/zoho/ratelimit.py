"""Zoho Books API limits, per organization: one `RateLimiter` per organization id.

* At most `per_minute` calls started in any rolling `window` (Zoho: 100 per minute),
  at most `max_in_flight` at once (Zoho answers 1070 above about 5-10). The window is
  kept `margin` (2 %) wider than Zoho's: calls reach Zoho a few milliseconds apart from
  when they start, and without slack the 101st call of a burst can land inside the
  minute of the first and be refused (measured: 13 refusals in 1,006 calls).
* A 429 with code 44 blocks every call for `throttle_backoff` (default: the window,
  i.e. >= 60 s against Zoho). Code 1070 blocks for `concurrency_backoff` and lowers the
  calls allowed in flight by one (down to 1): the organization's concurrency limit is
  lower than assumed (5 on Free plans, 10 on paid ones), and other apps share it.
* Code 45 (daily quota spent) counts only when `X-Rate-Limit-Remaining` confirms it
  (0): then every call raises `DailyLimitReached` at once until the quota resets.
  A 45 whose headers show calls left, or carry none, is treated like a 44 (back off,
  try again): stopping an organization for the rest of the day on an unconfirmed
  answer would leave its invoices unfiscalized for hours. When the reset time is not
  in the answer, Zoho does not document whose midnight resets the quota; we take the
  next midnight in `day_tz` (pass the organization's time zone when known, UTC by
  default), and the `X-Rate-Limit-*` headers override it: observed in the wild they
  describe the daily quota (`-Limit` 7500, `-Remaining`, `-Reset` seconds to reset).
* Every answer's headers also feed the organization's `DailyBudget`, which stretches
  the poll interval to fit the plan.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, tzinfo

from connectors.zoho.budget import DailyBudget
from connectors.zoho.errors import DailyLimitReached, RateLimited

PER_MINUTE = 44
DAILY = 45
CONCURRENCY = 1070


class RateLimiter:
    def __init__(
        self,
        *,
        per_minute: int = 100,
        window: float = 60.0,
        margin: float = 0.02,
        max_in_flight: int = 5,
        throttle_backoff: float | None = None,
        concurrency_backoff: float = 2.0,
        day_tz: tzinfo = UTC,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        budget: DailyBudget | None = None,
    ):
        if per_minute < 1 or max_in_flight < 1 or window <= 0:
            raise ValueError("per_minute, max_in_flight and window must be positive")
        self.per_minute = per_minute
        self.window = window
        self._spacing = window * (1 + margin)
        self.max_in_flight = max_in_flight
        self.throttle_backoff = window if throttle_backoff is None else throttle_backoff
        self.concurrency_backoff = concurrency_backoff
        self.day_tz = day_tz
        self._monotonic = monotonic
        self._wall = wall
        self._sleep = sleep
        self._started: deque[float] = deque()
        self._in_flight = 0
        self._freed = asyncio.Condition()
        self.budget = budget or DailyBudget()
        self._blocked_until = 0.0
        self._daily_until: datetime | None = None
        self.calls = 0
        self.throttled_count: dict[int, int] = {}

    @property
    def daily_blocked_until(self) -> datetime | None:
        if self._daily_until is not None and self._wall() >= self._daily_until:
            self._daily_until = None
        return self._daily_until

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one call's place; waits for the window and the in-flight cap."""
        self._raise_if_daily_blocked()
        async with self._freed:
            await self._freed.wait_for(lambda: self._in_flight < self.max_in_flight)
            self._in_flight += 1
        try:
            while True:
                self._raise_if_daily_blocked()
                now = self._monotonic()
                if now < self._blocked_until:
                    await self._sleep(self._blocked_until - now)
                    continue
                while self._started and self._started[0] <= now - self._spacing:
                    self._started.popleft()
                if len(self._started) < self.per_minute:
                    self._started.append(now)
                    break
                await self._sleep(self._started[0] + self._spacing - now)
            self.calls += 1
            yield
        finally:
            async with self._freed:
                self._in_flight -= 1
                self._freed.notify_all()

    def throttled(self, code: int, message: str, headers: Mapping[str, str]) -> RateLimited:
        """Record a 429 answer; returns the error describing when to try again."""
        self.throttled_count[code] = self.throttled_count.get(code, 0) + 1
        if code == DAILY and _int_header(headers, "x-rate-limit-remaining") == 0:
            until = self._reset_from(headers) or self._next_midnight()
            self._daily_until = until
            return DailyLimitReached(code, message, retry_at=until)
        if code == CONCURRENCY:
            self.max_in_flight = max(1, self.max_in_flight - 1)
        backoff = self.concurrency_backoff if code == CONCURRENCY else self.throttle_backoff
        self._blocked_until = max(self._blocked_until, self._monotonic() + backoff)
        return RateLimited(code, message, retry_at=self._wall() + timedelta(seconds=backoff))

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read `X-Rate-Limit-*` from any answer: a spent daily quota stops calls early."""
        remaining = _int_header(headers, "x-rate-limit-remaining")
        self.budget.observe(
            _int_header(headers, "x-rate-limit-limit"),
            remaining,
            _int_header(headers, "x-rate-limit-reset"),
            self._wall(),
        )
        if remaining is not None and remaining <= 0:
            self._daily_until = self._reset_from(headers) or self._next_midnight()

    def _raise_if_daily_blocked(self) -> None:
        until = self.daily_blocked_until
        if until is not None:
            raise DailyLimitReached(
                DAILY,
                f"daily API quota spent; resume at {until.isoformat()}",
                retry_at=until,
                http_status=None,
            )

    def _reset_from(self, headers: Mapping[str, str]) -> datetime | None:
        seconds = _int_header(headers, "x-rate-limit-reset")
        if seconds is None or seconds < 0 or seconds > 2 * 86_400:
            return None  # absent, or not "seconds until reset" as observed: don't guess
        return self._wall() + timedelta(seconds=seconds)

    def _next_midnight(self) -> datetime:
        local = self._wall().astimezone(self.day_tz)
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight.astimezone(UTC)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None
