"""What every page handler needs: the store, the event publisher, Zoho, settings, sessions."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from connectors.zoho.oauth import ZohoOAuth
from runtime.licensing import TierSettings
from runtime.ops import ReadinessCheck
from runtime.store import IntegrationRecord, Store
from schemas.events import IntegrationEvent
from services.portal.settings import PortalSettings
from services.portal.web.sessions import CSRF_FIELD, Session, session_of
from services.portal.web.signing import Signer
from services.portal.web.trust import TrustedCAs

log = logging.getLogger("fiscobridge.portal")

Publish = Callable[[IntegrationEvent], Awaitable[object]]
"""Make an integration event durable on the topic and visible in the store (publish_and_apply)."""

_TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
)


class PageError(Exception):
    """Ends a request with a page saying what happened and what to do next."""

    def __init__(
        self,
        status: int,
        title: str,
        message: str,
        *,
        next_url: str = "/integrations",
        next_label: str = "Back to Integrations",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.next_url = next_url
        self.next_label = next_label


# (integration uid, journal records, who asks) -> the outcome (runtime.resend.Outcome)
Resend = Callable[[str, list[Any], str], Awaitable[Any]]


class SignInRequired(Exception):
    pass


def not_found() -> PageError:
    # One answer for "does not exist" and "belongs to someone else": uids are not probed.
    return PageError(404, "Not found", "There is no such integration in your account.")


class Portal:
    def __init__(
        self,
        settings: PortalSettings,
        store: Store,
        publish: Publish,
        http: httpx.AsyncClient,
        *,
        monthly_limit: Callable[[str], int | None],
        ready: ReadinessCheck | None = None,
        clock: Callable[[], float] = time.time,
        tiers: TierSettings | None = None,
    ) -> None:
        self.settings = settings
        # Connections and poll intervals per tier (the limits come from `monthly_limit`).
        self.tiers = tiers or TierSettings()
        self.trusted_cas: TrustedCAs | None = None
        if settings.fiscal_ca_bundle is not None:
            # A bundle that cannot be read stops the portal here, not at a customer's upload.
            self.trusted_cas = TrustedCAs.load(settings.fiscal_ca_bundle)
        else:
            log.warning(
                "FISCOBRIDGE_PORTAL_FISCAL_CA_BUNDLE is not set: uploaded certificates are "
                "not checked against the environment's fiscal CAs (CIS refuses others)"
            )
        self.store = store
        self.publish = publish
        # Resends stuck invoices (runtime/resend.py); set by the portal service, which
        # holds the Kafka clients it needs. None: the Resend button answers 503.
        self.resend: Resend | None = None
        self.http = http
        self.monthly_limit = monthly_limit
        self.ready = ready
        self.clock = clock
        if settings.session_secret is not None:
            secret = settings.session_secret.get_secret_value().encode()
        else:
            log.warning(
                "FISCOBRIDGE_PORTAL_SESSION_SECRET is not set: using a random one, so "
                "sessions end when the portal restarts and are not shared between instances"
            )
            secret = secrets.token_bytes(32)
        if settings.plain_http_exposed:
            # Passwords, reset links and session cookies would cross the network in clear.
            log.warning(
                "the portal's base URL %s is plain http on a non-local host: serve it over "
                "https (FISCOBRIDGE_PORTAL_PUBLIC_BASE_URL=https://...); session cookies are "
                "marked Secure only then", settings.base_url,
            )
        self.session_signer = Signer(secret, "session")
        self.state_signer = Signer(secret, "oauth-state")
        self.oauth: ZohoOAuth | None = None
        if settings.zoho.configured:
            self.oauth = ZohoOAuth(
                http,
                settings.zoho.client_id,
                settings.zoho.client_secret.get_secret_value(),
                settings.redirect_uri,
                accounts_servers=settings.zoho.accounts_servers or None,
            )

    async def owned_integration(self, request: Request, uid: str) -> IntegrationRecord:
        account_id = signed_in(request)
        record = await self.store.integrations.get(uid)
        if record is None or record.account_id != account_id:
            raise not_found()
        return record


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def signed_in(request: Request) -> str:
    """The signed-in account's id; anonymous visitors are sent to the login page."""
    account_id = session_of(request).account_id
    if account_id is None:
        raise SignInRequired
    return account_id


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session: Session = session_of(request)
    return _TEMPLATES.TemplateResponse(
        request,
        template,
        {"session": session, "csrf": session.csrf, "flash": session.pop_flash(), **context},
        status_code=status,
    )


async def csrf_guard(request: Request) -> None:
    """Every POST carries the session's CSRF token; bodies are bounded before parsing."""
    if request.method != "POST":
        return
    limit = portal_of(request).settings.max_upload_bytes
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise PageError(411, "Length required", "The form was sent without a length.")
    if int(length) > limit:
        raise PageError(
            413, "Upload too large",
            f"Forms are limited to {limit // 1024} KiB; a certificate file is much smaller. "
            "Check that you picked the .pfx or .p12 file.",
        )
    form = await request.form(max_files=1, max_fields=50)
    if not session_of(request).csrf_matches(form.get(CSRF_FIELD)):
        raise PageError(
            403, "Form expired",
            "This form does not come from a page of your current session (it is too old, "
            "or another site sent it). Nothing was changed; reload the page and try again.",
        )


async def announce(portal: Portal, event: IntegrationEvent, *, failure: str) -> None:
    """Publish and apply an integration event, or end the request saying it did not happen."""
    try:
        await portal.publish(event)
    except Exception as error:  # the broker or the store: either way it is not recorded
        log.error(
            "integration event not recorded",
            extra={"integration_uid": event.integration_uid, "kind": event.kind.value,
                   "error": type(error).__name__},
        )
        raise PageError(503, "The change could not be recorded", failure) from None
