"""The dashboard, per integration and over the whole account: this month's usage against
the tier's limit, invoices per day by state, late and failed invoices, certificate
expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from runtime.licensing import LABELS, badge
from runtime.store import CertificateInfo, IntegrationRecord, IntegrationStatus, NotFound
from runtime.store.journal import InvoiceFilter
from schemas.events import InvoiceState
from services.portal.web.chart import daily_svg
from services.portal.web.context import Portal, portal_of, render, signed_in
from services.portal.web.invoices import ZONE

router = APIRouter()

CHART_DAYS = 30
CERTIFICATE_WARNING = timedelta(days=30)
COUNT_CAP = 999


@dataclass(frozen=True)
class Usage:
    record: IntegrationRecord
    used: int
    limit: int | None
    badge: str

    @property
    def full(self) -> bool:
        return self.limit is not None and self.used >= self.limit


@dataclass(frozen=True)
class CertificateState:
    record: IntegrationRecord
    info: CertificateInfo
    left: timedelta  # until it expires; negative once expired

    @property
    def days_left(self) -> int:
        return self.left.days

    @property
    def expired(self) -> bool:
        return self.left < timedelta(0)

    @property
    def warn(self) -> bool:
        """Warned from 30 days before expiry (and after it)."""
        return self.left <= CERTIFICATE_WARNING


async def usage_of(portal: Portal, record: IntegrationRecord) -> Usage:
    used = await portal.store.usage.count(record.uid)
    limit = portal.monthly_limit(record.tier)
    return Usage(record, used, limit, badge(record.tier, used, limit))


async def _certificate(portal: Portal, record: IntegrationRecord, now: datetime
                       ) -> CertificateState | None:
    try:
        info = await portal.store.integrations.certificate_info(record.uid)
    except NotFound:  # an integration without a current certificate has nothing to expire
        return None
    return CertificateState(record, info, info.not_after - now)


async def _dashboard(request: Request, records: list[IntegrationRecord],
                     integration: IntegrationRecord | None) -> Response:
    portal = portal_of(request)
    now = datetime.now(UTC)
    uids = [r.uid for r in records]
    live = [r for r in records if r.status is not IntegrationStatus.REMOVED]
    usages = [await usage_of(portal, r) for r in live]
    certificates = [c for r in live if (c := await _certificate(portal, r, now)) is not None]
    first_day = now.astimezone(ZONE).date() - timedelta(days=CHART_DAYS - 1)
    daily = await portal.store.journal.daily(uids, first_day, CHART_DAYS, ZONE)
    scope = "this integration" if integration else "all your integrations"
    svg, legend = daily_svg(daily, f"Invoices per day by state, last {CHART_DAYS} days, "
                                   f"{scope}")
    # Counted up to COUNT_CAP ("999+"): the figure is a prompt to open the list.
    # Late: still retrying past the legal deadline, as the reporter marked it (its
    # deadline counts working days and the configured public holidays).
    late, late_more = await portal.store.journal.count(uids, InvoiceFilter(
        states=(InvoiceState.RETRYING,), late=True), cap=COUNT_CAP)
    failed, failed_more = await portal.store.journal.count(
        uids, InvoiceFilter(states=(InvoiceState.FAILED,)), cap=COUNT_CAP)
    lists = f"/integrations/{integration.uid}/invoices" if integration else "/invoices"
    context: dict[str, Any] = {
        "integration": integration, "usages": usages, "certificates": certificates,
        "chart": svg, "legend": legend, "days": CHART_DAYS,
        "late": late, "late_more": late_more, "failed": failed, "failed_more": failed_more,
        "late_url": f"{lists}?late=1", "failed_url": f"{lists}?state=failed",
        "lists": lists, "labels": LABELS, "zone": ZONE,
        "month": now.astimezone(ZONE).strftime("%B %Y"),
    }
    return render(request, "dashboard.html", **context)


@router.get("/dashboard")
async def account_dashboard(request: Request) -> Response:
    account_id = signed_in(request)
    records = await portal_of(request).store.integrations.find(account_id=account_id)
    return await _dashboard(request, records, None)


@router.get("/integrations/{uid}/dashboard")
async def integration_dashboard(request: Request, uid: str) -> Response:
    record = await portal_of(request).owned_integration(request, uid)
    return await _dashboard(request, [record], record)
