"""The poller keeps each organization's polling inside its share of Zoho's daily cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.poller.schedule import target_of
from tests.integration.test_poller_zoho import SQLITE, World, only
from tests.integration.test_poller_zoho import world as world  # the fixture, shared

pytestmark = pytest.mark.kafka


@SQLITE
async def test_a_free_plan_stretches_a_one_minute_tier_to_fit_half_its_cap(world: World) -> None:
    # Free plan: 1,000 calls a day; a Scale tier polls every minute (1,440 polls, each
    # listing invoices and credit notes: 2,880 calls) unless stretched.
    uid, grant = await world.integration(tier="scale", organization={"plan": "free"})
    await world.zoho.create_invoice(grant.organization_id)
    async with world.poller(zoho_budget=True, interval_scale=60) as poller:
        report = only(await poller.run_once())
        assert report.published == 1
        budget = poller.sessions.limiter(grant.organization_id).budget
        assert (budget.cap, budget.from_headers) == (1000, True)  # X-Rate-Limit-Limit
        record = await world.store.integrations.get(uid)
        assert record is not None
        target = target_of(record)
        assert target is not None
        now = datetime.now(UTC)
        wait = poller.schedule.next_due(target, now) - now
        # Half the cap less the detail calls, in polls of 2 list calls; half of what is
        # left today until the organization's midnight; never less than the tier's minute.
        assert budget.reset_at is not None and budget.remaining is not None
        until_reset = budget.reset_at - now
        details = budget.detail_calls_per_day()
        expected = max(
            timedelta(days=1) / ((500 - details) / 2), until_reset * 2 / (budget.remaining / 2)
        )
        assert abs(wait - expected) < timedelta(seconds=5), (wait, expected)
        assert wait > timedelta(minutes=5)
        assert await poller.run_once() == []  # not due yet


@SQLITE
async def test_a_premium_plan_keeps_the_tier_interval(world: World) -> None:
    uid, _ = await world.integration(tier="scale", organization={"plan": "premium"})
    async with world.poller(zoho_budget=True, interval_scale=60) as poller:
        only(await poller.run_once())
        record = await world.store.integrations.get(uid)
        assert record is not None
        target = target_of(record)
        assert target is not None
        now = datetime.now(UTC)
        wait = poller.schedule.next_due(target, now) - now
        assert timedelta(seconds=55) < wait <= timedelta(seconds=60)
