"""The authorization URL and the data-centre table."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from connectors.zoho.oauth import DATA_CENTRES, TokenSet, authorization_url, data_centre_of


def test_authorization_url_carries_everything_zoho_needs() -> None:
    url = authorization_url(
        "1000.CLIENT",
        "https://portal.example/cb?x=1",
        ["ZohoBooks.invoices.READ", "ZohoBooks.settings.READ"],
        "csrf-state",
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "accounts.zoho.com",
        "/oauth/v2/auth",
    )
    assert parse_qs(parts.query) == {
        "scope": ["ZohoBooks.invoices.READ,ZohoBooks.settings.READ"],
        "client_id": ["1000.CLIENT"],
        "response_type": ["code"],
        "redirect_uri": ["https://portal.example/cb?x=1"],
        "access_type": ["offline"],
        "prompt": ["consent"],
        "state": ["csrf-state"],
    }


def test_authorization_url_can_start_at_another_accounts_server() -> None:
    url = authorization_url("c", "https://p/cb", ["s"], "st", "https://accounts.zoho.eu/")
    assert url.startswith("https://accounts.zoho.eu/oauth/v2/auth?")


def test_state_is_mandatory() -> None:
    with pytest.raises(ValueError, match="state"):
        authorization_url("c", "https://p/cb", ["s"], "")


def test_data_centre_is_found_by_accounts_server() -> None:
    eu = data_centre_of("https://accounts.zoho.eu")
    assert eu is not None and eu.api_domain == "https://www.zohoapis.eu"
    assert data_centre_of("HTTPS://ACCOUNTS.ZOHOCLOUD.CA/") is not None
    assert data_centre_of("https://accounts.zoho.evil") is None
    assert len({dc.location for dc in DATA_CENTRES}) == len(DATA_CENTRES) == 9


def test_token_set_never_shows_its_tokens() -> None:
    from datetime import UTC, datetime

    tokens = TokenSet("1000.access", "1000.refresh", "https://www.zohoapis.eu", datetime.now(UTC))
    assert "1000." not in repr(tokens) and "1000." not in str(tokens)
