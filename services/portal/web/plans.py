"""Plans: the tiers, their limits and poll intervals, and where the account stands."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runtime.licensing import LABELS, Plan, account_tier
from runtime.store import IntegrationRecord, IntegrationStatus
from services.portal.web.context import Portal, portal_of, render, signed_in
from services.portal.web.dashboard import usage_of

router = APIRouter()

PLANS_PATH = "/plans"


def interval_text(plan: Plan) -> str:
    seconds = int(plan.poll_interval.total_seconds())
    if seconds % 60:
        return f"every {seconds} seconds"
    minutes = seconds // 60
    return "every minute" if minutes == 1 else f"every {minutes} minutes"


def live(records: list[IntegrationRecord]) -> list[IntegrationRecord]:
    """The integrations that count as connections: all but the removed."""
    return [r for r in records if r.status is not IntegrationStatus.REMOVED]


def tier_of_account(portal: Portal, records: list[IntegrationRecord]) -> str:
    return account_tier([r.tier for r in records], portal.settings.default_tier)


@router.get(PLANS_PATH)
async def plans_page(request: Request) -> Response:
    account_id = signed_in(request)
    portal = portal_of(request)
    records = await portal.store.integrations.find(account_id=account_id)
    tier = tier_of_account(portal, records)
    plans = [
        {"plan": plan, "limit": portal.monthly_limit(plan.tier), "interval": interval_text(plan)}
        for plan in portal.tiers.plans()
    ]
    connections = live(records)
    return render(
        request, "plans.html", plans=plans, tier=tier, label=LABELS.get(tier, tier),
        usages=[await usage_of(portal, r) for r in connections],
        connections=len(connections), allowed=portal.tiers.connections(tier),
    )
