"""A business paying by transfer is an e-invoice, not a CIS invoice (hr-fiscal-record.md):
the status the real fiscalizer gives it (`skipped`, reason `e_invoice`) reaches the store
and the portal shows it as skipped, with the reason on its page."""

from __future__ import annotations

import html

import pytest

from fiscal.hr_cis.settings import FiscalSettings
from schemas.events import InvoiceState, InvoiceStatus
from schemas.invoice import Customer, Payment, PaymentMethod
from schemas.topics import INVOICES_STATUS
from tests.factories import make_invoice
from tests.fixtures.certs import Pfx
from tests.integration.test_fiscalizer_hr_cis import Run, run_fixture  # noqa: F401 - fixture
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    SQLITE_ONLY,
    PortalUnderTest,
    env_fixture,
    make_portal_fixture,
    producer_fixture,
    zoho_user_with_org,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY, pytest.mark.asyncio(loop_scope="session")]

BUYER_OIB = "98765432198"


async def test_a_b2b_transfer_invoice_is_listed_as_skipped_with_its_reason(
    env: PortalUnderTest, run: Run, demo_pfx: Pfx, demo_oib: str,
    fiscal_settings: FiscalSettings,
) -> None:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("eracun@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    transfer = make_invoice(
        source_id="4600000000777001", number="INV-00777",
        customer=Customer(name="Firma d.o.o.", tax_id=f"HR{BUYER_OIB}", country="HR"),
        payments=(Payment(mode="banktransfer", method=PaymentMethod.BANK_TRANSFER,
                          amount=make_invoice().total),),
    )
    run.integration(uid, fiscal_settings)
    topic, value = await run.received(uid, transfer)
    assert topic == INVOICES_STATUS.name
    status = InvoiceStatus.from_json(value)
    assert (status.state, status.reason_code) == (InvoiceState.SKIPPED, "e_invoice")

    await env.store.apply([status])

    skipped = await browser.get(f"/integrations/{uid}/invoices?state=skipped")
    assert skipped.status_code == 200, skipped.text
    assert 'data-source="4600000000777001"' in skipped.text
    assert '<span class="state skipped">Skipped</span>' in skipped.text
    assert "1 invoice" in skipped.text
    fiscalized = await browser.get(f"/integrations/{uid}/invoices?state=fiscalized")
    assert "4600000000777001" not in fiscalized.text
    page = await browser.get(f"/integrations/{uid}/invoices/4600000000777001")
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert "<strong>e_invoice</strong>" in text
    assert "e-invoice (eRacun)" in text and BUYER_OIB in text
