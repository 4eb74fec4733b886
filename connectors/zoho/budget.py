"""An organization's daily Zoho call budget, and the poll interval that fits in it.

Zoho caps API calls per organization and day by plan (Free 1,000, Standard 2,000,
Professional 5,000, higher plans 10,000), and the cap is shared with everything else
the business connects to its books. Polling is the safety net behind webhooks, so it
may spend at most `share` (default 50 %) of the cap:

    polls a day x list calls a poll + detail calls a day <= share x cap

Detail calls follow the invoices that change, not the interval (one per changed
record, one more for an invoice's payments), so they are taken off first and the
interval stretches until the list calls fit in the rest. Once Zoho's
`X-Rate-Limit-Limit/-Remaining/-Reset` headers have been seen, the limit they state
replaces the plan's, and what is left today bounds the interval too: polling until the
reset may use at most `share` of the remaining calls. While webhooks are arriving for
the organization the poller stretches the interval further (services/poller/schedule.py,
`webhook_factor`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DAY = timedelta(days=1)

PLAN_DAILY_CAPS: dict[str, int] = {
    "free": 1_000,
    "standard": 2_000,
    "professional": 5_000,
    "premium": 10_000,
    "elite": 10_000,
    "ultimate": 10_000,
}
"""Zoho Books' daily API call caps by plan (design note, Limits)."""

LONGEST_INTERVAL = timedelta(hours=6)
"""However tight the budget, an organization is polled at least four times a day."""


def plan_cap(plan: str | None) -> int:
    """The plan's daily cap; an unknown plan counts as the smallest."""
    return PLAN_DAILY_CAPS.get((plan or "").strip().lower(), min(PLAN_DAILY_CAPS.values()))


def interval_for(
    cap: int,
    *,
    list_calls_per_poll: float,
    detail_calls_per_day: float,
    share: float = 0.5,
    floor: timedelta = timedelta(0),
) -> timedelta:
    """The shortest poll interval (at least `floor`) whose calls fit in `share` of `cap`."""
    if list_calls_per_poll <= 0:
        return floor
    room = share * cap - detail_calls_per_day
    if room <= list_calls_per_poll:
        return max(floor, LONGEST_INTERVAL)
    polls = room / list_calls_per_poll
    return min(max(floor, DAY / polls), max(floor, LONGEST_INTERVAL))


def calls_per_day(
    interval: timedelta, *, list_calls_per_poll: float, detail_calls_per_day: float
) -> int:
    """What polling at `interval` costs a day."""
    polls = math.ceil(DAY / interval)
    return math.ceil(polls * list_calls_per_poll + detail_calls_per_day)


@dataclass
class DailyBudget:
    """One organization's budget; fed by every answer's headers and every poll's calls."""

    cap: int = field(default_factory=lambda: plan_cap(None))
    share: float = 0.5
    remaining: int | None = None
    reset_at: datetime | None = None
    from_headers: bool = False
    _details: deque[tuple[datetime, int]] = field(default_factory=deque)
    _list_calls: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError("share must be in (0, 1]")

    def observe(
        self, limit: int | None, remaining: int | None, reset_seconds: int | None, now: datetime
    ) -> None:
        if limit is not None and limit > 0:
            self.cap = limit
            self.from_headers = True
        if remaining is not None and remaining >= 0:
            self.remaining = remaining
        if reset_seconds is not None and 0 <= reset_seconds <= 2 * 86_400:
            self.reset_at = now + timedelta(seconds=reset_seconds)

    def record_poll(self, list_calls: int, detail_calls: int, now: datetime) -> None:
        self._list_calls = float(max(1, list_calls))
        self._details.append((now, detail_calls))
        while self._details and self._details[0][0] <= now - DAY:
            self._details.popleft()

    def detail_calls_per_day(self) -> int:
        return sum(calls for _, calls in self._details)

    def interval(
        self, floor: timedelta, now: datetime, *, list_calls_per_poll: float | None = None
    ) -> timedelta:
        """The poll interval: the tier's (`floor`), stretched to fit the budget."""
        per_poll = list_calls_per_poll or self._list_calls or 1.0
        interval = interval_for(
            self.cap,
            list_calls_per_poll=per_poll,
            detail_calls_per_day=self.detail_calls_per_day(),
            share=self.share,
            floor=floor,
        )
        if self.remaining is not None and self.reset_at is not None and self.reset_at > now:
            left = self.share * self.remaining
            until_reset = self.reset_at - now
            if left < per_poll:
                interval = max(interval, until_reset)
            else:
                interval = max(interval, until_reset * (per_poll / left))
        return interval
