from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import Duration, DurationSettings, ZohoClientSettings

_ZERO = timedelta(0)


class WriteBackSettings(DurationSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_WRITEBACK_", env_file=".env", extra="ignore",
        populate_by_name=True,
    )

    zoho: ZohoClientSettings = Field(
        default_factory=ZohoClientSettings,
        description="the Zoho OAuth client (FISCOBRIDGE_ZOHO_*)",
    )
    zoho_per_minute: int = Field(default=100, ge=1)
    zoho_max_in_flight: int = Field(default=2, ge=1)
    zoho_timeout: Duration = Field(
        default=timedelta(seconds=30), gt=_ZERO, description="one Zoho HTTP request"
    )
    concurrency: int = Field(default=16, ge=1, description="write-backs in flight at once")
    retry_base: Duration = Field(
        default=timedelta(seconds=1), gt=_ZERO,
        description="first wait before a transient failure is tried again (doubling)",
    )
    retry_cap: Duration = Field(
        default=timedelta(minutes=5), gt=_ZERO,
        description="longest wait between two tries of a transient failure",
    )
    integration_ttl: Duration = Field(
        default=timedelta(seconds=30), gt=_ZERO,
        description="an integration's record is read from the store again after this "
        "(at once when one of its events arrives)",
    )
    commit_interval: Duration = Field(
        default=timedelta(seconds=0.5), gt=_ZERO,
        description="processed offsets are committed at least this often",
    )
    ops_host: str = "127.0.0.1"
    ops_port: int = 0
    group_id: str = "fiscobridge-writeback"
