import pytest

from services.portal.settings import PortalSettings


def test_the_old_ops_variables_still_place_the_portal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FISCOBRIDGE_PORTAL_OPS_HOST", "0.0.0.0")
    monkeypatch.setenv("FISCOBRIDGE_PORTAL_OPS_PORT", "9100")
    settings = PortalSettings()
    assert (settings.host, settings.port) == ("0.0.0.0", 9100)
    monkeypatch.setenv("FISCOBRIDGE_PORTAL_PORT", "8001")
    assert PortalSettings().port == 8001


def test_urls_derive_from_the_public_base() -> None:
    settings = PortalSettings(public_base_url="https://portal.fiscobridge.example/")
    assert settings.redirect_uri == "https://portal.fiscobridge.example/oauth/zoho/callback"
    assert settings.webhook_url("u1") == "https://portal.fiscobridge.example/webhook/zoho/u1"
    assert settings.secure_cookies
    hooks = PortalSettings(public_base_url="http://127.0.0.1:8000",
                           webhook_base_url="https://hooks.example")
    assert hooks.webhook_url("u1") == "https://hooks.example/webhook/zoho/u1"
    assert not hooks.secure_cookies


def test_accounts_servers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FISCOBRIDGE_ZOHO_ACCOUNTS_SERVERS", raising=False)
    # The portal's old name is still read (with a warning) while the shared one is unset.
    monkeypatch.setenv("FISCOBRIDGE_PORTAL_ZOHO_ACCOUNTS_SERVERS",
                       '["http://127.0.0.1:8470", "http://127.0.0.1:8472"]')
    monkeypatch.setenv("FISCOBRIDGE_PORTAL_SESSION_SECRET", "s" * 32)
    settings = PortalSettings()
    assert settings.zoho.accounts_servers == ["http://127.0.0.1:8470", "http://127.0.0.1:8472"]
    assert "s" * 32 not in repr(settings)


def test_without_a_public_base_the_portal_is_reached_where_it_listens() -> None:
    settings = PortalSettings(host="127.0.0.1", port=8090)
    assert settings.redirect_uri == "http://127.0.0.1:8090/oauth/zoho/callback"
    assert settings.webhook_url("u1") == "http://127.0.0.1:8090/webhook/zoho/u1"
