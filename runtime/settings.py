"""Configuration, read from the environment (and `.env`), typed.

Every service builds its settings from here so one variable means one thing
everywhere: `KAFKA_BOOTSTRAP_SERVERS` points every client at a cluster,
`FISCOBRIDGE_DATABASE_URL` every store session at a database.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_log = logging.getLogger("fiscobridge.settings")


def home_dir() -> Path:
    """Where embedded state lives (SQLite file, local broker data, sandbox CA)."""
    explicit = os.environ.get("FISCOBRIDGE_HOME")
    path = Path(explicit) if explicit else Path(platformdirs.user_data_dir("fiscobridge"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Downloaded artefacts that can be fetched again (Kafka jars)."""
    explicit = os.environ.get("FISCOBRIDGE_CACHE")
    path = Path(explicit) if explicit else Path(platformdirs.user_cache_dir("fiscobridge"))
    path.mkdir(parents=True, exist_ok=True)
    return path


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKA_", env_file=".env", extra="ignore")

    bootstrap_servers: str = "localhost:9092"
    client_id: str = "fiscobridge"
    partitions: int = Field(default=12, ge=1, description="partitions of every topic created")
    request_timeout_ms: int = 30_000
    # A consumer's fetch is answered once it can carry fetch_min_bytes, or after
    # fetch_max_wait_ms: under load each fetch brings many records and the broker answers
    # far fewer requests; idle, a record waits at most fetch_max_wait_ms longer per hop.
    fetch_min_bytes: int = Field(default=65536, ge=1)
    fetch_max_wait_ms: int = Field(default=50, ge=0)
    # How long the pipeline's producers hold a record for others to share its request:
    # the outputs of concurrent webhooks, submissions and batches leave together.
    linger_ms: int = Field(default=5, ge=0)


class StoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FISCOBRIDGE_", env_file=".env", extra="ignore")

    database_url: str = Field(default="", description="empty: SQLite file under the home dir")
    master_key: SecretStr | None = Field(
        default=None, description="base64 of 32 bytes, optionally 'keyid:base64'; see runtime.vault"
    )

    def url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{home_dir() / 'fiscobridge.db'}"


# Names the Zoho OAuth client had per service before it was one setting: still read
# (when the FISCOBRIDGE_ZOHO_* one is unset), with a warning naming the new one.
_ZOHO_LEGACY_PREFIXES = (
    "FISCOBRIDGE_PORTAL_ZOHO_", "FISCOBRIDGE_POLLER_ZOHO_", "FISCOBRIDGE_INGEST_ZOHO_",
    "FISCOBRIDGE_WRITEBACK_ZOHO_",
)


class ZohoClientSettings(BaseSettings):
    """The deployment's Zoho OAuth client, one for every service that talks to Zoho
    (portal: consent; poller, ingest, write-back: token refresh): FISCOBRIDGE_ZOHO_*."""

    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_ZOHO_", env_file=".env", extra="ignore"
    )

    client_id: str = Field(default="", description="the OAuth client id (Zoho API console)")
    client_secret: SecretStr = Field(default=SecretStr(""), description="its secret")
    accounts_url: str = Field(
        default="https://accounts.zoho.com",
        description="where the consent starts; Zoho sends each user on to their data centre",
    )
    accounts_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="accounts servers the client secret may be sent to (JSON list or "
        "comma-separated); empty: Zoho's own data centres (the sandbox's in dev and tests)",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for field in ("client_id", "client_secret", "accounts_url", "accounts_servers"):
            if data.get(field) not in (None, ""):
                continue
            for prefix in _ZOHO_LEGACY_PREFIXES:
                old = f"{prefix}{field.upper()}"
                if os.environ.get(old):
                    _log.warning(
                        "%s is read for FISCOBRIDGE_ZOHO_%s; rename it (one Zoho OAuth "
                        "client serves every service)", old, field.upper(),
                    )
                    data[field] = os.environ[old]
                    break
        return data

    @field_validator("accounts_servers", mode="before")
    @classmethod
    def _servers(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret.get_secret_value())
