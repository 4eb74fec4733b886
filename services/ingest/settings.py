from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import Duration, DurationSettings

_ZERO = timedelta(0)


class IngestSettings(DurationSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_INGEST_", env_file=".env", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = Field(default=1024 * 1024, description="1 MiB, larger is refused (413)")
    publish_timeout: Duration = Field(
        default=timedelta(seconds=10), gt=_ZERO,
        description="broker ack wait before answering 503 so that Zoho retries",
    )
    # Webhooks come one at a time, and each answer waits for its broker ack anyway.
    # Holding a record this long lets those that arrive together share one produce
    # request, which costs aiokafka and the broker about as much for one record as for
    # a batch (the batch also leaves once it is full). Zoho waits seconds for an answer.
    publish_linger_ms: int = Field(default=50, ge=0)
    integration_cache: Duration = Field(
        default=timedelta(seconds=30), ge=_ZERO,
        description="how long an integration read for a webhook is reused",
    )
    unknown_cache: Duration = Field(
        default=timedelta(seconds=5), ge=_ZERO,
        description="how long a webhook URL that names no integration is remembered as such",
    )
    webhook_seen: Duration = Field(
        default=timedelta(minutes=1), gt=_ZERO,
        description="an integration's last accepted webhook is written to the store at most "
        "this often (the poller stretches polling while webhooks arrive)",
    )

    # Reading the buyer's contact from Zoho when a webhook's invoice carries no tax
    # number (the poller reads it the same way), with the deployment's Zoho OAuth client
    # (runtime.settings.ZohoClientSettings, FISCOBRIDGE_ZOHO_*). Without one the invoice
    # is mapped from the webhook alone.
    zoho_timeout: Duration = Field(
        default=timedelta(seconds=10), gt=_ZERO, description="one Zoho HTTP request"
    )
    zoho_max_in_flight: int = Field(default=2, ge=1)
    contact_cache: Duration = Field(
        default=timedelta(hours=1), ge=_ZERO,
        description="how long a contact read from Zoho is reused",
    )
