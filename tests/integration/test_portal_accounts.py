"""Accounts, sessions, CSRF and isolation between accounts, over real HTTP."""

from __future__ import annotations

import html

import pytest

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
    env.clock.offset = env.portal.settings.session_max_age_seconds + 1
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
