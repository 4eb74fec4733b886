from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_INGEST_", env_file=".env", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = Field(default=1024 * 1024, description="1 MiB, larger is refused (413)")
    publish_timeout_seconds: float = Field(
        default=10.0, description="broker ack wait before answering 503 so that Zoho retries"
    )
    integration_cache_seconds: float = 30.0
    unknown_cache_seconds: float = 5.0
