"""The reference flow in Chromium, as a new customer walks it: sign up, Create Integration
(type card, certificate, settings), Zoho consent on the Zoho sandbox, organization,
Active, webhook, Reconnect, Remove; with each step's error messages on the way, and
every page checked with axe-core and the keyboard."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from runtime.store import IntegrationStatus
from schemas.events import IntegrationEvent, IntegrationEventKind
from tests.browser.conftest import Visit, screenshot
from tests.fixtures.certs import OPERATOR_OIB, Pfx
from tests.integration.test_portal_helpers import (
    SQLITE_ONLY,
    USER_PASSWORD,
    PortalUnderTest,
    zoho_user_with_org,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


def pfx_file(pfx: Pfx, name: str = "company.pfx") -> dict[str, object]:
    return {"name": name, "mimeType": "application/x-pkcs12", "buffer": pfx.data}


async def alert_text(page: Page) -> str:
    return " ".join(await page.get_by_role("alert").all_inner_texts())


async def sign_up(page: Page, portal: PortalUnderTest, email: str,
                  password: str = USER_PASSWORD) -> None:
    await page.goto(portal.url + "/signup")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_label("Password again").fill(password)
    await page.get_by_role("button", name="Create account").click()
    await expect(page).to_have_url(portal.url + "/integrations")


async def upload_certificate(page: Page, portal: PortalUnderTest, pfx: Pfx,
                             password: str | None = None) -> None:
    await page.goto(portal.url + "/integrations/new/zoho-books")
    await page.get_by_label("Certificate file").set_input_files(pfx_file(pfx))  # type: ignore[arg-type]
    await page.get_by_label("Certificate password").fill(
        pfx.password if password is None else password)
    await page.get_by_role("button", name="Check the certificate").click()


async def zoho_consent(page: Page, user: dict[str, object]) -> None:
    """The Zoho sandbox's own pages: sign in, accept."""
    await page.get_by_label("Email").fill(str(user["email"]))
    await page.get_by_label("Password").fill(str(user["password"]))
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Accept").click()


