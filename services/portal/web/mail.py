"""Mail from the portal (password reset and e-mail change links) over SMTP:
FISCOBRIDGE_PORTAL_SMTP_URL.

    smtp://host:port              plain SMTP (a local relay, or the dev mail catcher)
    smtp+starttls://host:587      STARTTLS before anything is sent
    smtps://host:465              TLS from the first byte
    user:password@ before host    AUTH LOGIN/PLAIN with those credentials (URL-quoted)

smtplib blocks, so a send runs in a thread; it is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

from services.portal.settings import PortalSettings

TIMEOUT_SECONDS = 15.0
_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class MailError(RuntimeError):
    """The message was not handed to the mail server (the reason, without credentials)."""


def reset_body(link: str, lifetime: timedelta) -> str:
    minutes = int(lifetime.total_seconds() // 60)
    return (
        "Someone asked to reset the password of your FiscoBridge account.\n\n"
        f"To choose a new password, open this link within {minutes} minutes:\n\n{link}\n\n"
        "The link works once. Choosing a new password signs out every session of your "
        "account.\nIf you did not ask for this, ignore this message: your password stays "
        "as it is.\n"
    )


def hours(lifetime: timedelta) -> str:
    hours = max(1, int(lifetime.total_seconds() // 3600))
    return f"{hours} hour{'' if hours == 1 else 's'}"


def email_change_body(link: str, old: str, lifetime: timedelta) -> str:
    return (
        f"Someone signed in to the FiscoBridge account of {old} asked to sign in with "
        "this address from now on.\n\n"
        f"To confirm that this address is yours, open this link within {hours(lifetime)}:"
        f"\n\n{link}\n\n"
        f"The link works once. Until it is opened, the account keeps signing in with {old}.\n"
        "If you did not ask for this, ignore this message: nothing changes.\n"
    )


def email_change_notice(old: str, new: str, lifetime: timedelta) -> str:
    return (
        f"Someone signed in to your FiscoBridge account ({old}) asked to change its e-mail "
        f"address to {new}. A confirmation link was sent there; it works for "
        f"{hours(lifetime)}.\n\n"
        f"Until it is opened, you keep signing in with {old}.\n"
        "If this was not you, sign in and change your password now: that cancels the "
        "change and signs out every other session.\n"
    )


def email_changed_notice(old: str, new: str) -> str:
    return (
        f"The e-mail address of your FiscoBridge account was changed from {old} to {new}, "
        "confirmed through the link sent to the new address. Sign in with the new address "
        "from now on.\n"
        "If this was not you, contact FiscoBridge support at once.\n"
    )


def _deliver(url: str, message: EmailMessage) -> None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _PORTS or not parts.hostname:
        raise MailError(f"FISCOBRIDGE_PORTAL_SMTP_URL must be smtp://, smtp+starttls:// or "
                        f"smtps:// with a host, not {scheme or 'empty'}://")
    port = parts.port or _PORTS[scheme]
    try:
        smtp: smtplib.SMTP
        if scheme == "smtps":
            smtp = smtplib.SMTP_SSL(parts.hostname, port, timeout=TIMEOUT_SECONDS,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(parts.hostname, port, timeout=TIMEOUT_SECONDS)
        with smtp:
            if scheme == "smtp+starttls":
                smtp.starttls(context=ssl.create_default_context())
            if parts.username:
                smtp.login(unquote(parts.username), unquote(parts.password or ""))
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        raise MailError(f"{parts.hostname}:{port}: {type(error).__name__}: {error}") from None


async def send(settings: PortalSettings, *, to: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="fiscobridge")
    message.set_content(body)
    await asyncio.to_thread(_deliver, settings.smtp_url, message)
