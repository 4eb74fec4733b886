from __future__ import annotations

import json
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _zoho(name: str) -> AliasChoices:
    # One FISCOBRIDGE_ZOHO_* variable configures the OAuth client for portal, poller and
    # write-back alike; FISCOBRIDGE_WRITEBACK_ZOHO_* overrides it here.
    return AliasChoices(f"FISCOBRIDGE_WRITEBACK_ZOHO_{name}", f"FISCOBRIDGE_ZOHO_{name}")


class WriteBackSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_WRITEBACK_", env_file=".env", extra="ignore",
        populate_by_name=True,
    )

    zoho_client_id: str = Field(default="", validation_alias=_zoho("CLIENT_ID"))
    zoho_client_secret: SecretStr = Field(
        default=SecretStr(""), validation_alias=_zoho("CLIENT_SECRET")
    )
    zoho_accounts_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias=_zoho("ACCOUNTS_SERVERS"),
        description="accounts servers the client secret may be sent to; empty: Zoho's own",
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

    @field_validator("zoho_accounts_servers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            if value.strip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
