"""Accounts, sessions, CSRF and isolation between accounts, over real HTTP."""

from __future__ import annotations

import hashlib
import html
import re
from collections import deque
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from fiscobridge.mailcatcher import MailCatcher
from runtime.store import IntegrationStatus
from services.portal.web.sessions import COOKIE
from tests.fixtures.certs import Pfx
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    SQLITE_ONLY,
    USER_PASSWORD,
    MakePortal,
    PortalUnderTest,
    env_fixture,
    make_portal_fixture,
    producer_fixture,
    zoho_user_with_org,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


async def test_sign_up_sign_out_sign_in(env: PortalUnderTest) -> None:
    browser = env.browser()
    anonymous = await browser.get("/integrations")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"

    signed_up = await browser.signup("Owner@Firma.example")
    cookie = signed_up.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # served over http here; https deployments get Secure
    page = await browser.get("/integrations")
    assert page.status_code == 200 and "owner@firma.example" in page.text
    assert page.headers["cache-control"] == "no-store"

    out = await browser.submit("/integrations", "logout", "/logout")
    assert out.status_code == 303
    assert (await browser.get("/integrations")).status_code == 303

    wrong = await browser.submit("/login", "login", "/login",
                                 {"email": "owner@firma.example", "password": "not it at all"})
    assert wrong.status_code == 400 and "Wrong e-mail or password" in wrong.text
    unknown = await browser.submit("/login", "login", "/login",
                                   {"email": "nobody@firma.example", "password": USER_PASSWORD})
    assert unknown.status_code == 400 and "Wrong e-mail or password" in unknown.text
    right = await browser.submit("/login", "login", "/login",
                                 {"email": "owner@firma.example", "password": USER_PASSWORD})
    assert right.status_code == 303
    assert (await browser.get("/integrations")).status_code == 200


async def test_sign_up_refusals(env: PortalUnderTest) -> None:
    browser = env.browser()
    await browser.signup("taken@firma.example")
    other = env.browser()
    cases = [
        ({"email": "taken@firma.example", "password": USER_PASSWORD,
          "password_repeat": USER_PASSWORD}, "already exists"),
        ({"email": "new@firma.example", "password": "short", "password_repeat": "short"},
         "at least 10 characters"),
        ({"email": "new@firma.example", "password": USER_PASSWORD,
          "password_repeat": USER_PASSWORD + "!"}, "The two passwords differ"),
        ({"email": "not-an-address", "password": USER_PASSWORD,
          "password_repeat": USER_PASSWORD}, "is not an e-mail address"),
    ]
    for fields, message in cases:
        refused = await other.submit("/signup", "signup", "/signup", fields)
        assert refused.status_code == 400
        assert message in html.unescape(refused.text)
    assert await env.store.accounts.get("new@firma.example") is None


async def test_a_session_cookie_cannot_be_forged(env: PortalUnderTest) -> None:
    browser = env.browser()
    await browser.signup("cookie@firma.example")
    token = browser.http.cookies[COOKIE]
    body, mac = token.split(".")
    browser.http.cookies.set(COOKIE, f"{body}.{mac[:-2]}AA" if not mac.endswith("AA")
                             else f"{body}.{mac[:-2]}BB")
    assert (await browser.get("/integrations")).status_code == 303


async def test_sessions_expire(env: PortalUnderTest) -> None:
    browser = env.browser()
    await browser.signup("expiry@firma.example")
    env.clock.offset = env.portal.settings.session_max_age.total_seconds() + 1
    assert (await browser.get("/integrations")).status_code == 303


@pytest.mark.parametrize("csrf", ["missing", "wrong", "another_session"])
async def test_every_post_without_the_sessions_csrf_token_is_refused(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, csrf: str
) -> None:
    owner = env.browser()
    await owner.signup(f"csrf-{csrf}@firma.example")
    user, _ = await zoho_user_with_org(env.zoho)
    uid = await owner.connect(demo_pfx, demo_oib, user)
    other = env.browser()
    await other.get("/login")
    token = {"missing": None, "wrong": "x" * 43,
             "another_session": (await other.form("/login", "login"))["csrf_token"]}[csrf]

    def fields(**values: str) -> dict[str, str]:
        return {**values, "csrf_token": token} if token is not None else values

    attempts = [
        ("/logout", fields()),
        ("/login", fields(email="x@firma.example", password=USER_PASSWORD)),
        ("/signup", fields(email="csrf-new@firma.example", password=USER_PASSWORD,
                           password_repeat=USER_PASSWORD)),
        (f"/integrations/{uid}/remove", fields()),
        (f"/integrations/{uid}/connect", fields()),
        (f"/integrations/{uid}/organization", fields(organization_id="1")),
    ]
    for path, data in attempts:
        refused = await owner.http.post(path, data=data)
        assert refused.status_code == 403, (path, refused.text)
        assert "Form expired" in refused.text
    created = await owner.http.post(
        "/integrations", data=fields(oib=demo_oib, password=demo_pfx.password),
        files={"pfx": ("c.pfx", demo_pfx.data)},
    )
    assert created.status_code == 403
    # Nothing happened: still signed in, one integration, still active, no new account.
    assert (await owner.get("/integrations")).status_code == 200
    records = await env.store.integrations.find()
    assert [r.uid for r in records] == [uid] and records[0].status is IntegrationStatus.ACTIVE
    assert await env.store.tokens.get(uid) is not None
    assert await env.store.accounts.get("csrf-new@firma.example") is None


