"""Dashboard and Plans over real HTTP on the real store: the "Trial 5/50" badge, the SVG
chart of invoices per day by state, late and failed counts linking to the filtered
lists, the certificate expiry warning, the plans with their limits and poll intervals,
and the trial's one connection."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from fiscal.hr_cis.certificate import FiscalCertificate
from runtime.store.rebuild import publish_and_apply
from schemas.events import (
    IntegrationEvent,
    IntegrationEventKind,
    InvoiceRef,
    InvoiceState,
    InvoiceStatus,
)
from services.portal.web.chart import ORDER
from services.portal.web.invoices import ZONE, late_cutoff
from tests.fixtures.certs import Pfx
from tests.fixtures.zoho import forms_of
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    SQLITE_ONLY,
    PortalUnderTest,
    env_fixture,
    make_portal_fixture,
    producer_fixture,
    zoho_user_with_org,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


def _status(uid: str, i: int, state: InvoiceState, at: datetime) -> InvoiceStatus:
    return InvoiceStatus(
        integration_uid=uid, occurred_at=at,
        invoice=InvoiceRef(source_id=f"d{i:05d}", number=f"D-{i}", version="v1", issued_at=at),
        state=state, reason_code="ok" if state is InvoiceState.FISCALIZED else "s006",
        message="", receipt_id=f"jir-{i}" if state is InvoiceState.FISCALIZED else None,
    )


async def test_dashboard_usage_chart_late_failed_and_certificate(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, demo_certificate: FiscalCertificate
) -> None:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("dash@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    now = datetime.now(UTC)
    old = late_cutoff(now) - timedelta(hours=1)
    events = [_status(uid, i, InvoiceState.FISCALIZED, now - timedelta(minutes=i))
              for i in range(5)]
    # Late is what the reporter said (past the deadline), not how long ago it was seen.
    events += [_status(uid, 10, InvoiceState.RETRYING, now - timedelta(hours=2))
               .model_copy(update={"late": True}),
               _status(uid, 11, InvoiceState.RETRYING, old),  # not late, though long seen
               _status(uid, 12, InvoiceState.FAILED, now - timedelta(days=1)),
               _status(uid, 13, InvoiceState.FAILED, now - timedelta(days=2))]
    await env.store.apply(events)

    for path, lists in (("/dashboard", "/invoices"),
                        (f"/integrations/{uid}/dashboard", f"/integrations/{uid}/invoices")):
        page = await browser.get(path)
        assert page.status_code == 200, page.text
        assert "Trial 5/50" in page.text
        late = re.search(r'id="late"><a href="([^"]+)"><strong>(\d+)', page.text)
        failed = re.search(r'id="failed"><a href="([^"]+)"><strong>(\d+)', page.text)
        assert late and failed
        assert (late.group(1), late.group(2)) == (f"{lists}?late=1", "1")
        assert (failed.group(1), failed.group(2)) == (f"{lists}?state=failed", "2")
        listed = await browser.get(late.group(1))
        assert re.findall(r'data-source="([^"]+)"', listed.text) == ["d00010"]
        listed = await browser.get(failed.group(1))
        assert re.findall(r'data-source="([^"]+)"', listed.text) == ["d00012", "d00013"]
        # The chart: an inline SVG, a bar per day with its figures in a title.
        assert '<svg class="chart" role="img"' in page.text and "<script" not in page.text
        today = now.astimezone(ZONE).date()
        days = [(e.state, e.invoice.issued_at.astimezone(ZONE).date())
                for e in events if e.invoice.issued_at is not None]
        counts = {s: len([d for state, d in days if state is s and d == today])
                  for s, _ in ORDER}
        label = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
        assert f"<title>{today.isoformat()}: {label}</title>" in page.text

    # The demo certificate is valid for years: no warning. With 20 days left, a warning.
    page = await browser.get("/dashboard")
    assert f'id="certificate-{uid}"' not in page.text
    expiry = demo_certificate.not_after
    async with env.store.transaction() as session:
        from sqlalchemy import update

        from runtime.store.models import Certificate

        await session.execute(update(Certificate).where(Certificate.integration_uid == uid)
                              .values(not_after=now + timedelta(days=20, hours=1)))
    page = await browser.get("/dashboard")
    warning = re.search(rf'id="certificate-{uid}">(.*?)</p>', page.text, re.S)
    assert warning and "in 20 days" in warning.group(1)
    assert expiry > now + timedelta(days=30)

    # At the trial's limit the badge says so and links to the Plans page.
    assert "The limit is reached" not in page.text
    await env.store.apply([_status(uid, 100 + i, InvoiceState.FISCALIZED, now) for i in range(45)])
    page = await browser.get("/dashboard")
    assert "Trial 50/50" in page.text
    reached = re.search(r'The limit is reached: (.*?)</span>', page.text, re.S)
    assert reached and '<a href="/plans">upgrade of the plan</a>' in reached.group(1)
    assert (await browser.get("/plans")).status_code == 200


async def test_plans_page_and_the_trials_one_connection(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, producer: object
) -> None:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("plans@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    await env.store.apply([_status(uid, i, InvoiceState.FISCALIZED, datetime.now(UTC))
                           for i in range(3)])
    page = await browser.get("/plans")
    assert page.status_code == 200
    rows = dict(re.findall(r'<tr data-tier="(\w+)"[^>]*>(.*?)</tr>', page.text, re.S))
    assert list(rows) == ["trial", "starter", "growth", "scale"]
    assert ">1<" in rows["trial"] and ">50<" in rows["trial"]
    assert "every 15 minutes" in rows["starter"] and ">500<" in rows["starter"]
    assert "every 5 minutes" in rows["growth"] and ">5,000<" in rows["growth"]
    assert "every minute" in rows["scale"] and "unlimited" in rows["scale"]
    assert "your plan" in rows["trial"] and "Trial 3/50" in page.text

    refused = await browser.get("/integrations/new")
    assert refused.status_code == 403
    assert "includes 1 connection" in refused.text and 'href="/plans"' in refused.text
    before = len(await env.store.integrations.find())
    token = forms_of((await browser.get("/integrations")).text)["logout"]["csrf_token"]
    posted = await browser.http.post("/integrations", data={"csrf_token": token})
    assert posted.status_code == 403 and "Nothing was created" in posted.text
    assert len(await env.store.integrations.find()) == before

    await publish_and_apply(producer, env.store, IntegrationEvent(
        integration_uid=uid, kind=IntegrationEventKind.TIER_CHANGED, tier="growth"))
    page = await browser.get("/plans")
    assert "Your plan: <strong>Growth</strong>" in page.text and "Growth 3/5000" in page.text
    assert (await browser.get("/integrations/new")).status_code == 200
