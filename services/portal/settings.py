"""The portal's configuration (FISCOBRIDGE_PORTAL_*)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from runtime.settings import Duration, DurationSettings, ZohoClientSettings
from services.portal.projector import GROUP_ID

_MINUTE = timedelta(minutes=1)


class PortalSettings(DurationSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_PORTAL_", env_file=".env", extra="ignore", populate_by_name=True
    )

    # FISCOBRIDGE_PORTAL_OPS_HOST/_PORT name the same listener (health checks that use
    # them keep working): the ops endpoints are served by the portal's own server.
    host: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("FISCOBRIDGE_PORTAL_HOST", "FISCOBRIDGE_PORTAL_OPS_HOST"),
    )
    port: int = Field(
        default=8000,
        validation_alias=AliasChoices("FISCOBRIDGE_PORTAL_PORT", "FISCOBRIDGE_PORTAL_OPS_PORT"),
    )
    public_base_url: str = Field(
        default="",
        description="where browsers reach the portal; the OAuth redirect URI is built on it "
        "(empty: http://<host>:<port>)",
    )
    webhook_base_url: str | None = Field(
        default=None, description="where Zoho reaches the ingest service; default: the portal's"
    )
    session_secret: SecretStr | None = Field(
        default=None,
        description="signs session cookies and OAuth states; unset: a random one per process "
        "(sessions end on restart and are not shared between instances)",
    )
    session_max_age: Duration = Field(
        default=timedelta(hours=12), ge=_MINUTE, description="a sign-in lasts this long"
    )
    # Sign-in throttling: this many refused sign-ins within the window lock the e-mail
    # address (any password) or the client address until the oldest falls out of it.
    login_window: Duration = Field(default=timedelta(minutes=15), ge=timedelta(seconds=1))
    login_failures_per_account: int = Field(default=5, ge=1)
    login_failures_per_ip: int = Field(default=20, ge=1)
    # Password reset by e-mail: where mail goes out, and how long a link works.
    smtp_url: str = Field(
        default="",
        description="smtp://[user:password@]host:port or smtps://...; empty: the portal "
        "cannot send mail, and password reset says so",
    )
    mail_from: str = "FiscoBridge <no-reply@fiscobridge.invalid>"
    reset_ttl: Duration = Field(default=timedelta(hours=1), ge=_MINUTE)
    reset_mails_per_hour: int = Field(default=3, ge=1)
    # An e-mail change waits for the link mailed to the new address, this long at most;
    # its mails count against reset_mails_per_hour too (per user).
    email_change_ttl: Duration = Field(default=timedelta(hours=24), ge=_MINUTE)
    oauth_state_ttl: Duration = Field(
        default=timedelta(minutes=10), ge=timedelta(seconds=10),
        description="how long a Zoho sign-in may take, from leaving for Zoho to coming back",
    )
    max_upload_bytes: int = Field(default=256 * 1024, ge=1024)
    default_tier: str = "trial"
    fiscal_ca_bundle: Path | None = Field(
        default=None,
        description="PEM file of the fiscal CAs this environment's CIS trusts (FINA's for "
        "CIS production or test: deploy/trust/fina-production.pem or fina-test.pem; the "
        "sandbox CA in dev); certificates from other issuers are refused at upload. Unset: "
        "not checked (a warning at start)",
    )
    webhook_secret_grace_hours: float = Field(
        default=24.0, ge=0,
        description="after a rotation the previous webhook secret is accepted this long",
    )

    zoho: ZohoClientSettings = Field(
        default_factory=ZohoClientSettings,
        description="the Zoho OAuth client (FISCOBRIDGE_ZOHO_*)",
    )
    zoho_timeout: Duration = Field(
        default=timedelta(seconds=15), gt=timedelta(0), description="one Zoho HTTP request"
    )

    projector_group_id: str = GROUP_ID
    projector_linger: Duration = Field(
        default=timedelta(seconds=0.2), ge=timedelta(0),
        description="how long a fetched batch waits for more records before it is applied",
    )

    @property
    def base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return self.base_url + "/oauth/zoho/callback"

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.lower().startswith("https://")

    @property
    def plain_http_exposed(self) -> bool:
        """A base URL that browsers reach over plain http on a non-local host: passwords
        and session cookies would cross the network in clear."""
        parts = urlsplit(self.base_url)
        host = (parts.hostname or "").lower()
        local = host in ("localhost", "::1") or host.startswith("127.") or host.endswith(
            ".localhost")
        return parts.scheme.lower() == "http" and not local

    @property
    def zoho_configured(self) -> bool:
        return self.zoho.configured

    def webhook_url(self, uid: str) -> str:
        base = (self.webhook_base_url or self.base_url).rstrip("/")
        return f"{base}/webhook/zoho/{uid}"