async def test_another_accounts_integration_is_invisible_and_untouchable(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    owner = env.browser()
    await owner.signup("owner-a@firma.example")
    user, _ = await zoho_user_with_org(env.zoho)
    uid = await owner.connect(demo_pfx, demo_oib, user)
    secret = await env.store.integrations.webhook_secret(uid)

    other = env.browser()
    await other.signup("owner-b@firma.example")
    listing = await other.get("/integrations")
    assert uid not in listing.text
    for path in (f"/integrations/{uid}", f"/integrations/{uid}/remove",
                 f"/integrations/{uid}/organization"):
        page = await other.get(path)
        assert page.status_code == 404, path
        assert secret not in page.text
    for path in (f"/integrations/{uid}/remove", f"/integrations/{uid}/connect",
                 f"/integrations/{uid}/organization"):
        refused = await other.submit("/integrations", "logout", path,
                                     {"organization_id": "1", "action": "cancel"})
        assert refused.status_code == 404, path
    # A uid that does not exist looks the same as one that belongs to someone else.
    assert (await other.get("/integrations/nosuchintegration")).status_code == 404

    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.ACTIVE
    assert await env.store.tokens.get(uid) is not None


async def test_oversized_forms_are_refused_before_parsing(env: PortalUnderTest) -> None:
    browser = env.browser()
    await browser.signup("big@firma.example")
    fields = await browser.form("/integrations/new/zoho-books", "certificate")
    too_big = b"0" * (env.portal.settings.max_upload_bytes + 1)
    response = await browser.http.post("/integrations", data=fields,
                                       files={"pfx": ("c.pfx", too_big)})
    assert response.status_code == 413
    assert await env.store.integrations.find() == []


async def test_ops_endpoints_are_served_by_the_portal(env: PortalUnderTest) -> None:
    browser = env.browser()
    assert (await browser.get("/healthz")).json() == {"status": "ok"}
    ready = await browser.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"store": True}
    metrics = await browser.get("/metrics")
    assert metrics.status_code == 200 and "python_info" in metrics.text
    css = await browser.get("/static/portal.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    # Probes and assets get no session cookie; a page with a form does.
    assert not browser.http.cookies
    assert (await browser.get("/login")).headers["set-cookie"].startswith("fb_session=")


async def test_password_reset_says_when_no_mail_can_be_sent(
    env: PortalUnderTest, make_portal: MakePortal,
) -> None:
    browser = env.browser()
    page = await browser.get("/password/forgot")
    assert "no mail server configured" in page.text
    refused = await browser.submit("/password/forgot", "forgot", "/password/forgot",
                                   {"email": "x@firma.example"})
    assert refused.status_code == 503 and "FISCOBRIDGE_PORTAL_SMTP_URL" in refused.text

    down = await make_portal(smtp_url="smtp://127.0.0.1:9")  # nothing listens there
    owner = down.browser()
    await owner.signup("down@firma.example")
    failed = await owner.submit("/password/forgot", "forgot", "/password/forgot",
                                {"email": "down@firma.example"})
    assert failed.status_code == 502 and "no reset link was sent" in failed.text
    # An unknown address is not looked up at the mail server: the same answer as ever.
    unknown = await owner.submit("/password/forgot", "forgot", "/password/forgot",
                                 {"email": "nobody@firma.example"})
    assert unknown.status_code == 303


async def test_a_portal_served_over_https_marks_its_cookies_secure(
    make_portal: MakePortal,
) -> None:
    https = await make_portal(public_base_url="https://portal.fiscobridge.test")
    page = await https.browser().get("/login")
    assert page.status_code == 200
    assert page.headers["set-cookie"].endswith("; Secure")


def _link(body: str) -> str:
    found = re.search(r"https?://\S+/account/email/confirm/\S+", body)
    assert found, body
    return found.group(0)


async def test_email_change_waits_for_the_link_mailed_to_the_new_address(
    make_portal: MakePortal,
) -> None:
    """The finding: a new e-mail address was applied at once. Now the link mailed to it
    applies it, once, before it expires; the old address is told and signs in until then."""
    catcher = MailCatcher()
    port = await catcher.start_smtp()
    try:
        env = await make_portal(smtp_url=f"smtp://127.0.0.1:{port}", reset_mails_per_hour=4)
        owner = env.browser()
        await owner.signup("old@firma.example")
        await env.browser().signup("taken@firma.example")

        async def change(email: str, password: str = USER_PASSWORD) -> Any:
            return await owner.submit("/account", "account-email", "/account/email",
                                      {"email": email, "current_password": password})

        for email, password, status, message in [
            ("new@firma.example", "not the password", 400, "current password is wrong"),
            ("taken@firma.example", USER_PASSWORD, 400, "already uses taken@firma.example"),
            ("OLD@firma.example", USER_PASSWORD, 400, "is your address already"),
        ]:
            refused = await change(email, password)
            assert refused.status_code == status and message in html.unescape(refused.text)
        assert catcher.mails == deque()

        first = await change("First@Firma.example")
        assert first.status_code == 303
        asked = await change("new@firma.example")  # a newer request replaces the first
        assert asked.status_code == 303
        page = (await owner.get("/account")).text
        assert "A confirmation link was sent to new@firma.example" in page
        assert 'id="email-pending"' in page and "new@firma.example" in page
        # Nothing changed yet: the old address signs in, the new one does not.
        assert await env.store.accounts.authenticate("old@firma.example", USER_PASSWORD)
        assert await env.store.accounts.get("new@firma.example") is None

        to_new = [m for m in catcher.mails if m.to == ["new@firma.example"]]
        to_old = [m for m in catcher.mails if m.to == ["old@firma.example"]]
        assert len(to_new) == 1 and len(to_old) == 2
        assert "new@firma.example" in to_old[-1].body and "/confirm/" not in to_old[-1].body
        [replaced] = [m for m in catcher.mails if m.to == ["first@firma.example"]]
        link = _link(to_new[0].body)
        token = link.rsplit("/", 1)[1]
        async with env.store.engine.connect() as connection:
            stored = (await connection.execute(
                text("SELECT token_hash, new_email FROM email_changes"))).all()
        assert stored == [(hashlib.sha256(token.encode()).hexdigest(), "new@firma.example")]

        path = link.removeprefix(env.url)
        assert (await owner.get(_link(replaced.body).removeprefix(env.url))).status_code == 400
        shown = await owner.get(path)  # opening it (or a mail scanner) changes nothing
        assert shown.status_code == 200 and "new@firma.example" in shown.text
        assert await env.store.accounts.get("new@firma.example") is None
        # Confirmed from another browser (the mail opened elsewhere) with its own form.
        elsewhere = env.browser()
        done = await elsewhere.submit(path, "email-confirm", path)
        assert done.status_code == 303 and done.headers["location"] == "/login"
        assert await env.store.accounts.get("old@firma.example") is None
        assert await env.store.accounts.authenticate("new@firma.example", USER_PASSWORD)
        assert "new@firma.example" in (await owner.get("/account")).text  # same session
        changed = [m for m in catcher.mails if m.to == ["old@firma.example"]][-1]
        assert "changed from old@firma.example to new@firma.example" in changed.body
        again = await elsewhere.http.post(path, data={
            "csrf_token": (await elsewhere.form("/login", "login"))["csrf_token"]})
        assert again.status_code == 400 and "does not work" in again.text

        # Expiry, and a password change cancels a waiting change.
        assert (await change("later@firma.example")).status_code == 303
        later = _link(next(m for m in catcher.mails if m.to == ["later@firma.example"]).body)
        env.clock.offset += env.portal.settings.email_change_ttl.total_seconds() + 1
        try:
            assert (await env.browser().get(later.removeprefix(env.url))).status_code == 400
        finally:
            env.clock.offset = 0
        assert (await change("cancel@firma.example")).status_code == 303
        cancel = _link(next(m for m in catcher.mails if m.to == ["cancel@firma.example"]).body)
        # Confirmation mails are limited per user and hour, as reset mails are.
        limited = await change("fifth@firma.example")
        assert limited.status_code == 429
        assert "4 confirmation links were sent in the last hour" in limited.text
        assert not [m for m in catcher.mails if m.to == ["fifth@firma.example"]]
        user = await env.store.accounts.get("new@firma.example")
        assert user is not None
        await env.store.accounts.change_password(user.user_id, "another long passphrase 9",
                                                 now=datetime.now(UTC))
        assert (await env.browser().get(cancel.removeprefix(env.url))).status_code == 400
    finally:
        await catcher.close()


async def test_email_change_needs_a_mail_server(env: PortalUnderTest) -> None:
    owner = env.browser()
    await owner.signup("nomail@firma.example")
    refused = await owner.submit("/account", "account-email", "/account/email",
                                 {"email": "other@firma.example",
                                  "current_password": USER_PASSWORD})
    assert refused.status_code == 503 and "FISCOBRIDGE_PORTAL_SMTP_URL" in refused.text
    assert await env.store.accounts.get("nomail@firma.example") is not None
