"""One Zoho OAuth client for every service, FISCOBRIDGE_ZOHO_*; the per-service names
of earlier versions are read when the new one is unset, with a warning."""

from __future__ import annotations

import logging

import pytest

from runtime.settings import ZohoClientSettings

OLD = ("FISCOBRIDGE_PORTAL_ZOHO_CLIENT_ID", "FISCOBRIDGE_POLLER_ZOHO_CLIENT_SECRET",
       "FISCOBRIDGE_INGEST_ZOHO_ACCOUNTS_SERVERS", "FISCOBRIDGE_WRITEBACK_ZOHO_CLIENT_ID")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*OLD, "FISCOBRIDGE_ZOHO_CLIENT_ID", "FISCOBRIDGE_ZOHO_CLIENT_SECRET",
                 "FISCOBRIDGE_ZOHO_ACCOUNTS_SERVERS"):
        monkeypatch.delenv(name, raising=False)


def test_one_prefix_configures_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FISCOBRIDGE_ZOHO_CLIENT_ID", "1000.NEW")
    monkeypatch.setenv("FISCOBRIDGE_ZOHO_CLIENT_SECRET", "s3cret")
    monkeypatch.setenv("FISCOBRIDGE_ZOHO_ACCOUNTS_SERVERS", '["https://accounts.zoho.eu"]')
    settings = ZohoClientSettings()
    assert settings.configured and settings.client_id == "1000.NEW"
    assert settings.accounts_servers == ["https://accounts.zoho.eu"]
    assert "s3cret" not in repr(settings)


def test_old_names_are_read_with_a_warning_and_the_new_one_wins(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("FISCOBRIDGE_POLLER_ZOHO_CLIENT_SECRET", "old-secret")
    monkeypatch.setenv("FISCOBRIDGE_INGEST_ZOHO_ACCOUNTS_SERVERS", "https://a, https://b")
    monkeypatch.setenv("FISCOBRIDGE_PORTAL_ZOHO_CLIENT_ID", "1000.OLD")
    monkeypatch.setenv("FISCOBRIDGE_ZOHO_CLIENT_ID", "1000.NEW")
    with caplog.at_level(logging.WARNING, logger="fiscobridge.settings"):
        settings = ZohoClientSettings()
    assert settings.client_id == "1000.NEW"
    assert settings.client_secret.get_secret_value() == "old-secret"
    assert settings.accounts_servers == ["https://a", "https://b"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "FISCOBRIDGE_POLLER_ZOHO_CLIENT_SECRET" in warned
    assert "FISCOBRIDGE_INGEST_ZOHO_ACCOUNTS_SERVERS" in warned
    assert "FISCOBRIDGE_PORTAL_ZOHO_CLIENT_ID" not in warned  # the new name is set
    assert "old-secret" not in warned
