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
    # a batch (the batch also leaves once it is full). Zoho waits seconds for an answer.
    publish_linger_ms: int = Field(default=50, ge=0)
    integration_cache_seconds: float = 30.0
    unknown_cache_seconds: float = 5.0
    webhook_seen_seconds: float = Field(
        default=60.0, gt=0,
        description="an integration's last accepted webhook is written to the store at most "
        "this often (the poller stretches polling while webhooks arrive)",
    )

    # Reading the buyer's contact from Zoho when a webhook's invoice carries no tax
    # number (the poller reads it the same way), with the deployment's Zoho OAuth client
    # (runtime.settings.ZohoClientSettings, FISCOBRIDGE_ZOHO_*). Without one the invoice
    # is mapped from the webhook alone.
    zoho_timeout_seconds: float = Field(default=10.0, gt=0)
    zoho_max_in_flight: int = Field(default=2, ge=1)
    contact_cache_seconds: float = Field(
        default=3600.0, ge=0, description="how long a contact read from Zoho is reused"
    )
