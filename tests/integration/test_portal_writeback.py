"""The write-back mapping page on the real HTTP server: the organization's custom fields
listed from the Zoho sandbox, bad input refused with what is wrong and nothing changed,
a good mapping stored and announced for the write-back stage; CSRF like every form."""

from __future__ import annotations

import re

import pytest

from runtime.settings import KafkaSettings
from schemas.events import IntegrationEventKind
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


def options(page: str, name: str) -> dict[str, str]:
    """label -> customfield_id of the select `name`."""
    select = re.search(rf'<select name="{re.escape(name)}"[^>]*>(.*?)</select>', page, re.S)
    assert select, f"no select {name}"
    return {label: value for value, label in
            re.findall(r'<option value="(\d+)"[^>]*>([^<(]+) \(', select[1])}


async def mapping_events(kafka: KafkaSettings, uid: str) -> list[dict[str, object]]:
    return [e.details for e in await integration_events(kafka, uid)
            if e.kind is IntegrationEventKind.SETTINGS_CHANGED]


async def test_the_owner_maps_the_fiscal_values_onto_zoho_custom_fields(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, kafka_settings: KafkaSettings
) -> None:
    user, _ = await zoho_user_with_org(env.zoho, "eu")
    browser = env.browser()
    await browser.signup("writeback@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    integration = await browser.get(f"/integrations/{uid}")
    assert f'href="/integrations/{uid}/writeback" id="writeback-link"' in integration.text

    page = (await browser.get(f"/integrations/{uid}/writeback")).text
    invoice_fields = options(page, "jir")
    note_fields = options(page, "creditnote.jir")
    assert set(invoice_fields) == set(note_fields) == {"Fiskalni broj", "ZKI", "JIR", "QR URL"}
    assert not set(invoice_fields.values()) & set(note_fields.values())  # per module
    form = f"/integrations/{uid}/writeback"

    async def refused(data: dict[str, str], message: str) -> None:
        response = await browser.submit(form, "writeback", form, data)
        assert response.status_code == 400, response.text
        assert "Nothing was changed" in response.text and message in response.text
        record = await env.store.integrations.get(uid)
        assert record is not None and record.writeback_fields == {}
        assert await mapping_events(kafka_settings, uid) == []

    await refused({"jir": note_fields["JIR"]},
                  "is not one of this organization&#39;s invoices custom fields")
    await refused({"jir": invoice_fields["JIR"], "zki": invoice_fields["JIR"]},
                  "JIR (receipt id): the same custom field is already chosen for ZKI")
    await refused({"creditnote.qr_url": "46000; DROP"}, "is not a Zoho custom field id")
    # A form from elsewhere (no CSRF token of this session) changes nothing either.
    forged = await browser.http.post(form, data={"jir": invoice_fields["JIR"]})
    assert forged.status_code == 403 and "Nothing was changed" in forged.text
    assert await mapping_events(kafka_settings, uid) == []

    wanted = {
        "fiscal_number": invoice_fields["Fiskalni broj"], "zki": invoice_fields["ZKI"],
        "jir": invoice_fields["JIR"], "qr_url": invoice_fields["QR URL"],
        "creditnote.fiscal_number": note_fields["Fiskalni broj"],
        "creditnote.jir": note_fields["JIR"],
    }
    saved = await browser.submit(form, "writeback", form, wanted)
    assert saved.status_code == 303 and saved.headers["location"] == form
    record = await env.store.integrations.get(uid)
    assert record is not None and record.writeback_fields == wanted
    assert await mapping_events(kafka_settings, uid) == [{"writeback_fields": wanted}]
    shown = (await browser.get(form)).text
    assert "Write-back mapping saved" in shown
    assert f'<option value="{note_fields["JIR"]}" selected>' in shown
    assert re.search(r'<select name="creditnote.zki"[^>]*>\s*<option value="">not written',
                     shown)

    # Another account cannot see or change it.
    stranger = env.browser()
    await stranger.signup("stranger@firma.example")
    assert (await stranger.get(form)).status_code == 404


async def test_without_zoho_the_ids_are_typed_and_checked(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, kafka_settings: KafkaSettings
) -> None:
    browser = env.browser()
    await browser.signup("pending@firma.example")
    uid, _ = await browser.start_connect(demo_pfx, demo_oib)  # not connected to Zoho yet
    form = f"/integrations/{uid}/writeback"
    page = (await browser.get(form)).text
    assert "not connected to Zoho Books" in page and '<input name="jir"' in page

    bad = await browser.submit(form, "writeback", form, {"jir": "JIR"})
    assert bad.status_code == 400 and "is not a Zoho custom field id" in bad.text
    assert 'aria-invalid="true" aria-describedby="jir-error"' in bad.text
    assert await mapping_events(kafka_settings, uid) == []

    good = await browser.submit(form, "writeback", form, {"jir": "460000000000503"})
    assert good.status_code == 303
    record = await env.store.integrations.get(uid)
    assert record is not None and record.writeback_fields == {"jir": "460000000000503"}
    assert await mapping_events(kafka_settings, uid) == [
        {"writeback_fields": {"jir": "460000000000503"}}]
