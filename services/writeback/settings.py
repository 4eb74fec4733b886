from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from runtime.settings import ZohoClientSettings


class WriteBackSettings(BaseSettings):
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
    zoho_timeout_seconds: float = Field(default=30.0, gt=0)
    concurrency: int = Field(default=16, ge=1, description="write-backs in flight at once")
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_cap_seconds: float = Field(
        default=300.0, gt=0, description="longest wait between two tries of a transient failure"
    )
    commit_interval_seconds: float = 0.5
    ops_host: str = "127.0.0.1"
    ops_port: int = 0
    group_id: str = "fiscobridge-writeback"
