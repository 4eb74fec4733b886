"""The read options page in Chromium: reached from the integration, every control found
by its label, a refused and a good save; each state checked with axe-core and the
keyboard."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import Visit, screenshot
from tests.browser.test_portal_flow import alert_text
from tests.browser.test_portal_pages import _connected
from tests.fixtures.certs import Pfx
from tests.integration.test_portal_helpers import SQLITE_ONLY, PortalUnderTest

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


async def test_read_options_page_by_label_refused_then_saved(
    page: Page, portal: PortalUnderTest, visit: Visit, demo_pfx: Pfx, demo_oib: str,
) -> None:
    uid = await _connected(page, portal, demo_pfx, demo_oib, "read-options@firma.example")
    await page.goto(f"{portal.url}/integrations/{uid}")
    await page.get_by_role("link", name="How invoices are read").click()
    await expect(page).to_have_url(f"{portal.url}/integrations/{uid}/read-options")
    await visit.check(page)
    await screenshot(page, "16-read-options")

    field = page.get_by_label("Customer custom field holding the OIB (optional)")
    await field.fill("OIB kupca")
    await page.get_by_label("Payment method of an invoice without payments").select_option(
        "cash")
    await page.get_by_role("button", name="Save the read options").click()
    assert "buyer_tax_field must be a custom field" in await alert_text(page)
    await expect(field).to_have_attribute("aria-invalid", "true")
    await visit.check(page, keyboard=False)
    record = await portal.store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == {}

    await field.fill("cf_oib")
    await page.get_by_label("Auto transaction (online payment)").select_option("card")
    await page.get_by_label("Payment mode 1", exact=True).fill("Kompenzacija")
    await page.get_by_label("Payment method of mode 1").select_option("other")
    await page.get_by_role("button", name="Save the read options").click()
    await expect(page.get_by_role("status").first).to_contain_text("Read options saved")
    await expect(page.locator("#current-buyer")).to_contain_text("cf_oib")
    await expect(page.locator('tr[data-mode="autotransaction"]')).to_contain_text("K - kartice")
    await visit.check(page)
    record = await portal.store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == {
        "buyer_tax_field": "cf_oib", "default_payment_method": "cash",
        "payment_modes": {"autotransaction": "card", "kompenzacija": "other"},
    }
