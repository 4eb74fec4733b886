"""OAuth against the Zoho sandbox over real HTTP: both data centres, refresh, revocation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.errors import (
    ClientInvalid,
    OAuthError,
    RefreshLimitReached,
    TokenInvalid,
    ZohoApiError,
)
from connectors.zoho.oauth import AccessTokenProvider, TokenSet
from connectors.zoho.ratelimit import RateLimiter
from connectors.zoho.sync import changed_invoices
from sandbox.zoho.state import Settings
from tests.fixtures.zoho import ZohoSandboxHandle


def delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], area: str
) -> dict[str, int]:
    keys = set(before.get(area, {})) | set(after.get(area, {}))
    return {
        k: after.get(area, {}).get(k, 0) - before.get(area, {}).get(k, 0)
        for k in keys
        if after.get(area, {}).get(k, 0) != before.get(area, {}).get(k, 0)
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def setup(
    zoho: ZohoSandboxHandle, dc: str = "com"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    client = await zoho.oauth_client()
    user = await zoho.user(dc)
    org = await zoho.organization([user["email"]])
    return client, user, org


@pytest.mark.parametrize("dc", ["com", "eu"])
async def test_full_dance_lands_in_the_users_data_centre(
    zoho_sandbox: ZohoSandboxHandle, dc: str
) -> None:
    zoho = zoho_sandbox
    client, user, org = await setup(zoho, dc)
    before = await zoho.counters()

    # Every dance starts at accounts.zoho.com; Zoho sends the user home.
    redirect = await zoho.authorize(client, user, start_dc="com", state=f"csrf-{dc}")
    assert redirect["state"] == f"csrf-{dc}"
    assert redirect["location"] == zoho.urls[dc]["location"]
    assert redirect["accounts-server"] == zoho.urls[dc]["accounts"]

    oauth = zoho.oauth(client)
    tokens = await oauth.exchange_code(redirect["code"], redirect["accounts-server"])
    assert tokens.api_domain == zoho.urls[dc]["api"]
    assert tokens.refresh_token
    assert tokens.expires_at > datetime.now(UTC) + timedelta(minutes=59)

    provider = AccessTokenProvider(oauth, tokens, redirect["accounts-server"])
    books = ZohoBooksClient(
        zoho.http, tokens.api_domain, org["organization_id"], provider, RateLimiter()
    )
    organizations = await books.organizations()
    assert [o["organization_id"] for o in organizations] == [org["organization_id"]]
    assert organizations[0]["time_zone"] == "Europe/Zagreb"

    after = await zoho.counters()
    assert delta(before, after, f"oauth:{dc}")["code_exchanged"] == 1
    other = "eu" if dc == "com" else "com"
    assert "code_exchanged" not in delta(before, after, f"oauth:{other}")


async def test_code_exchanged_at_another_data_centre_is_an_invalid_client(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    client, user, _ = await setup(zoho_sandbox, "eu")
    redirect = await zoho_sandbox.authorize(client, user)
    with pytest.raises(ClientInvalid):
        await zoho_sandbox.oauth(client).exchange_code(
            redirect["code"], zoho_sandbox.urls["com"]["accounts"]
        )


async def test_api_domain_of_the_other_data_centre_refuses_the_token(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    connection = await zoho_sandbox.connect("eu")
    wrong = ZohoBooksClient(
        zoho_sandbox.http,
        zoho_sandbox.urls["com"]["api"],
        connection.organization_id,
        connection.provider,
        RateLimiter(),
    )
    with pytest.raises(ZohoApiError) as caught:
        await wrong.list_invoices()
    assert (caught.value.http_status, caught.value.code) == (401, 14)  # an unknown token


async def test_code_is_single_use(zoho_sandbox: ZohoSandboxHandle) -> None:
    client, user, _ = await setup(zoho_sandbox)
    redirect = await zoho_sandbox.authorize(client, user)
    oauth = zoho_sandbox.oauth(client)
    await oauth.exchange_code(redirect["code"], redirect["accounts-server"])
    with pytest.raises(TokenInvalid):
        await oauth.exchange_code(redirect["code"], redirect["accounts-server"])


async def test_code_expires_after_a_minute(zoho_sandbox_factory: Any) -> None:
    zoho: ZohoSandboxHandle = zoho_sandbox_factory()
    client, user, _ = await setup(zoho)
    redirect = await zoho.authorize(client, user)
    await zoho.advance_clock(61)
    with pytest.raises(TokenInvalid):
        await zoho.oauth(client).exchange_code(redirect["code"], redirect["accounts-server"])


async def test_wrong_client_secret_is_an_invalid_client(zoho_sandbox: ZohoSandboxHandle) -> None:
    client, user, _ = await setup(zoho_sandbox)
    redirect = await zoho_sandbox.authorize(client, user)
    forged = {**client, "client_secret": "not-the-secret"}
    with pytest.raises(ClientInvalid):
        await zoho_sandbox.oauth(forged).exchange_code(
            redirect["code"], redirect["accounts-server"]
        )


async def test_code_is_never_sent_to_an_unknown_accounts_server(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    client, user, _ = await setup(zoho_sandbox)
    redirect = await zoho_sandbox.authorize(client, user)
    # Reachable, real, and not an accounts server we know: refused before any request.
    with pytest.raises(ClientInvalid, match="not a known Zoho accounts server"):
        await zoho_sandbox.oauth(client).exchange_code(
            redirect["code"], zoho_sandbox.urls["com"]["api"]
        )
    # The code was not spent on the way.
    tokens = await zoho_sandbox.oauth(client).exchange_code(
        redirect["code"], redirect["accounts-server"]
    )
    assert tokens.access_token


async def test_rejected_consent_redirects_with_access_denied(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    from tests.fixtures.zoho import forms_of

    client, user, _ = await setup(zoho_sandbox)
    accounts = zoho_sandbox.urls["com"]["accounts"]
    from connectors.zoho.oauth import authorization_url

    page = await zoho_sandbox.http.get(
        authorization_url(
            client["client_id"],
            client["redirect_uris"][0],
            ["ZohoBooks.invoices.READ"],
            "s1",
            accounts,
        )
    )
    login = {
        **forms_of(page.text)["login"],
        "email": user["email"],
        "password": user["password"],
        "step": "login",
    }
    consent = await zoho_sandbox.http.post(f"{accounts}/oauth/v2/auth", data=login)
    form = {**forms_of(consent.text)["consent"], "step": "reject"}
    redirect = await zoho_sandbox.http.post(f"{accounts}/oauth/v2/auth", data=form)
    assert redirect.status_code == 302
    assert "error=access_denied" in redirect.headers["location"]
    assert "state=s1" in redirect.headers["location"]


async def test_authorize_page_refuses_unregistered_redirect_uri(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    from connectors.zoho.oauth import authorization_url

    client = await zoho_sandbox.oauth_client()
    page = await zoho_sandbox.http.get(
        authorization_url(
            client["client_id"],
            "https://evil.example/cb",
            ["ZohoBooks.invoices.READ"],
            "s",
            zoho_sandbox.urls["com"]["accounts"],
        )
    )
    assert page.status_code == 400
    assert "Redirect Uri" in page.text


async def test_wrong_password_shows_the_login_again(zoho_sandbox: ZohoSandboxHandle) -> None:
    client, user, _ = await setup(zoho_sandbox)
    with pytest.raises(KeyError):  # no consent form: still on the login page
        await zoho_sandbox.authorize(client, {**user, "password": "wrong"})


async def test_chosen_organization_limits_what_the_token_reaches(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    zoho = zoho_sandbox
    client = await zoho.oauth_client()
    user = await zoho.user("eu")
    first = await zoho.organization([user["email"]])
    second = await zoho.organization([user["email"]])

    everything = await zoho.authorize(client, user)
    one = await zoho.authorize(client, user, organization_id=second["organization_id"])
    oauth = zoho.oauth(client)
    listed = {}
    for name, redirect in (("all", everything), ("one", one)):
        tokens = await oauth.exchange_code(redirect["code"], redirect["accounts-server"])
        provider = AccessTokenProvider(oauth, tokens, redirect["accounts-server"])
        books = ZohoBooksClient(
            zoho.http, tokens.api_domain, first["organization_id"], provider, RateLimiter()
        )
        listed[name] = sorted(o["organization_id"] for o in await books.organizations())
        if name == "one":
            with pytest.raises(ZohoApiError) as caught:
                await books.list_invoices()
            assert caught.value.code == 6041
    assert listed["all"] == sorted([first["organization_id"], second["organization_id"]])
    assert listed["one"] == [second["organization_id"]]


async def test_access_token_is_cached_and_refreshed_once_per_lifetime(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    clock = FakeClock()
    saved: list[TokenSet] = []

    async def save(fresh: TokenSet) -> None:
        saved.append(fresh)

    connection = await zoho_sandbox.connect(
        invoices=1, clock=clock, on_refresh=save, limits={"per_minute": 1000}
    )
    books = connection.client(zoho_sandbox.http, RateLimiter(per_minute=1000))
    before = await zoho_sandbox.counters()

    # Two hours of polling every minute, on the client's virtual clock (Zoho's tokens
    # live an hour of real time, so every token used is genuinely valid).
    for _minute in range(120):
        await books.list_invoices()
        clock.now += timedelta(minutes=1)

    refreshed = delta(before, await zoho_sandbox.counters(), "oauth:com").get("refreshed", 0)
    assert refreshed == 2  # at 55 and 110 minutes: one per lifetime, never more
    assert len(saved) == 2
    assert saved[-1].access_token == connection.provider.tokens.access_token
    assert saved[-1].refresh_token == connection.tokens.refresh_token


async def test_concurrent_callers_share_one_refresh(zoho_sandbox: ZohoSandboxHandle) -> None:
    clock = FakeClock()
    connection = await zoho_sandbox.connect(clock=clock)
    books = connection.client(zoho_sandbox.http)
    await books.list_invoices()
    before = await zoho_sandbox.counters()
    clock.now += timedelta(minutes=56)

    await asyncio.gather(*(books.list_invoices() for _ in range(20)))
    assert delta(before, await zoho_sandbox.counters(), "oauth:com").get("refreshed") == 1


async def test_401_refreshes_once_and_retries(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect(invoices=1)
    books = connection.client(zoho_sandbox.http)
    items, _ = await books.list_invoices()
    first_token = connection.provider.tokens.access_token
    await zoho_sandbox.expire_access_tokens()
    before = await zoho_sandbox.counters()

    assert await books.list_invoices() == (items, False)
    after = await zoho_sandbox.counters()
    assert delta(before, after, "oauth:com") == {"refreshed": 1}
    assert delta(before, after, "api:GET /books/v3/invoices") == {"unauthorized": 1, "ok": 1}
    assert connection.provider.tokens.access_token != first_token


async def test_refresh_budget_is_never_exceeded(zoho_sandbox: ZohoSandboxHandle) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect()
    books = connection.client(zoho.http)
    before = await zoho.counters()

    # Every access token "expires" at once, ten times over: ten refreshes, then the
    # client stops itself instead of letting Zoho lock the refresh token.
    for _ in range(10):
        await zoho.expire_access_tokens()
        await books.list_invoices()
    await zoho.expire_access_tokens()
    with pytest.raises(RefreshLimitReached) as caught:
        await books.list_invoices()

    after = await zoho.counters()
    assert delta(before, after, "oauth:com") == {"refreshed": 10}
    assert caught.value.retry_at <= datetime.now(UTC) + timedelta(minutes=10)
    assert connection.provider.refresh_count == 10


async def test_sandbox_refuses_the_eleventh_refresh_in_ten_minutes(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    connection = await zoho_sandbox.connect()
    refresh_token = connection.tokens.refresh_token
    assert refresh_token is not None
    for _ in range(10):
        await connection.oauth.refresh(refresh_token, connection.accounts_server)
    with pytest.raises(RefreshLimitReached) as caught:
        await connection.oauth.refresh(refresh_token, connection.accounts_server)
    # Zoho's "Access Denied" (under HTTP 200) means: wait out the 10-minute window.
    assert caught.value.transient
    wait = caught.value.retry_at - datetime.now(UTC)
    assert timedelta(minutes=9) < wait <= timedelta(minutes=10)


async def test_a_refused_refresh_is_not_asked_again_before_the_window_ends(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    connection = await zoho_sandbox.connect()
    refresh_token = connection.tokens.refresh_token
    assert refresh_token is not None
    for _ in range(10):  # another process of ours spent the window
        await connection.oauth.refresh(refresh_token, connection.accounts_server)
    provider = AccessTokenProvider(
        connection.oauth,
        TokenSet("expired", refresh_token, connection.tokens.api_domain, datetime.now(UTC)),
        connection.accounts_server,
    )
    with pytest.raises(RefreshLimitReached):
        await provider.access_token()
    before = await zoho_sandbox.counters()
    with pytest.raises(RefreshLimitReached) as caught:
        await provider.access_token()
    assert await zoho_sandbox.counters() == before  # Zoho not asked
    assert caught.value.retry_at > datetime.now(UTC) + timedelta(minutes=9)


async def test_revoked_refresh_token_is_token_invalid(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect(invoices=2)
    books = connection.client(zoho_sandbox.http)
    await books.list_invoices()
    assert await zoho_sandbox.revoke_user(connection.user["email"]) == 1
    with pytest.raises(TokenInvalid):
        await books.list_invoices()
    with pytest.raises(TokenInvalid):
        await connection.provider.access_token()

    result = await changed_invoices(books, None)
    assert isinstance(result.interrupted, TokenInvalid)
    assert result.invoices == [] and result.new_watermark is None


async def test_revoke_on_remove(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect()
    refresh_token = connection.tokens.refresh_token
    assert refresh_token is not None
    await connection.oauth.revoke(refresh_token, connection.accounts_server)
    with pytest.raises(TokenInvalid):
        await connection.oauth.refresh(refresh_token, connection.accounts_server)
    await connection.oauth.revoke(refresh_token, connection.accounts_server)  # idempotent


async def test_twenty_first_refresh_token_silently_evicts_the_oldest(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    zoho = zoho_sandbox
    client, user, _ = await setup(zoho, "eu")
    oauth = zoho.oauth(client)
    grants = []
    for _ in range(21):
        redirect = await zoho.authorize(client, user)
        grants.append(await oauth.exchange_code(redirect["code"], redirect["accounts-server"]))
    accounts = zoho.urls["eu"]["accounts"]

    with pytest.raises(TokenInvalid):
        await oauth.refresh(grants[0].refresh_token or "", accounts)
    for grant in (grants[1], grants[20]):
        assert (await oauth.refresh(grant.refresh_token or "", accounts)).access_token


async def test_unreachable_accounts_server_is_a_transient_oauth_error() -> None:
    async with httpx.AsyncClient() as http:
        from connectors.zoho.oauth import ZohoOAuth

        oauth = ZohoOAuth(http, "c", "s", "https://p/cb", accounts_servers=["http://127.0.0.1:9"])
        with pytest.raises(OAuthError) as caught:
            await oauth.refresh("token", "http://127.0.0.1:9")
    assert caught.value.transient
    assert not isinstance(caught.value, TokenInvalid | ClientInvalid)


async def test_short_lived_tokens_are_refreshed_before_they_expire(
    zoho_sandbox_factory: Any,
) -> None:
    zoho: ZohoSandboxHandle = zoho_sandbox_factory(Settings(access_token_ttl=3))
    connection = await zoho.connect(refresh_margin=timedelta(seconds=1))
    books = connection.client(zoho.http)
    before = await zoho.counters()
    loop = asyncio.get_running_loop()
    end = loop.time() + 4.5
    while loop.time() < end:
        await books.list_invoices()
        await asyncio.sleep(0.05)
    after = await zoho.counters()
    assert delta(before, after, "api:GET /books/v3/invoices").get("unauthorized", 0) == 0
    assert 2 <= delta(before, after, "oauth:com")["refreshed"] <= 3
