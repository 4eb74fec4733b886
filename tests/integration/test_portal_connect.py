"""Create Integration -> Zoho consent -> organization choice -> Active, on the real Zoho
sandbox (both data centres), the real broker and the store."""

from __future__ import annotations

import html

import pytest
from aiokafka import AIOKafkaProducer

from connectors.zoho.errors import TokenInvalid
from fiscal.hr_cis.oib import oib_check_digit
from runtime.store import IntegrationStatus
from schemas.events import IntegrationEventKind
from tests.fixtures.certs import OPERATOR_OIB, Pfx
from tests.fixtures.zoho import forms_of
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    SQLITE_ONLY,
    WEBHOOK_BASE,
    PortalUnderTest,
    env_fixture,
    integration_events,
    make_portal_fixture,
    producer_fixture,
    radio_values,
    state_of,
    zoho_user_with_org,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]


@pytest.mark.parametrize("dc", ["com", "eu"])
async def test_connect_ends_active_with_the_grant_of_the_users_data_centre(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, dc: str, kafka_settings: object
) -> None:
    user, (org,) = await zoho_user_with_org(env.zoho, dc)
    browser = env.browser()
    await browser.signup("owner@firma.example")

    uid, state = await browser.start_connect(demo_pfx, demo_oib)
    assert (await env.store.integrations.get(uid)).status is IntegrationStatus.PENDING  # type: ignore[union-attr]
    # The consent always starts at the com accounts server; Zoho names the user's own.
    redirect = await env.zoho.authorize(env.client, user, state=state)
    assert redirect["accounts-server"] == env.zoho.urls[dc]["accounts"]
    chooser = await browser.callback(redirect)
    assert chooser.status_code == 303, chooser.text
    # Even a single organization is confirmed by the user, never taken silently.
    page = await browser.get(chooser.headers["location"])
    assert radio_values(page.text) == [org["organization_id"]]
    assert org["name"] in page.text
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.PENDING
    assert await env.store.tokens.get(uid) is None

    done = await browser.submit(chooser.headers["location"], "organization",
                                chooser.headers["location"],
                                {"organization_id": org["organization_id"]})
    assert done.status_code == 303 and done.headers["location"] == f"/integrations/{uid}"

    record = await env.store.integrations.get(uid)
    assert record is not None
    assert record.status is IntegrationStatus.ACTIVE
    assert record.zoho_organization_id == org["organization_id"]
    assert record.zoho_accounts_server == env.zoho.urls[dc]["accounts"]
    assert record.zoho_api_domain == env.zoho.urls[dc]["api"]
    tokens = await env.store.tokens.get(uid)
    assert tokens is not None and tokens.access_token
    # The stored grant is alive at that data centre and reaches the chosen organization.
    fresh = await env.zoho.oauth(env.client).refresh(
        tokens.refresh_token, record.zoho_accounts_server, api_domain=record.zoho_api_domain
    )
    assert fresh.api_domain == env.zoho.urls[dc]["api"]

    page = await browser.get(f"/integrations/{uid}")
    assert 'id="status">Active<' in page.text
    secret = await env.store.integrations.webhook_secret(uid)
    assert f"{WEBHOOK_BASE}/webhook/zoho/{uid}" in page.text
    assert secret in page.text and "Workflow Rules" in page.text
    listing = await browser.get("/integrations")
    assert uid in listing.text and "Active" in listing.text and "0 / 50" in listing.text

    kinds = [e.kind for e in await integration_events(kafka_settings, uid)]  # type: ignore[arg-type]
    assert kinds == [IntegrationEventKind.CREATED, IntegrationEventKind.CONNECTED]


