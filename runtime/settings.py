"""Configuration, read from the environment (and `.env`), typed.

Every service builds its settings from here so one variable means one thing
everywhere: `KAFKA_BOOTSTRAP_SERVERS` points every client at a cluster,
`FISCOBRIDGE_DATABASE_URL` every store session at a database.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    # Answering at the first byte cost the broker ~20% more CPU per invoice and the
    # projector ~25% more (bench/pipeline, flat out).
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
