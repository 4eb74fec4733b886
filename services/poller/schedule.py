"""Which integrations are due for a poll, decided without any I/O.

An integration is polled at its tier's interval after its last poll attempt, whatever
that attempt's outcome: a failing Zoho or broker is retried at the normal pace rather
than hammered. A deferral (daily quota spent, token refreshes used up) pushes the next
poll later still. An integration never polled by this process is due at once.

A request to read documents again by id (runtime.store.refetch: a plan, settings or
certificate changed, or a person resent an invoice refused before it was signed) made
since the last attempt makes the integration due `min_gap` after the request and after
that attempt, whatever its interval: the person who fixed something waits seconds, not a
tier's interval, and every service has seen the change by then (they cache an
integration for 30 s at most, less once its event passes by). A hold an error asked
for (the daily quota spent, refreshes used up) is waited out all the same.

Webhooks stretch polling. While an integration's webhooks are delivering, polling is
only the safety net for the deliveries Zoho drops, so each poll that finds a webhook
accepted since the previous poll doubles the next interval, up to `max_factor` times
the normal one and never past `ceiling` by this alone (a dropped delivery is still
read within `ceiling`); the first poll that finds none goes back to the normal
interval. Ingest records a webhook at most once a minute (`webhook_seen_at`), so a
record up to `granularity` before the previous poll still counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.zoho.rejected import paid_only
from runtime.store.integrations import IntegrationRecord
from runtime.store.models import IntegrationStatus


@dataclass(frozen=True)
class Target:
    """An active integration with a Zoho connection and a start: what a poll needs."""

    uid: str
    tier: str
    organization_id: str
    accounts_server: str
    api_domain: str
    starts_at: datetime | None = None  # nothing created before it is published
    # Read each tick; not part of the target's identity (a change rebuilds no session).
    read_options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    webhook_seen_at: datetime | None = field(default=None, compare=False, hash=False)
    # Fiscalizes only paid documents (connectors.zoho.rejected.paid_only).
    paid_only: bool = field(default=False, compare=False, hash=False)


def target_of(record: IntegrationRecord) -> Target | None:
    """The poll target of an integration; None unless it is active and connected to Zoho."""
    if record.status is not IntegrationStatus.ACTIVE or record.type != "zoho_books":
        return None
    if not (record.zoho_organization_id and record.zoho_accounts_server and record.zoho_api_domain):
        return None
    if record.starts_at is None:  # cannot tell its own invoices from older ones
        return None
    return Target(
        record.uid,
        record.tier,
        record.zoho_organization_id,
        record.zoho_accounts_server,
        record.zoho_api_domain,
        record.starts_at,
        read_options=dict(record.zoho_read_options),
        webhook_seen_at=record.webhook_seen_at,
        paid_only=paid_only(record.fiscal_settings),
    )


WEBHOOK_GRANULARITY = timedelta(minutes=1)
"""Ingest writes `webhook_seen_at` at most this often."""


def webhook_factor(
    factor: int,
    webhook_seen_at: datetime | None,
    since: datetime,
    *,
    max_factor: int = 8,
    granularity: timedelta = WEBHOOK_GRANULARITY,
) -> int:
    """The next interval's multiple after a poll: doubled (up to `max_factor`) when a
    webhook was accepted since `since` (the previous poll), else 1."""
    if max_factor <= 1:
        return 1
    if webhook_seen_at is None or webhook_seen_at < since - granularity:
        return 1
    return min(max_factor, max(1, factor) * 2)


def stretch_interval(interval: timedelta, factor: int, ceiling: timedelta) -> timedelta:
    """`interval` times `factor`, but the stretch alone never goes past `ceiling` (an
    interval already longer, e.g. for the daily call budget, is kept)."""
    if factor <= 1:
        return interval
    return max(interval, min(interval * factor, ceiling))


class Schedule:
    def __init__(self, interval: Callable[[str], timedelta]) -> None:
        self._interval = interval
        self._last: dict[str, datetime] = {}
        self._not_before: dict[str, datetime] = {}
        self._holds: dict[str, datetime] = {}
        self._factors: dict[str, int] = {}

    def next_due(self, target: Target, now: datetime) -> datetime:
        last = self._last.get(target.uid)
        due = now if last is None else last + self._interval(target.tier)
        not_before = self._not_before.get(target.uid)
        return max(due, not_before) if not_before is not None else due

    def due(
        self, targets: Iterable[Target], now: datetime, *,
        requested: Mapping[str, datetime] | None = None, min_gap: timedelta = timedelta(0),
    ) -> list[Target]:
        """The targets due at `now`, longest overdue first. `requested`: integrations
        with documents queued to be read again, and the newest request; one made since
        the last attempt makes the integration due, `min_gap` after that attempt."""
        requested = requested or {}
        due = []
        for target in targets:
            at = self.next_due(target, now)
            asked = requested.get(target.uid)
            last = self._last.get(target.uid)
            if asked is not None and last is not None and asked > last:
                # Sooner than the interval (or the call budget's stretch of it), never
                # sooner than a hold an error asked for (quota spent, refreshes used up).
                soonest = max(last, asked) + min_gap
                hold = self._holds.get(target.uid)
                at = min(at, max(soonest, hold) if hold is not None else soonest)
            due.append((at, target.uid, target))
        return [t for at, _, t in sorted(due, key=lambda d: (d[0], d[1])) if at <= now]

    def webhook_stretch(
        self, target: Target, now: datetime, *, max_factor: int = 8
    ) -> int:
        """After a poll at `now` (before `attempted`): the factor the next interval is
        stretched by, from the webhooks accepted since the previous attempt."""
        previous = self._last.get(target.uid)
        since = previous if previous is not None else now - self._interval(target.tier)
        factor = webhook_factor(
            self._factors.get(target.uid, 1), target.webhook_seen_at, since,
            max_factor=max_factor,
        )
        self._factors[target.uid] = factor
        return factor

    def attempted(
        self, uid: str, at: datetime, *, not_before: datetime | None = None,
        hold: datetime | None = None,
    ) -> None:
        """A poll was attempted (or left to another poller); `not_before` defers the next,
        `hold` (no later than it) is the part of that an error asked for, which even a
        request to read documents again waits out."""
        self._last[uid] = at
        if not_before is None:
            self._not_before.pop(uid, None)
        else:
            self._not_before[uid] = not_before
        if hold is None:
            self._holds.pop(uid, None)
        else:
            self._holds[uid] = hold

    def retain(self, uids: Iterable[str]) -> set[str]:
        """Forget every integration not in `uids` (no longer pollable); returns those."""
        keep = set(uids)
        gone = (self._last.keys() | self._not_before.keys()) - keep
        for uid in gone:
            self.forget(uid)
        return gone

    def forget(self, uid: str) -> None:
        """Treat the integration as new: due at once when it is pollable again."""
        self._last.pop(uid, None)
        self._not_before.pop(uid, None)
        self._holds.pop(uid, None)
        self._factors.pop(uid, None)

    def known(self) -> set[str]:
        return set(self._last) | set(self._not_before)
