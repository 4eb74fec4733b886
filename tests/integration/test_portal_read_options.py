"""The read options page on the real HTTP server and store: the current options shown with
what they mean (where the buyer's OIB is read from, Zoho payment mode -> method -> CIS
code), bad input refused with what is wrong and nothing changed, a good save stored as
MappingOptions (what poller and ingest read) and shown; only the owner sees it."""

from __future__ import annotations

import re

import pytest

from connectors.zoho.mapping import MappingOptions
from schemas.invoice import PaymentMethod
from tests.fixtures.certs import Pfx
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    SQLITE_ONLY,
    PortalUnderTest,
    env_fixture,
    make_portal_fixture,
    producer_fixture,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]

# The form parser in the helpers collects inputs, not selects: every select is sent.
DEFAULT_FORM = {
    "buyer_tax_field": "", "default_payment_method": "other", "base_currency": "EUR",
    "mode.cash": "cash", "mode.creditcard": "card", "mode.banktransfer": "bank_transfer",
    "mode.bankremittance": "bank_transfer", "mode.check": "cheque",
    "mode.autotransaction": "other", "mode.others": "other",
}


def row(page: str, mode: str) -> str:
    """The text of the current-options table row of a Zoho payment mode."""
    found = re.search(rf'<tr data-mode="{re.escape(mode)}">(.*?)</tr>', page, re.S)
    assert found, f"no row for {mode}"
    return re.sub(r"<[^>]+>", "", found[1])


