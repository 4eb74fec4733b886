"""The pages after the connection, in Chromium: dashboard, invoices (pages, filters,
detail, downloads, CSV), certificate replacement, and the webhook secret's reveal and
rotation; each checked with axe-core and the keyboard."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from schemas.events import InvoiceState
from tests.browser.conftest import Visit, screenshot
from tests.browser.test_portal_accounts import sign_in
from tests.browser.test_portal_flow import alert_text, pfx_file
from tests.fixtures.certs import Pfx
from tests.integration.test_portal_helpers import (
    SQLITE_ONLY,
    USER_PASSWORD,
    PortalUnderTest,
    zoho_user_with_org,
)
from tests.integration.test_portal_invoices import _events

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


async def _text(path: Path) -> str:
    return await asyncio.to_thread(path.read_text, "utf-8")


async def _connected(page: Page, portal: PortalUnderTest, pfx: Pfx, oib: str,
                     email: str) -> str:
    """An Active integration made over HTTP (the flow test walks it in the browser),
    then signed in here."""
    user, _ = await zoho_user_with_org(portal.zoho)
    http = portal.browser()
    await http.signup(email)
    uid = await http.connect(pfx, oib, user)
    await sign_in(page, portal, email)
    await expect(page).to_have_url(portal.url + "/integrations")
    return uid


async def test_dashboard_and_invoices_pages_filters_detail_and_downloads(
    page: Page, portal: PortalUnderTest, visit: Visit, demo_pfx: Pfx, demo_oib: str,
) -> None:
    uid = await _connected(page, portal, demo_pfx, demo_oib, "pages@firma.example")
    events = _events(uid, 60)
    await portal.store.apply(events)

    await page.get_by_role("link", name="Dashboard").first.click()
    await expect(page).to_have_url(portal.url + "/dashboard")
    await expect(page.locator("svg.chart").first).to_be_visible()
    await visit.check(page)
    await screenshot(page, "11-dashboard")

    # -- pages -------------------------------------------------------------------------------
    await page.goto(f"{portal.url}/integrations/{uid}/invoices?size=25")
    await expect(page.locator("#count")).to_have_text("60 invoices match.")
    rows = page.locator("#invoices tbody tr")
    await expect(rows).to_have_count(25)
    first_page = await rows.first.get_attribute("data-source")
    assert first_page == events[-1].invoice.source_id  # newest first
    await visit.check(page)
    await screenshot(page, "12-invoices")
    await page.get_by_role("link", name="Next page →").click()
    await expect(rows).to_have_count(25)
    assert await rows.first.get_attribute("data-source") == events[-26].invoice.source_id
    await page.get_by_role("link", name="Next page →").click()
    await expect(rows).to_have_count(10)
    await expect(page.get_by_role("link", name="Next page →")).to_have_count(0)
    await page.get_by_role("link", name="First page").click()
    assert await rows.first.get_attribute("data-source") == first_page

    # -- filters, with the form ---------------------------------------------------------------
    await page.get_by_label("Fiscalized").check()
    await page.get_by_label("Customer name starts with").fill("ćev")
    await page.get_by_role("button", name="Show invoices").click()
    expected = [e for e in events if e.state is InvoiceState.FISCALIZED
                and (e.invoice.customer or "").startswith("Ć")]
    await expect(page.locator("#count")).to_have_text(f"{len(expected)} invoices match.")
    await expect(page.get_by_label("Customer name starts with")).to_have_value("ćev")
    await page.get_by_label("Total at least (EUR)").fill("lots")
    await page.get_by_role("button", name="Show invoices").click()
    await expect(page.locator("main")).to_contain_text("is not an amount")
    await visit.check(page, keyboard=False)

    # -- CSV export of the filtered list ------------------------------------------------------
    await page.goto(f"{portal.url}/integrations/{uid}/invoices?state=fiscalized")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Export CSV").click()
    download = await download_info.value
    rows_csv = list(csv.reader(io.StringIO(await _text(await download.path()))))
    assert len(rows_csv) - 1 == sum(e.state is InvoiceState.FISCALIZED for e in events)

    # -- detail and the signed documents ------------------------------------------------------
    fiscalized = events[-2]  # events[-1] (i = 59) is blocked: every third one
    assert fiscalized.state is InvoiceState.FISCALIZED
    await page.get_by_role("link", name=fiscalized.invoice.number, exact=True).click()
    await expect(page.locator("main")).to_contain_text(str(fiscalized.receipt_id))
    await expect(page.locator("#qr svg")).to_be_visible()
    await visit.check(page)
    await screenshot(page, "13-invoice")
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Signed request (XML)").click()
    download = await download_info.value
    assert await _text(await download.path()) == fiscalized.signed_request

    await page.goto(f"{portal.url}/integrations/{uid}/dashboard")
    await visit.check(page)


async def test_replace_certificate_reveal_and_rotate_the_webhook_secret(
    page: Page, portal: PortalUnderTest, visit: Visit, demo_pfx: Pfx, demo_oib: str,
    foreign_pfx: Pfx, test_ca: object,
) -> None:
    uid = await _connected(page, portal, demo_pfx, demo_oib, "secrets@firma.example")
    await page.goto(f"{portal.url}/integrations/{uid}")
    first = (await portal.store.integrations.webhook_secrets(uid)).current
    # In full on the first showing, masked from then on.
    await expect(page.locator("#webhook-secret")).to_have_value(first)
    await expect(page.locator("#secret-once")).to_be_visible()
    await page.reload()
    await expect(page.locator("#webhook-secret")).not_to_have_value(first)
    await visit.check(page)

    # -- reveal with the password -------------------------------------------------------------
    await page.get_by_label("Your FiscoBridge password, to show the secret").fill("not it!")
    await page.get_by_role("button", name="Show the secret").click()
    assert "password" in (await alert_text(page)).lower()
    await expect(page.locator("#webhook-secret")).not_to_have_value(first)
    await page.get_by_label("Your FiscoBridge password, to show the secret").fill(USER_PASSWORD)
    await page.get_by_role("button", name="Show the secret").click()
    await expect(page.locator("#webhook-secret")).to_have_value(first)

    # -- rotate: a new secret, in full once, the old one in its grace period ---------------
    await page.goto(f"{portal.url}/integrations/{uid}")
    await page.locator("#rotate-section summary").click()
    await page.get_by_label("I will paste the new secret into the Zoho Books webhook.").check()
    await page.get_by_role("button", name="Rotate secret").click()
    secrets = await portal.store.integrations.webhook_secrets(uid)
    assert secrets.current != first and secrets.previous == first
    await expect(page.locator("#webhook-secret")).to_have_value(secrets.current)
    await expect(page.locator("#secret-grace")).to_be_visible()
    await visit.check(page, keyboard=False)
    await screenshot(page, "14-webhook-rotated")

    # -- replace the certificate: an untrusted one is refused, the right one taken ----------
    await page.goto(f"{portal.url}/integrations/{uid}")
    await page.get_by_role("link", name="Replace certificate").click()
    await visit.check(page)
    await page.get_by_label("Certificate file (.pfx, .p12)").set_input_files(
        pfx_file(foreign_pfx))  # type: ignore[arg-type]
    await page.get_by_label("Certificate password").fill(foreign_pfx.password)
    await page.get_by_role("button", name="Replace certificate").click()
    assert "Foreign Look-alike DEMO CA" in await alert_text(page)
    before = await portal.store.integrations.certificate_info(uid)
    from tests.fixtures.certs import PFX_PASSWORD

    renewed = Pfx(test_ca.issue_pfx(demo_oib, PFX_PASSWORD), PFX_PASSWORD)  # type: ignore[attr-defined]
    await page.get_by_label("Certificate file (.pfx, .p12)").set_input_files(
        pfx_file(renewed))  # type: ignore[arg-type]
    await page.get_by_label("Certificate password").fill(renewed.password)
    await page.get_by_role("button", name="Replace certificate").click()
    await expect(page.get_by_role("status")).to_be_visible()
    after = await portal.store.integrations.certificate_info(uid)
    assert after.fingerprint_sha256 != before.fingerprint_sha256
