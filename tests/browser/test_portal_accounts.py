"""Accounts in Chromium: server-side sessions (Sign out, the active sessions list, a
password change), sign-in throttling, password reset through the mail catcher, and
account settings; pages checked with axe-core and the keyboard."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import BrowserContext, Page, expect

from services.portal.web.sessions import COOKIE, ENDED
from tests.browser.conftest import Mailbox, NewContext, Visit, screenshot
from tests.browser.test_portal_flow import alert_text, sign_up
from tests.integration.test_portal_helpers import (
    SQLITE_ONLY,
    USER_PASSWORD,
    MakePortal,
    PortalUnderTest,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]

NEW_PASSWORD = "violet tugboat orchard"


async def sign_in(page: Page, portal: PortalUnderTest, email: str,
                  password: str = USER_PASSWORD) -> None:
    await page.goto(portal.url + "/login")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def signed_in(page: Page, portal: PortalUnderTest) -> bool:
    await page.goto(portal.url + "/integrations")
    return page.url == portal.url + "/integrations"


async def test_sign_out_ends_the_session_for_every_copy_of_its_cookie(
    page: Page, portal: PortalUnderTest, new_context: NewContext,
) -> None:
    await sign_up(page, portal, "copy@firma.example")
    copied = [c for c in await page.context.cookies() if c["name"] == COOKIE]
    thief = await new_context()
    await thief.add_cookies(copied)  # type: ignore[arg-type]
    thief_page = await thief.new_page()
    assert await signed_in(thief_page, portal)  # the copy works while the session lives

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await thief.clear_cookies()
    await thief.add_cookies(copied)  # type: ignore[arg-type]
    assert not await signed_in(thief_page, portal)
    await expect(thief_page.get_by_role("status")).to_have_text(ENDED)


async def test_active_sessions_list_ends_others_and_a_password_change_ends_all_others(
    page: Page, portal: PortalUnderTest, new_context: NewContext, visit: Visit,
) -> None:
    email = "sessions@firma.example"
    await sign_up(page, portal, email)
    others: list[tuple[BrowserContext, Page]] = []
    for agent in ("Mozilla/5.0 (Windows NT 10.0) Firefox/130.0",
                  "Mozilla/5.0 (iPhone) Safari/605.1.15",
                  "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"):
        context = await new_context(user_agent=agent)
        other = await context.new_page()
        await sign_in(other, portal, email)
        await expect(other).to_have_url(portal.url + "/integrations")
        others.append((context, other))

    await page.get_by_role("link", name="Account").click()
    await expect(page).to_have_url(portal.url + "/account")
    rows = page.locator("#sessions tbody tr")
    await expect(rows).to_have_count(4)
    await expect(page.locator("#sessions")).to_contain_text("(this browser)")
    await expect(page.locator("#sessions")).to_contain_text("Firefox on Windows")
    await visit.check(page)
    await screenshot(page, "08-account")

    # End one other session: that browser is signed out, the rest are not.
    await page.get_by_role("button", name=re.compile("^End the session of Firefox")).click()
    await expect(page.get_by_role("status")).to_have_text("That session was signed out.")
    await expect(rows).to_have_count(3)
    assert not await signed_in(others[0][1], portal)
    assert await signed_in(others[1][1], portal)

    # A password change: wrong current password and a common new one are refused first.
    form = page.locator("#account-password")
    await form.get_by_label("Current password").fill("not my password")
    await form.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await form.get_by_label("New password again").fill(NEW_PASSWORD)
    await form.get_by_role("button", name="Change password").click()
    assert "current password is wrong" in await alert_text(page)
    await form.get_by_label("Current password").fill(USER_PASSWORD)
    await form.get_by_label("New password", exact=True).fill("iloveyou123")
    await form.get_by_label("New password again").fill("iloveyou123")
    await form.get_by_role("button", name="Change password").click()
    assert "common password" in await alert_text(page)
    assert await portal.store.accounts.authenticate(email, USER_PASSWORD) is not None
    await visit.check(page, keyboard=False)

    await form.get_by_label("Current password").fill(USER_PASSWORD)
    await form.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await form.get_by_label("New password again").fill(NEW_PASSWORD)
    await form.get_by_role("button", name="Change password").click()
    await expect(page.get_by_role("status")).to_contain_text("Your password was changed")
    await expect(rows).to_have_count(1)  # this browser, in a new session
    for _, other in others:
        assert not await signed_in(other, portal)
    assert await signed_in(page, portal)
    assert await portal.store.accounts.authenticate(email, NEW_PASSWORD) is not None


async def test_account_settings_change_name_and_email(
    page: Page, portal: PortalUnderTest, new_context: NewContext, mailbox: Mailbox,
    visit: Visit,
) -> None:
    await sign_up(page, portal, "name@firma.example")
    await sign_up(await (await new_context()).new_page(), portal, "taken2@firma.example")
    await page.goto(portal.url + "/account")
    await page.get_by_label("Your name").fill("Ana Horvat")
    await page.get_by_role("button", name="Save name").click()
    await expect(page.get_by_role("status")).to_have_text("Your name was saved.")
    await expect(page.get_by_label("Your name")).to_have_value("Ana Horvat")

    form = page.locator("#account-email")
    for address, password, message in [
        ("ana@firma.example", "wrong password!", "current password is wrong"),
        ("taken2@firma.example", USER_PASSWORD, "already uses taken2@firma.example"),
        ("not-an-address", USER_PASSWORD, "is not an e-mail address"),
    ]:
        await form.get_by_label("E-mail address (you sign in with it)").fill(address)
        await form.get_by_label("Current password").fill(password)
        await form.evaluate("f => f.noValidate = true")
        await form.get_by_role("button", name="Change e-mail").click()
        assert message in await alert_text(page), address
    before = mailbox.last_id()
    await form.get_by_label("E-mail address (you sign in with it)").fill("Ana@Firma.example")
    await form.get_by_label("Current password").fill(USER_PASSWORD)
    await form.get_by_role("button", name="Change e-mail").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "A confirmation link was sent to ana@firma.example")
    await expect(page.locator("#email-pending")).to_contain_text("ana@firma.example")
    # Nothing changes before the new mailbox answers; the old one is told.
    await expect(page.locator("header .who")).to_have_text("name@firma.example")
    assert await portal.store.accounts.get("ana@firma.example") is None
    notice = await mailbox.wait_for("name@firma.example", after=before)
    assert "ana@firma.example" in notice.body

    mail = await mailbox.wait_for("ana@firma.example", after=before)
    assert mail.subject == "Confirm your new FiscoBridge e-mail address"
    await page.goto(f"{mailbox.url}/messages/{mail.id}")
    await page.locator("pre a[href*='account/email/confirm']").click()
    heading = page.get_by_role("heading", name="Confirm your new e-mail address")
    await expect(heading).to_be_visible()
    link = page.url
    await visit.check(page)
    await page.get_by_role("button", name="Confirm ana@firma.example").click()
    await expect(page).to_have_url(portal.url + "/account")
    await expect(page.get_by_role("status")).to_contain_text(
        "Your e-mail address is now ana@firma.example")
    await expect(page.locator("header .who")).to_have_text("ana@firma.example")
    assert await portal.store.accounts.get("name@firma.example") is None
    assert await portal.store.accounts.authenticate("ana@firma.example", USER_PASSWORD)
    await page.goto(link)  # once only
    await expect(page.locator("main")).to_contain_text("confirmation link does not work")


async def test_sign_in_is_throttled_per_account_then_per_address(
    page: Page, make_portal: MakePortal, mailbox: Mailbox, visit: Visit,
) -> None:
    portal = await make_portal(smtp_url=mailbox.smtp_url, login_failures_per_account=3,
                               login_failures_per_ip=5)
    await sign_up(page, portal, "locked@firma.example")
    await page.get_by_role("button", name="Sign out").click()
    for _ in range(3):
        await sign_in(page, portal, "locked@firma.example", "not the password")
        assert await alert_text(page) == "Wrong e-mail or password."
    # Locked: even the right password is refused, and the page says for how long.
    await sign_in(page, portal, "locked@firma.example")
    refusal = await alert_text(page)
    assert re.search(r"Too many failed sign-ins for locked@firma.example in the last "
                     r"15 minutes\. Try again in 1[45] minutes", refusal), refusal
    await visit.check(page)
    await screenshot(page, "09-sign-in-throttled")
    # The window passes: the right password works again.
    portal.clock.offset += 15 * 60 + 1
    await sign_in(page, portal, "locked@firma.example")
    await expect(page).to_have_url(portal.url + "/integrations")
    await page.get_by_role("button", name="Sign out").click()

    # Per client address: failures over several e-mails add up.
    for n in range(5):
        await sign_in(page, portal, f"guess{n}@firma.example", "not the password")
    await sign_in(page, portal, "locked@firma.example")
    assert "Too many failed sign-ins from your network address (127.0.0.1)" in (
        await alert_text(page))


async def test_password_reset_by_mail(
    page: Page, portal: PortalUnderTest, mailbox: Mailbox, visit: Visit,
    new_context: NewContext,
) -> None:
    email = "reset@firma.example"
    await sign_up(page, portal, email)
    other = await (await new_context()).new_page()
    await sign_in(other, portal, email)

    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_role("link", name="Forgot your password?").click()
    await visit.check(page)
    before = mailbox.last_id()
    await page.get_by_label("E-mail").fill("Reset@Firma.example")
    await page.get_by_role("button", name="Send the link").click()
    await expect(page.get_by_role("status")).to_contain_text("a link to choose a new password")
    # An unknown address gets the same answer and no mail.
    await page.goto(portal.url + "/password/forgot")
    await page.get_by_label("E-mail").fill("nobody@firma.example")
    await page.get_by_role("button", name="Send the link").click()
    await expect(page.get_by_role("status")).to_contain_text("If nobody@firma.example has")

    mail = await mailbox.wait_for(email, after=before)
    assert mail.subject == "Reset your FiscoBridge password"
    assert all(email not in m.to or m.id == mail.id for m in mailbox.catcher.mails
               if m.id > before)
    # Read it where a developer would: the mail catcher's page, then follow the link.
    await page.goto(f"{mailbox.url}/messages/{mail.id}")
    await page.locator("pre a[href*='password/reset']").click()
    await expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    link = page.url
    await visit.check(page)
    await screenshot(page, "10-password-reset")
    await page.get_by_label("New password", exact=True).fill("qwerty123456")
    await page.get_by_label("New password again").fill("qwerty123456")
    await page.get_by_role("button", name="Save the new password").click()
    assert "common password" in await alert_text(page)
    await page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    await page.get_by_label("New password again").fill(NEW_PASSWORD)
    await page.get_by_role("button", name="Save the new password").click()
    await expect(page).to_have_url(portal.url + "/login")
    await expect(page.get_by_role("status")).to_contain_text("Your password was changed")
    assert not await signed_in(other, portal)  # every session ended

    # The link works once.
    await page.goto(link)
    await expect(page.locator("main")).to_contain_text("This password reset link does not work")
    await sign_in(page, portal, email, USER_PASSWORD)
    assert await alert_text(page) == "Wrong e-mail or password."
    await sign_in(page, portal, email, NEW_PASSWORD)
    await expect(page).to_have_url(portal.url + "/integrations")


async def test_reset_mails_are_limited_and_links_expire(
    page: Page, portal: PortalUnderTest, mailbox: Mailbox,
) -> None:
    email = "limit@firma.example"
    await sign_up(page, portal, email)
    await page.get_by_role("button", name="Sign out").click()
    before = mailbox.last_id()
    for _ in range(portal.portal.settings.reset_mails_per_hour):
        await page.goto(portal.url + "/password/forgot")
        await page.get_by_label("E-mail").fill(email)
        await page.get_by_role("button", name="Send the link").click()
        await expect(page).to_have_url(portal.url + "/login")
    await page.goto(portal.url + "/password/forgot")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_role("button", name="Send the link").click()
    assert "reset links were sent for limit@firma.example in the last hour" in (
        await alert_text(page))
    sent = [m for m in mailbox.catcher.mails if m.id > before and email in m.to]
    assert len(sent) == portal.portal.settings.reset_mails_per_hour
    # Sign-in failures are forgotten after 15 minutes; the hour of reset mails is not.
    portal.clock.offset += 20 * 60
    await sign_in(page, portal, email, "not the password")
    await page.goto(portal.url + "/password/forgot")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_role("button", name="Send the link").click()
    assert "in the last hour" in await alert_text(page)

    link = re.search(r"https?://\S+/password/reset/\S+", sent[-1].body)
    assert link is not None
    portal.clock.offset += portal.portal.settings.reset_ttl.total_seconds() + 1
    await page.goto(link.group(0))
    await expect(page.locator("main")).to_contain_text("it has expired")


async def test_sign_up_and_sign_in_by_keyboard_alone(
    page: Page, portal: PortalUnderTest,
) -> None:
    await page.goto(portal.url + "/signup")
    await page.keyboard.press("Tab")  # the brand link
    for value in ("", "keys@firma.example", USER_PASSWORD, USER_PASSWORD):
        await page.keyboard.press("Tab")
        if value:
            await page.keyboard.type(value)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(portal.url + "/integrations")
    assert await portal.store.accounts.get("keys@firma.example") is not None