async def test_the_owner_sees_and_changes_how_invoices_are_read(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    browser = env.browser()
    await browser.signup("reading@firma.example")
    uid, _ = await browser.start_connect(demo_pfx, demo_oib)
    integration = await browser.get(f"/integrations/{uid}")
    assert f'href="/integrations/{uid}/read-options" id="read-options-link"' in integration.text
    form = f"/integrations/{uid}/read-options"

    page = (await browser.get(form)).text
    assert "From the contact's tax number in Zoho Books" in page
    assert "No custom field is read" in page
    assert row(page, "banktransfer") == "Bank transferBank transferT - transakcijski račun" \
        " (bank transfer)"
    assert row(page, "check").endswith("O - ostalo (other)")  # cheques are no CIS code now
    assert re.search(r'id="current-default">Other, reported as O', page)
    assert '<label for="buyer_tax_field">' in page and 'id="buyer_tax_field"' in page

    async def refused(data: dict[str, str], *messages: str) -> str:
        response = await browser.submit(form, "read-options", form, {**DEFAULT_FORM, **data})
        assert response.status_code == 400, response.text
        assert "Nothing was changed" in response.text
        for message in messages:
            assert message in response.text, message
        record = await env.store.integrations.get(uid)
        assert record is not None and record.zoho_read_options == {}
        return response.text

    # A valid default method with a bad field: the whole form is refused.
    bad = await refused({"buyer_tax_field": "OIB kupca", "default_payment_method": "cash"},
                        "Buyer&#39;s OIB field: buyer_tax_field must be a custom field&#39;s"
                        " api_name", "&#39;OIB kupca&#39;")
    assert 'aria-invalid="true" aria-describedby="buyer_tax_field-error buyer-hint"' in bad
    assert 'value="OIB kupca"' in bad  # what was typed stays to be corrected
    await refused({"buyer_tax_field": "cf_OIB"}, "like cf_oib")
    await refused({"base_currency": "euro"}, "Base currency: base_currency must be a"
                  " three-letter ISO code")
    await refused({"mode.cash": "gotovina"}, "Zoho payment mode Cash: choose one of")
    await refused({"own_mode.0": "Bank Transfer", "own_method.0": "cash"},
                  "is already in the table above")
    await refused({"own_mode.0": "", "own_method.0": "card"}, "type its name")
    await refused({"own_mode.0": "Kompenzacija"}, "Payment mode &#39;Kompenzacija&#39;:"
                  " choose one of")
    # A form from elsewhere (no CSRF token of this session) changes nothing either.
    forged = await browser.http.post(form, data={**DEFAULT_FORM, "buyer_tax_field": "cf_oib"})
    assert forged.status_code == 403 and "Nothing was changed" in forged.text
    record = await env.store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == {}

    saved = await browser.submit(form, "read-options", form, {
        **DEFAULT_FORM, "buyer_tax_field": " cf_oib ", "default_payment_method": "bank_transfer",
        "base_currency": "eur", "mode.autotransaction": "card", "mode.check": "cheque",
        "own_mode.0": "Gotovina Blagajna", "own_method.0": "cash",
    })
    assert saved.status_code == 303 and saved.headers["location"] == form
    record = await env.store.integrations.get(uid)
    assert record is not None
    # Stored as the CLI stores it: only what differs from the defaults.
    assert record.zoho_read_options == {
        "buyer_tax_field": "cf_oib", "default_payment_method": "bank_transfer",
        "payment_modes": {"autotransaction": "card", "gotovinablagajna": "cash"},
    }
    options = MappingOptions.from_stored(record.zoho_read_options)
    assert options.payment_modes["gotovinablagajna"] is PaymentMethod.CASH

    shown = (await browser.get(form)).text
    assert "Read options saved" in shown
    assert "From the customer's custom field <code>cf_oib</code>" in shown
    assert row(shown, "autotransaction") == ("Auto transaction (online payment)Card (changed;"
                                             " usually Other)K - kartice (cards)")
    assert row(shown, "gotovinablagajna") == "gotovinablagajna (your own)CashG - gotovina (cash)"
    assert re.search(r'id="current-default">Bank transfer, reported as T', shown)
    assert 'name="own_mode.0" value="gotovinablagajna"' in shown
    assert re.search(r'<select id="mode-autotransaction" name="mode.autotransaction">\s*'
                     r'(<option value="\w+">[^<]*</option>)*<option value="card" selected>',
                     shown)

    # Emptying a mode's name and the field goes back to the defaults for them.
    cleared = await browser.submit(form, "read-options", form, {
        **DEFAULT_FORM, "own_mode.0": "", "own_method.0": "",
    })
    assert cleared.status_code == 303
    record = await env.store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == {}

    # Another account can neither see nor change it.
    stranger = env.browser()
    await stranger.signup("stranger-reading@firma.example")
    assert (await stranger.get(form)).status_code == 404
    token = (await stranger.form("/integrations", "logout"))["csrf_token"]
    posted = await stranger.http.post(form, data={**DEFAULT_FORM, "csrf_token": token,
                                                  "buyer_tax_field": "cf_oib"})
    assert posted.status_code == 404
    record = await env.store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == {}


async def test_invalid_stored_options_are_named_and_replaced_a_removed_one_is_not_edited(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    browser = env.browser()
    await browser.signup("broken-reading@firma.example")
    uid, _ = await browser.start_connect(demo_pfx, demo_oib)
    # As if written by hand: poller and ingest stop on these with a reason.
    await env.store.integrations.set_zoho_read_options(uid, {"base_currency": "euro"})
    form = f"/integrations/{uid}/read-options"
    page = (await browser.get(form)).text
    assert re.search(r'id="options-invalid"[^>]*>The stored read options are not valid'
                     r" \(base_currency must be a three-letter ISO code", page)
    saved = await browser.submit(form, "read-options", form, DEFAULT_FORM)
    assert saved.status_code == 303
    record = await env.store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == {}
    assert 'id="options-invalid"' not in (await browser.get(form)).text

    # A removed integration reads nothing: shown, not editable, a save refused.
    removed = await browser.submit(f"/integrations/{uid}/remove", "remove",
                                   f"/integrations/{uid}/remove")
    assert removed.status_code == 303
    page = (await browser.get(form)).text
    assert "Save the read options" not in page and 'id="buyer_tax_field"' in page
    refused = await browser.submit(form, "read-options", form,
                                   {**DEFAULT_FORM, "buyer_tax_field": "cf_oib"})
    assert refused.status_code == 409 and "nothing was changed" in refused.text
    record = await env.store.integrations.get(uid)
    assert record is not None and record.zoho_read_options == {}
