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
    # Webhooks come one at a time, and each answer waits for its broker ack anyway.
    # Holding a record this long lets those that arrive together share one produce
    # request, which costs aiokafka and the broker about as much for one record as for
    # a batch (the batch also leaves once it is full). At 300 webhooks/s, 5 ms cost
    # 0.83 ms of ingest CPU per webhook and 0.96 ms of the broker's; 50 ms, 0.56 and 0.77
    # (bench/pipeline --rate 300). Zoho waits seconds for an answer, not milliseconds.
    publish_linger_ms: int = Field(default=50, ge=0)
    integration_cache_seconds: float = 30.0
    unknown_cache_seconds: float = 5.0