async def test_reference_flow_with_each_steps_errors(
    page: Page, portal: PortalUnderTest, visit: Visit, demo_pfx: Pfx, demo_oib: str,
    foreign_pfx: Pfx,
) -> None:
    user, (org,) = await zoho_user_with_org(portal.zoho)

    # -- sign up, with the password policy's refusals first ------------------------------
    await page.goto(portal.url + "/")
    await expect(page).to_have_url(portal.url + "/login")
    await visit.check(page)
    await screenshot(page, "01-sign-in")
    await page.get_by_role("link", name="Create one").click()
    await visit.check(page)
    email = "owner@firma.example"
    for password, repeat, message in [
        ("short", "short", "at least 10 characters"),
        ("Password1234", "Password1234", "most common passwords"),
        ("sunshine2024!", "sunshine2024!", "common password \"sunshine\""),
        ("owner-firma-secret", "owner-firma-secret", "must not contain your e-mail"),
        (USER_PASSWORD, USER_PASSWORD + "x", "The two passwords differ"),
    ]:
        await page.get_by_label("E-mail").fill(email)
        await page.get_by_label("Password", exact=True).fill(password)
        await page.get_by_label("Password again").fill(repeat)
        # The browser's own checks (minlength) would stop "short" before the server.
        await page.locator("#signup").evaluate("f => f.noValidate = true")
        await page.get_by_role("button", name="Create account").click()
        assert message in await alert_text(page), password
        assert await portal.store.accounts.get(email) is None
    await visit.check(page)
    await screenshot(page, "02-sign-up-refused")
    await page.get_by_label("Password", exact=True).fill(USER_PASSWORD)
    await page.get_by_label("Password again").fill(USER_PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await expect(page).to_have_url(portal.url + "/integrations")
    await visit.check(page)

    # -- Create Integration: type cards ---------------------------------------------------
    await page.get_by_role("link", name="Create Integration").click()
    await expect(page).to_have_url(portal.url + "/integrations/new")
    cards = page.locator("ul.cards > li")
    assert await cards.count() >= 3
    assert await page.locator("ul.cards > li.coming").count() == await cards.count() - 1
    await expect(page.locator("#type-quickbooks")).to_contain_text("Coming")
    await visit.check(page)
    await screenshot(page, "03-create-integration-types")
    await page.get_by_role("link", name="Connect Zoho Books to Croatia · CIS").click()
    await expect(page).to_have_url(portal.url + "/integrations/new/zoho-books")
    await visit.check(page)

    # -- certificate step: its refusals, then the right one -------------------------------
    await upload_certificate(page, portal, demo_pfx, password="not the password")
    assert "password" in (await alert_text(page)).lower()
    await upload_certificate(page, portal, foreign_pfx)
    refusal = await alert_text(page)
    assert "Foreign Look-alike DEMO CA" in refusal, refusal  # the message names the issuer
    await visit.check(page)
    await screenshot(page, "04-certificate-refused")
    assert await portal.store.integrations.find() == []
    await upload_certificate(page, portal, demo_pfx)
    await expect(page.locator("#certificate-accepted")).to_contain_text(demo_oib)
    await expect(page.get_by_label("Business OIB (from the certificate)")).to_have_value(demo_oib)

    # -- settings step: a refusal keeps the certificate, then the right settings ----------
    await page.get_by_label("Name").fill("Shop Zagreb")
    await page.get_by_label("Premises code (oznaka poslovnog prostora)").fill("POSL 1!")
    await page.get_by_label("Device code (oznaka naplatnog uređaja)").fill("12")
    await page.get_by_label("Operator OIB (person issuing invoices)").fill(OPERATOR_OIB)
    await page.get_by_role("button", name="Create and connect to Zoho Books").click()
    await expect(page.locator("#premises_code-error")).to_be_visible()
    assert await portal.store.integrations.find() == []
    await visit.check(page)
    await screenshot(page, "05-create-integration-settings")
    await expect(page.get_by_label("Name")).to_have_value("Shop Zagreb")
    await page.get_by_label("Premises code (oznaka poslovnog prostora)").fill("POSL1")
    await page.get_by_role("button", name="Create and connect to Zoho Books").click()

    # -- Zoho consent on the sandbox, organization choice, Active -------------------------
    await expect(page).to_have_url(re.compile(re.escape(portal.accounts) + "/oauth/v2/auth"))
    await zoho_consent(page, user)
    (record,) = await portal.store.integrations.find()
    uid = record.uid
    assert record.name == "Shop Zagreb"
    await expect(page).to_have_url(f"{portal.url}/integrations/{uid}/organization")
    await visit.check(page)
    await page.get_by_label(re.compile(re.escape(org["organization_id"]))).check()
    await page.get_by_role("button", name="Connect this organization").click()
    await expect(page).to_have_url(f"{portal.url}/integrations/{uid}")
    await expect(page.locator("#status")).to_have_text("Active")
    await expect(page.locator("h1")).to_contain_text("Shop Zagreb")

    # -- the webhook panel: URL and the secret, in full this once --------------------------
    await expect(page.locator("#webhook-url")).to_have_value(
        portal.portal.settings.webhook_url(uid))
    secret = (await portal.store.integrations.webhook_secrets(uid)).current
    await expect(page.locator("#webhook-secret")).to_have_value(secret)
    await visit.check(page)
    await screenshot(page, "06-integration-active")
    await page.reload()
    assert await page.locator("#webhook-secret").input_value() != secret

    # -- the name can change ----------------------------------------------------------------
    await page.get_by_label("Integration name").fill("Shop Split")
    await page.get_by_role("button", name="Save name").click()
    await expect(page.get_by_role("status")).to_contain_text("Shop Split")
    await page.goto(portal.url + "/integrations")
    await expect(page.locator(f"tr[data-uid='{uid}'] .name")).to_have_text("Shop Split")
    await screenshot(page, "07-integrations")

    # -- Inactive (Zoho access revoked), then Reconnect -----------------------------------
    await portal.portal.publish(IntegrationEvent(
        integration_uid=uid, kind=IntegrationEventKind.DEACTIVATED,
        reason="Zoho refused the refresh token (revoked)"))
    await page.goto(f"{portal.url}/integrations/{uid}")
    await expect(page.locator("#status")).to_have_text("Inactive")
    await page.get_by_role("button", name="Reconnect").click()
    await zoho_consent(page, user)
    # A reconnect keeps the organization the integration holds: no choice to make.
    await expect(page).to_have_url(f"{portal.url}/integrations/{uid}")
    await expect(page.locator("#status")).to_have_text("Active")

    # -- Remove -------------------------------------------------------------------------------
    await page.get_by_role("link", name="Remove…").click()
    await visit.check(page)
    await page.get_by_role("button", name="Remove integration").click()
    await expect(page).to_have_url(portal.url + "/integrations")
    await expect(page.get_by_role("status")).to_contain_text("was removed")
    removed = await portal.store.integrations.get(uid)
    assert removed is not None and removed.status is IntegrationStatus.REMOVED


async def test_the_certificate_step_is_refused_without_a_file_and_changes_nothing(
    page: Page, portal: PortalUnderTest, visit: Visit, demo_pfx: Pfx, expired_pfx: Pfx,
) -> None:
    await sign_up(page, portal, "steps@firma.example")
    await page.goto(portal.url + "/integrations/new/zoho-books")
    await page.locator("#certificate").evaluate("f => f.noValidate = true")
    await page.get_by_role("button", name="Check the certificate").click()
    assert "Choose the certificate file" in await alert_text(page)
    await upload_certificate(page, portal, expired_pfx)
    assert "expired" in (await alert_text(page)).lower()
    await upload_certificate(page, portal, Pfx(b"not a pkcs12 file", "x"))
    assert "PKCS#12" in await alert_text(page) or "pfx" in (await alert_text(page)).lower()
    await visit.check(page)
    assert await portal.store.integrations.find() == []


async def test_the_limit_the_zoho_consent_and_the_organization_steps_say_what_went_wrong(
    page: Page, portal: PortalUnderTest, visit: Visit, demo_pfx: Pfx, demo_oib: str,
) -> None:
    from tests.browser.test_portal_accounts import sign_in

    user, (org,) = await zoho_user_with_org(portal.zoho)
    http = portal.browser()
    await http.signup("twice@firma.example")
    held = await http.connect(demo_pfx, demo_oib, user)
    await sign_in(page, portal, "twice@firma.example")

    # The trial's one connection is in use: Create Integration says so and where to go.
    await page.goto(portal.url + "/integrations/new")
    await expect(page.locator("main")).to_contain_text("Connection limit reached")
    await expect(page.get_by_role("link", name="See the plans")).to_be_visible()
    await visit.check(page)
    await portal.portal.publish(IntegrationEvent(
        integration_uid=held, kind=IntegrationEventKind.TIER_CHANGED, tier="growth"))

    # Declining at Zoho: nothing connected, the integration stays pending.
    await upload_certificate(page, portal, demo_pfx)
    await page.get_by_label("Premises code (oznaka poslovnog prostora)").fill("POSL2")
    await page.get_by_label("Device code (oznaka naplatnog uređaja)").fill("1")
    await page.get_by_label("Operator OIB (person issuing invoices)").fill(OPERATOR_OIB)
    await page.get_by_role("button", name="Create and connect to Zoho Books").click()
    await page.get_by_label("Email").fill(str(user["email"]))
    await page.get_by_label("Password").fill(str(user["password"]))
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Reject").click()
    await expect(page.locator("main")).to_contain_text("Zoho access not granted")
    await expect(page.locator("main")).to_contain_text("stays pending")
    await visit.check(page)
    second = next(r for r in await portal.store.integrations.find() if r.uid != held)
    assert second.status is IntegrationStatus.PENDING

    # The organization held by the first integration: marked, and refused when chosen.
    await page.goto(f"{portal.url}/integrations/{second.uid}")
    await page.get_by_role("button", name="Connect to Zoho Books").click()
    await zoho_consent(page, user)
    await expect(page.locator(".held")).to_contain_text(f"your integration {held}")
    await visit.check(page)
    await page.get_by_label(re.compile(re.escape(org["organization_id"]))).check()
    await page.get_by_role("button", name="Connect this organization").click()
    await expect(page.locator("main")).to_contain_text(
        f"is already fiscalized by your integration {held} (active)")
    await screenshot(page, "15-organization-held")
    record = await portal.store.integrations.get(second.uid)
    assert record is not None and record.status is IntegrationStatus.PENDING
