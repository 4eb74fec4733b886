"""The portal's password policy, its shipped list, mail settings and the plain-http
warning."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
from email.message import EmailMessage

import httpx
import pytest

from services.portal.settings import PortalSettings
from services.portal.web import mail, passwords

LIST_SHA256 = "3c1baed62596de36860824eb3f436d5932d37ca8b06e59df78f5a44ec175afe4"


def test_the_shipped_list_is_the_pinned_one() -> None:
    data = passwords.LIST_FILE.read_bytes()
    assert hashlib.sha256(data).hexdigest() == LIST_SHA256
    lines = gzip.decompress(data).decode().splitlines()
    assert len(lines) == len(passwords.common_passwords()) == 19640
    assert {"password", "123456789", "iloveyou", "qwertyuiop"} <= passwords.common_passwords()


@pytest.mark.parametrize(("password", "message"), [
    ("short", "at least 10 characters"),
    ("x" * 201, "at most 200 characters"),
    ("1234567890", "most common passwords"),
    ("Password1234", "most common passwords"),  # case does not matter
    ("Football2024!", "common password \"football\" with digits or symbols"),
    ("mojo.jojo.1987", "must not contain your e-mail address"),
    ("aaaaabbbbbb", "repeats too few characters"),
])
def test_refused_passwords_say_why(password: str, message: str) -> None:
    problem = passwords.problem(password, email="mojo.jojo@firma.example")
    assert problem is not None and message in problem


@pytest.mark.parametrize("password", [
    "correct horse battery", "violet tugboat orchard", "Zs8#kq!v0Lr2", "ljubičasta lađa 7",
])
def test_good_passwords_pass(password: str) -> None:
    assert passwords.problem(password, email="owner@firma.example") is None


@pytest.mark.parametrize(("base", "exposed"), [
    ("http://127.0.0.1:8000", False),
    ("http://localhost:8000", False),
    ("http://portal.localhost", False),
    ("http://[::1]:8000", False),
    ("https://portal.fiscobridge.example", False),
    ("http://portal.fiscobridge.example", True),
    ("http://10.0.0.5:8000", True),
])
def test_plain_http_on_a_non_local_host_is_flagged(base: str, exposed: bool) -> None:
    settings = PortalSettings(public_base_url=base)
    assert settings.plain_http_exposed is exposed
    assert settings.secure_cookies is base.startswith("https://")


def test_the_portal_warns_at_start_when_its_base_url_is_plain_http(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from services.portal.web.context import Portal

    async def publish(event: object) -> None:
        return None

    for base, warned in (("http://portal.fiscobridge.example", True),
                         ("https://portal.fiscobridge.example", False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="fiscobridge.portal"):
            Portal(PortalSettings(public_base_url=base, session_secret="s" * 32),
                   store=None, publish=publish, http=httpx.AsyncClient(),  # type: ignore[arg-type]
                   monthly_limit=lambda tier: None)
        assert any("plain http on a non-local host" in r.getMessage()
                   for r in caplog.records) is warned, base


@pytest.mark.parametrize("url", ["", "http://mail.example", "smtp://", "lmtp://x:25"])
def test_a_bad_smtp_url_is_a_mail_error(url: str) -> None:
    with pytest.raises(mail.MailError, match="FISCOBRIDGE_PORTAL_SMTP_URL"):
        mail._deliver(url, EmailMessage())


def test_an_unreachable_smtp_server_is_a_mail_error_without_credentials() -> None:
    settings = PortalSettings(smtp_url="smtp://user:hunter2secret@127.0.0.1:9")
    with pytest.raises(mail.MailError) as error:
        asyncio.run(mail.send(settings, to="a@firma.example", subject="s", body="b"))
    assert "hunter2secret" not in str(error.value) and "127.0.0.1:9" in str(error.value)


def test_the_reset_mail_names_the_link_and_its_lifetime() -> None:
    from datetime import timedelta

    body = mail.reset_body("https://portal.example/password/reset/T", timedelta(hours=1))
    assert "https://portal.example/password/reset/T" in body and "60 minutes" in body