async def test_two_organizations_the_user_must_choose_and_the_choice_is_stored(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    user, (first, second) = await zoho_user_with_org(env.zoho, "eu", organizations=2)
    browser = env.browser()
    await browser.signup("two-orgs@firma.example")
    uid, state = await browser.start_connect(demo_pfx, demo_oib)
    chooser = await browser.callback(await env.zoho.authorize(env.client, user, state=state))
    path = chooser.headers["location"]
    page = await browser.get(path)
    assert radio_values(page.text) == [first["organization_id"], second["organization_id"]]
    assert "checked" not in page.text.split('id="organization"')[1]

    unchosen = await browser.submit(path, "organization", path, {"action": "connect"})
    assert unchosen.status_code == 400
    assert "Choose the Zoho Books organization" in unchosen.text
    foreign = await browser.submit(path, "organization", path,
                                   {"organization_id": "20999999999"})
    assert foreign.status_code == 400
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.PENDING
    assert record.zoho_organization_id is None

    done = await browser.submit(path, "organization", path,
                                {"organization_id": second["organization_id"]})
    assert done.status_code == 303
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.ACTIVE
    assert record.zoho_organization_id == second["organization_id"]
    # The choice is consumed: the page cannot be submitted a second time.
    again = await browser.get(path)
    assert again.status_code == 400 and "No Zoho sign-in waiting" in again.text


def _other_oib(oib: str) -> str:
    first_ten = str((int(oib[:10]) + 1) % 10**10).zfill(10)
    return first_ten + str(oib_check_digit(first_ten))


@pytest.mark.parametrize(
    ("case", "field_text"),
    [
        ("wrong_password", "the password does not open this certificate file"),
        ("expired", "the certificate expired on"),
        ("oib_mismatch", "but this integration is for"),
        ("not_pkcs12", "not a PKCS#12 certificate"),
        ("bad_premises", "the premises code"),
    ],
)
async def test_a_refused_upload_says_why_and_creates_nothing(
    env: PortalUnderTest, demo_pfx: Pfx, expired_pfx: Pfx, demo_oib: str, case: str,
    field_text: str,
) -> None:
    browser = env.browser()
    await browser.signup("refused@firma.example")
    counters = await env.zoho.counters()
    if case == "wrong_password":
        response = await browser.create(demo_pfx, demo_oib, password="not-the-password")
    elif case == "expired":
        response = await browser.create(expired_pfx, demo_oib)
    elif case == "oib_mismatch":
        response = await browser.create(demo_pfx, _other_oib(demo_oib))
    elif case == "not_pkcs12":
        response = await browser.create(Pfx(b"-----BEGIN CERTIFICATE-----\n", "x"), demo_oib)
    else:
        response = await browser.create(demo_pfx, demo_oib, premises_code="POSL 1!")
    assert response.status_code == 400, response.text
    assert "Nothing was created" in response.text
    assert field_text.lower() in response.text.lower()  # shown as a sentence
    assert demo_pfx.password not in response.text  # the password is never echoed back
    assert await env.store.integrations.find() == []
    # Nobody was sent to Zoho either.
    assert (await env.zoho.counters()).get("oauth:com") == counters.get("oauth:com")
    if case in ("oib_mismatch", "bad_premises"):
        # The settings step again, keeping what was typed: only the wrong part needs fixing.
        assert 'id="create"' in response.text
        assert 'value="POSL' in response.text and OPERATOR_OIB in response.text
    else:
        # A certificate that does not open or is refused: back to the certificate step.
        assert 'id="certificate"' in response.text and 'id="create"' not in response.text


async def test_forged_or_foreign_state_is_refused_and_changes_nothing(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    user, _ = await zoho_user_with_org(env.zoho)
    owner = env.browser()
    await owner.signup("forged@firma.example")
    uid, state = await owner.start_connect(demo_pfx, demo_oib)
    redirect = await env.zoho.authorize(env.client, user, state=state)

    body, mac = state.split(".")
    forged_states = [
        f"{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{mac}",  # payload altered
        f"{body}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",  # signature altered
        "",  # none at all
        "ünïcode.state",
    ]
    for forged in forged_states:
        refused = await owner.callback({**redirect, "state": forged})
        assert refused.status_code == 400
        assert "Zoho sign-in not recognised" in refused.text
    # A second browser (another session, signed in to another account) replaying the
    # owner's answer from Zoho is refused too.
    intruder = env.browser()
    await intruder.signup("intruder@firma.example")
    refused = await intruder.callback(redirect)
    assert refused.status_code == 400 and "Zoho sign-in not recognised" in refused.text

    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.PENDING
    assert await env.store.tokens.get(uid) is None
    # The code was never exchanged: the owner's own callback still works.
    chooser = await owner.callback(redirect)
    assert chooser.status_code == 303, chooser.text


async def test_a_replayed_state_is_refused(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("replay@firma.example")
    uid, state = await browser.start_connect(demo_pfx, demo_oib)
    redirect = await env.zoho.authorize(env.client, user, state=state)
    assert (await browser.callback(redirect)).status_code == 303
    replay = await browser.callback(redirect)
    assert replay.status_code == 400
    assert "already used" in replay.text
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.PENDING
    assert await env.store.tokens.get(uid) is None


async def test_an_old_state_is_refused(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("slow@firma.example")
    uid, state = await browser.start_connect(demo_pfx, demo_oib)
    redirect = await env.zoho.authorize(env.client, user, state=state)
    env.clock.offset = env.portal.settings.oauth_state_ttl.total_seconds() + 1
    late = await browser.callback(redirect)
    assert late.status_code == 400 and "took too long" in late.text
    assert await env.store.tokens.get(uid) is None


async def _deny(env: PortalUnderTest, authorize_url: str, user: dict[str, str]) -> dict[str, str]:
    """Walk Zoho's real login and consent pages from the portal's redirect, and Reject."""
    from urllib.parse import parse_qsl, urlsplit

    http = env.zoho.http
    page = await http.get(authorize_url)
    login = forms_of(page.text)["login"]
    login.update(email=user["email"], password=user["password"], step="login")
    consent_page = await http.post(f"{env.accounts}/oauth/v2/auth", data=login)
    consent = forms_of(consent_page.text)["consent"]
    consent.update(step="reject")
    answer = await http.post(f"{env.accounts}/oauth/v2/auth", data=consent)
    assert answer.status_code == 302
    return dict(parse_qsl(urlsplit(answer.headers["location"]).query))


async def test_consent_denied_leaves_the_integration_pending_with_a_clear_message(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    user, (org,) = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("denied@firma.example")
    created = await browser.create(demo_pfx, demo_oib)
    uid = (await env.store.integrations.find())[-1].uid
    redirect = await _deny(env, created.headers["location"], user)
    assert redirect["error"] == "access_denied"

    page = await browser.callback(redirect)
    assert page.status_code == 400
    assert "You declined FiscoBridge's access in Zoho" in html.unescape(page.text)
    assert f"integration {uid} stays pending" in page.text
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.PENDING
    assert await env.store.tokens.get(uid) is None

    # The integration page offers to connect again, and that works.
    detail = await browser.get(f"/integrations/{uid}")
    assert "Pending" in detail.text and 'id="connect"' in detail.text
    again = await browser.submit(f"/integrations/{uid}", "connect", f"/integrations/{uid}/connect")
    assert again.status_code == 303
    redirect = await env.zoho.authorize(env.client, user, state=state_of(again))
    chooser = await browser.callback(redirect)
    done = await browser.submit(chooser.headers["location"], "organization",
                                chooser.headers["location"],
                                {"organization_id": org["organization_id"]})
    assert done.status_code == 303
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.ACTIVE


async def test_a_used_code_is_refused_as_expired_sign_in(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("used-code@firma.example")
    uid, state = await browser.start_connect(demo_pfx, demo_oib)
    redirect = await env.zoho.authorize(env.client, user, state=state)
    await env.zoho.oauth(env.client).exchange_code(redirect["code"], redirect["accounts-server"])
    page = await browser.callback(redirect)
    assert page.status_code == 400
    assert "its code was used already or is older than about a minute" in page.text
    assert await env.store.tokens.get(uid) is None
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.PENDING


@pytest.mark.parametrize("where", ["other_data_centre", "unknown_server"])
async def test_a_code_sent_to_the_wrong_accounts_server_is_refused(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, where: str
) -> None:
    user, _ = await zoho_user_with_org(env.zoho, "eu")
    browser = env.browser()
    await browser.signup(f"{where}@firma.example")
    uid, state = await browser.start_connect(demo_pfx, demo_oib)
    redirect = await env.zoho.authorize(env.client, user, state=state)
    counters = await env.zoho.counters()
    server = (env.zoho.urls["com"]["accounts"] if where == "other_data_centre"
              else "https://accounts.zoho.evil.example")
    page = await browser.callback({**redirect, "accounts-server": server})
    assert page.status_code == 502
    if where == "other_data_centre":
        assert "refused FiscoBridge's client" in html.unescape(page.text)
        after = (await env.zoho.counters())["oauth:com"]
        assert after.get("invalid_client", 0) == counters["oauth:com"].get("invalid_client", 0) + 1
    else:
        assert "not a Zoho accounts server FiscoBridge works with" in page.text
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.PENDING
    assert await env.store.tokens.get(uid) is None


async def test_a_login_without_any_books_organization_is_refused_and_its_grant_revoked(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    user = await env.zoho.user("com")
    browser = env.browser()
    await browser.signup("no-org@firma.example")
    uid, state = await browser.start_connect(demo_pfx, demo_oib)
    before = (await env.zoho.counters()).get("oauth:com", {}).get("revoked", 0)
    page = await browser.callback(await env.zoho.authorize(env.client, user, state=state))
    assert page.status_code == 400 and "no Zoho Books organization" in page.text
    assert (await env.zoho.counters())["oauth:com"]["revoked"] == before + 1
    assert await env.store.tokens.get(uid) is None


async def test_cancelling_the_choice_revokes_the_grant(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("cancel@firma.example")
    uid, state = await browser.start_connect(demo_pfx, demo_oib)
    chooser = await browser.callback(await env.zoho.authorize(env.client, user, state=state))
    before = (await env.zoho.counters())["oauth:com"].get("revoked", 0)
    path = chooser.headers["location"]
    cancelled = await browser.submit(path, "organization", path, {"action": "cancel"})
    assert cancelled.status_code == 303
    assert (await env.zoho.counters())["oauth:com"]["revoked"] == before + 1
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.PENDING
    assert await env.store.tokens.get(uid) is None


async def test_the_stored_grant_is_the_only_live_one_after_connecting_twice(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    """Abandoning the choice page and connecting again does not pile up refresh tokens
    (Zoho keeps 20 per user; the 21st silently deletes the oldest)."""
    user, (org,) = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("twice@firma.example")
    uid, state = await browser.start_connect(demo_pfx, demo_oib)
    await browser.callback(await env.zoho.authorize(env.client, user, state=state))
    again = await browser.submit(f"/integrations/{uid}", "connect", f"/integrations/{uid}/connect")
    state = state_of(again)
    chooser = await browser.callback(await env.zoho.authorize(env.client, user, state=state))
    path = chooser.headers["location"]
    await browser.submit(path, "organization", path, {"organization_id": org["organization_id"]})
    books = env.zoho.sandbox.books
    live = [t for t in books.refresh_tokens.values()
            if t.grant.client_id == env.client["client_id"]]
    tokens = await env.store.tokens.get(uid)
    assert tokens is not None and [t.token for t in live] == [tokens.refresh_token]


async def test_reconnect_after_zoho_revoked_the_grant_turns_it_active_again(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, kafka_settings: object,
    producer: AIOKafkaProducer,
) -> None:
    from runtime.store.rebuild import publish_and_apply
    from schemas.events import IntegrationEvent

    user, (org,) = await zoho_user_with_org(env.zoho, "eu")
    browser = env.browser()
    await browser.signup("reconnect@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    old = await env.store.tokens.get(uid)
    assert old is not None
    accounts_server = env.zoho.urls["eu"]["accounts"]
    oauth = env.zoho.oauth(env.client)

    assert await env.zoho.revoke_user(user["email"]) == 1
    with pytest.raises(TokenInvalid):
        await oauth.refresh(old.refresh_token, accounts_server)
    # What the poller publishes when Zoho refuses the refresh token.
    await publish_and_apply(producer, env.store, IntegrationEvent(
        integration_uid=uid, kind=IntegrationEventKind.TOKEN_INVALID,
        reason="Zoho refused the refresh token (invalid_code)"))
    page = await browser.get(f"/integrations/{uid}")
    assert 'id="status">Inactive<' in page.text and 'id="reconnect"' in page.text
    assert f"{uid}" in page.text and "Workflow Rules" in page.text  # webhook stays set up

    started = await browser.submit(f"/integrations/{uid}", "reconnect",
                                   f"/integrations/{uid}/connect")
    assert started.status_code == 303
    state = state_of(started)
    back = await browser.callback(await env.zoho.authorize(env.client, user, state=state))
    # The organization is known: no choice, straight back to the integration.
    assert back.status_code == 303 and back.headers["location"] == f"/integrations/{uid}"
    page = await browser.get(f"/integrations/{uid}")
    assert 'id="status">Active<' in page.text and "Reconnected" in page.text

    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.ACTIVE
    assert record.zoho_organization_id == org["organization_id"]
    new = await env.store.tokens.get(uid)
    assert new is not None and new.refresh_token != old.refresh_token
    await oauth.refresh(new.refresh_token, accounts_server)
    kinds = [e.kind for e in await integration_events(kafka_settings, uid)]  # type: ignore[arg-type]
    assert kinds[-2:] == [IntegrationEventKind.TOKEN_INVALID, IntegrationEventKind.RECONNECTED]


async def test_reconnect_with_a_user_of_another_organization_changes_nothing(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, producer: AIOKafkaProducer
) -> None:
    from runtime.store.rebuild import publish_and_apply
    from schemas.events import IntegrationEvent

    user, _ = await zoho_user_with_org(env.zoho)
    stranger, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("wrong-org@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    await publish_and_apply(producer, env.store, IntegrationEvent(
        integration_uid=uid, kind=IntegrationEventKind.TOKEN_INVALID))
    old = await env.store.tokens.get(uid)
    started = await browser.submit(f"/integrations/{uid}", "reconnect",
                                   f"/integrations/{uid}/connect")
    state = state_of(started)
    before = (await env.zoho.counters())["oauth:com"].get("revoked", 0)
    page = await browser.callback(await env.zoho.authorize(env.client, stranger, state=state))
    assert page.status_code == 400 and "does not reach organization" in page.text
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.INACTIVE
    assert await env.store.tokens.get(uid) == old
    # The stranger's grant is not kept, so it is revoked at once.
    assert (await env.zoho.counters())["oauth:com"]["revoked"] == before + 1


async def test_an_organization_held_by_an_active_integration_cannot_be_connected_again(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str, producer: AIOKafkaProducer
) -> None:
    """The double fiscalization: a second integration, of the same account or another,
    choosing the organization an active integration holds is refused with who holds it;
    once the holder is removed the organization is free."""
    from runtime.store.rebuild import publish_and_apply
    from schemas.events import IntegrationEvent

    user, (org,) = await zoho_user_with_org(env.zoho)
    org_id = org["organization_id"]
    owner = env.browser()
    await owner.signup("holder@firma.example")
    holder = await owner.connect(demo_pfx, demo_oib, user)
    # A second connection in one account needs a plan above the trial's one connection.
    await publish_and_apply(producer, env.store, IntegrationEvent(
        integration_uid=holder, kind=IntegrationEventKind.TIER_CHANGED, tier="growth"))

    for browser, email, says in (
        (owner, None, f"your integration {holder} (active)"),
        (env.browser(), "rival@firma.example", "another FiscoBridge account"),
    ):
        if email:
            await browser.signup(email)
        uid, state = await browser.start_connect(demo_pfx, demo_oib)
        chooser = await browser.callback(await env.zoho.authorize(env.client, user, state=state))
        path = chooser.headers["location"]
        page = await browser.get(path)
        assert f"already fiscalized by {says.split(' (')[0]}" in html.unescape(page.text)
        refused = await browser.submit(path, "organization", path, {"organization_id": org_id})
        assert refused.status_code == 409
        assert says in html.unescape(refused.text) and "Nothing was changed" in refused.text
        record = await env.store.integrations.get(uid)
        assert record is not None and record.status is IntegrationStatus.PENDING
        assert record.zoho_organization_id is None and await env.store.tokens.get(uid) is None
        assert await env.store.integrations.holder_of(org_id) == holder

    # The store holds the line even without the page: a race cannot connect it twice.
    from runtime.store import OrganizationTaken
    with pytest.raises(OrganizationTaken):
        await env.store.integrations.set_zoho_connection(
            uid, organization_id=org_id, accounts_server="x", api_domain="y")

    await publish_and_apply(producer, env.store, IntegrationEvent(
        integration_uid=holder, kind=IntegrationEventKind.REMOVED))
    assert await env.store.integrations.holder_of(org_id) is None
    done = await browser.submit(path, "organization", path, {"organization_id": org_id})
    assert done.status_code == 303, done.text
    record = await env.store.integrations.get(uid)
    assert record is not None and record.status is IntegrationStatus.ACTIVE
    assert await env.store.integrations.holder_of(org_id) == uid


async def test_an_earlier_start_needs_a_date_and_the_confirmation(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup("backfill@firma.example")
    uid = await browser.connect(demo_pfx, demo_oib, user)
    record = await env.store.integrations.get(uid)
    assert record is not None and record.starts_at is not None and not record.starts_at_chosen
    page = f"/integrations/{uid}"
    assert "when it became active" in (await browser.get(page)).text

    action = f"/integrations/{uid}/start"
    unconfirmed = await browser.submit(page, "start", action, {"starts_on": "2026-01-01"})
    assert unconfirmed.status_code == 400 and "not fiscalized by another" in unconfirmed.text
    garbled = await browser.submit(page, "start", action,
                                   {"starts_on": "1.1.2026", "confirm": "on"})
    assert garbled.status_code == 400 and "YYYY-MM-DD" in garbled.text
    later = await browser.submit(page, "start", action,
                                 {"starts_on": "2999-01-01", "confirm": "on"})
    assert later.status_code == 400 and "future" in later.text
    assert await env.store.integrations.get(uid) == record  # nothing changed

    done = await browser.submit(page, "start", action,
                                {"starts_on": "2026-01-01", "confirm": "on"})
    assert done.status_code == 303
    moved = await env.store.integrations.get(uid)
    assert moved is not None and moved.starts_at_chosen
    assert moved.starts_at is not None
    assert moved.starts_at.isoformat() == "2025-12-31T23:00:00+00:00"
    assert "chosen by you" in (await browser.get(page)).text
