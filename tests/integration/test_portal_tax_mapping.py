"""The tax mapping page on the real HTTP server and store: the organization's taxes listed
from the Zoho sandbox, each row's treatment checked with a reason a bookkeeper
understands (nothing changed then), a good mapping stored in the fiscal settings,
announced, and the invoices that waited for it queued to be read again from Zoho."""

from __future__ import annotations

import html
import re

import pytest

from fiscal.hr_cis.settings import FiscalSettings, TaxTreatment
from runtime.settings import KafkaSettings
from runtime.store.refetch import Document
from schemas.events import IntegrationEventKind, InvoiceRef, InvoiceState, InvoiceStatus
from schemas.invoice import DocumentKind
from tests.fixtures.certs import Pfx
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    SQLITE_ONLY,
    PortalUnderTest,
    env_fixture,
    integration_events,
    make_portal_fixture,
    producer_fixture,
    zoho_user_with_org,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


def rows(page: str) -> dict[str, str]:
    """The table's rows: what the row says -> its mapping key."""
    found = re.findall(r'<tr data-key="([^"]*)">\s*<th scope="row"[^>]*>(.*?)</th>', page, re.S)
    return {re.sub(r"\s+id \d+$", "", html.unescape(re.sub(r"<[^>]+>", "", label)).strip()): key
            for key, label in found}


async def settings_events(kafka: KafkaSettings, uid: str) -> list[dict[str, object]]:
    return [e.details for e in await integration_events(kafka, uid)
            if e.kind is IntegrationEventKind.SETTINGS_CHANGED]


async def test_the_owner_says_what_each_tax_means_and_waiting_invoices_are_read_again(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, kafka_settings: KafkaSettings
) -> None:
    user, _ = await zoho_user_with_org(env.zoho, "eu")
    browser = env.browser()
    await browser.signup("taxes@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    integration = await browser.get(f"/integrations/{uid}")
    assert f'href="/integrations/{uid}/tax-mapping" id="tax-mapping-link"' in integration.text
    form = f"/integrations/{uid}/tax-mapping"

    page = (await browser.get(form)).text
    keys = rows(page)
    assert set(keys) == {
        "PDV25 (25 %)", "PDV13 (13 %)", "PDV5 (5 %)", "PDV0 oslobodjeno (0 %)",
        "Amounts without any tax", "Adjustment (Zoho's adjustment of the total)",
        "Rounding of the total", "Discount after tax",
    }, keys
    pdv25, pdv0 = keys["PDV25 (25 %)"], keys["PDV0 oslobodjeno (0 %)"]
    assert keys["Amounts without any tax"] == ""
    # A taxed row defaults to VAT at its own rate and offers only VAT or consumption tax;
    # an amount without VAT is never guessed.
    assert re.search(rf'name="t.{pdv25}"[^>]*>\s*<option value="">VAT at 25 % \(its own rate\)',
                     page)
    assert re.search(rf'name="t.{pdv0}"[^>]*>\s*<option value="">not set: such invoices wait',
                     page)

    # An invoice rejected before signing for an amount without VAT waits for the mapping.
    waiting = InvoiceStatus(
        integration_uid=uid, invoice=InvoiceRef(source_id="460000000009001", number="INV-9",
                                                version="v1", kind=DocumentKind.INVOICE),
        state=InvoiceState.REJECTED, reason_code="untaxed_amount_unmapped",
        message="set it in the integration's tax mapping",
    )
    await env.store.apply([waiting])

    async def refused(data: dict[str, str], message: str) -> None:
        response = await browser.submit(form, "tax-mapping", form, data)
        assert response.status_code == 400, response.text
        assert "Nothing was changed" in response.text and message in response.text, message
        record = await env.store.integrations.get(uid)
        assert record is not None and not record.fiscal_settings.get("tax_mapping")
        assert await settings_events(kafka_settings, uid) == []
        assert await env.store.refetch.requested() == {}

    await refused({f"t.{pdv25}": "exempt"}, "PDV25 (25 %): this tax charges VAT")
    await refused({"t.none": "vat", "d.t.none": "5"},
                  "can only be reported at 0 %, not 5 %")
    await refused({"t.charge:adjustment": "vat"}, "an amount outside the invoice lines "
                  "carries no VAT")
    await refused({f"t.{pdv0}": "fee"}, "a fee is reported with its name")
    await refused({f"t.{pdv0}": "vat", f"d.t.{pdv0}": "abc"},
                  "the rate is a percentage such as 25 or 5.5")
    await refused({"new.0": "46; DROP", "t.new.0": "exempt"}, "a Zoho tax id is digits only")
    # A form from elsewhere (no CSRF token of this session) changes nothing either.
    forged = await browser.http.post(form, data={f"t.{pdv0}": "exempt"})
    assert forged.status_code == 403
    assert await settings_events(kafka_settings, uid) == []

    saved = await browser.submit(form, "tax-mapping", form, {
        f"t.{pdv0}": "exempt", "t.none": "not_subject",
        "t.charge:rounding": "not_subject",
        "new.0": "460000000000999", "t.new.0": "fee", "d.t.new.0": "Povratna naknada",
    })
    assert saved.status_code == 303 and saved.headers["location"] == form, saved.text
    record = await env.store.integrations.get(uid)
    assert record is not None
    expected = {pdv0: {"category": "exempt"}, "": {"category": "not_subject"},
                "charge:rounding": {"category": "not_subject"},
                "460000000000999": {"category": "fee", "name": "Povratna naknada"}}
    settings = FiscalSettings.model_validate(record.fiscal_settings)
    assert settings.tax_mapping == {k: TaxTreatment(**v) for k, v in expected.items()}
    assert await settings_events(kafka_settings, uid) == [{"tax_mapping": expected}]
    # The invoice that waited is read again from Zoho at the next poll.
    assert await env.store.refetch.pending(uid, limit=10) == [
        Document("460000000009001", DocumentKind.INVOICE)]

    shown = (await browser.get(form)).text
    assert "Tax mapping saved" in shown
    assert re.search(rf'name="t.{pdv0}"[^>]*>.*?<option value="exempt" selected>', shown, re.S)
    assert "Tax 460000000000999 (not listed by Zoho Books now)" in shown

    # Another account cannot see or change it.
    stranger = env.browser()
    await stranger.signup("stranger-taxes@firma.example")
    assert (await stranger.get(form)).status_code == 404
