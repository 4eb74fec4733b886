"""The tax mapping page in Chromium: reached from the integration, each tax's control
found by its name, a refused and a good save; each state checked with axe-core and the
keyboard."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from fiscal.hr_cis.settings import FiscalSettings, TaxTreatment
from tests.browser.conftest import Visit, screenshot
from tests.browser.test_portal_flow import alert_text
from tests.browser.test_portal_pages import _connected
from tests.fixtures.certs import Pfx
from tests.integration.test_portal_helpers import SQLITE_ONLY, PortalUnderTest

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


async def test_tax_mapping_page_by_name_refused_then_saved(
    page: Page, portal: PortalUnderTest, visit: Visit, demo_pfx: Pfx, demo_oib: str,
) -> None:
    uid = await _connected(page, portal, demo_pfx, demo_oib, "tax-mapping@firma.example")
    await page.goto(f"{portal.url}/integrations/{uid}")
    await page.get_by_role("link", name="Tax mapping").click()
    await expect(page).to_have_url(f"{portal.url}/integrations/{uid}/tax-mapping")
    await visit.check(page)
    await screenshot(page, "17-tax-mapping")

    # Each control is named by its row: the Zoho tax, and what is chosen for it.
    standard = page.get_by_role("combobox", name="PDV25 (25 %)")
    # A tax that charges VAT offers only VAT or consumption tax, never exempt.
    assert await standard.locator("option[value=exempt]").count() == 0
    zero = page.get_by_role("combobox", name="PDV0 oslobodjeno (0 %)")
    await zero.select_option("fee")
    await page.get_by_role("button", name="Save the tax mapping").click()
    assert "a fee is reported with its name" in await alert_text(page)
    await expect(page.get_by_role("combobox", name="PDV0 oslobodjeno (0 %)")).to_have_attribute(
        "aria-invalid", "true")
    await visit.check(page, keyboard=False)
    record = await portal.store.integrations.get(uid)
    assert record is not None and not record.fiscal_settings.get("tax_mapping")

    await page.get_by_role("combobox", name="PDV0 oslobodjeno (0 %)").select_option("exempt")
    await page.get_by_role("combobox", name="Amounts without any tax").select_option(
        "not_subject")
    await page.get_by_role("button", name="Save the tax mapping").click()
    await expect(page.get_by_role("status").first).to_contain_text("Tax mapping saved")
    await visit.check(page)
    record = await portal.store.integrations.get(uid)
    assert record is not None
    mapping = FiscalSettings.model_validate(record.fiscal_settings).tax_mapping
    assert {TaxTreatment(category="exempt"), TaxTreatment(category="not_subject")} == set(
        mapping.values()) and "" in mapping
