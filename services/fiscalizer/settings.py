from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.licensing import DEFAULTS, LICENSE_ZONE, TIERS, Tier
from runtime.settings import Duration, DurationSettings, home_dir
from schemas.topics import FISCALIZER_APP_ID


class FiscalizerSettings(DurationSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_FISCALIZER_", env_file=".env", extra="ignore"
    )

    app_id: str = FISCALIZER_APP_ID
    # Invoices a month per tier (None: unlimited); defaults from runtime/licensing.py.
    limit_trial: int | None = DEFAULTS[Tier.TRIAL].monthly_limit
    limit_starter: int | None = DEFAULTS[Tier.STARTER].monthly_limit
    limit_growth: int | None = DEFAULTS[Tier.GROWTH].monthly_limit
    limit_scale: int | None = Field(
        default=DEFAULTS[Tier.SCALE].monthly_limit, description="None: unlimited")
    batch_size: int = Field(default=200, ge=1)
    batch: Duration = Field(
        default=timedelta(seconds=0.05), gt=timedelta(0),
        description="a batch is handled at batch_size records, or this long after it began",
    )
    integration_cache: Duration = Field(
        default=timedelta(seconds=30), ge=timedelta(0),
        description="how long an integration read from the store is reused",
    )
    stall: Duration = Field(
        default=timedelta(minutes=2), ge=timedelta(seconds=10),
        description="exit (to be restarted) when records wait this long with none read",
    )
    session_timeout: Duration = Field(
        default=timedelta(seconds=10), ge=timedelta(seconds=6),
        description="a killed worker's partitions are reassigned after this (faust's 60 s "
        "default would stall a restart for a minute)",
    )
    timezone: str = Field(default=LICENSE_ZONE.key, description="months for the license count")
    ops_host: str = "127.0.0.1"
    ops_port: int = 0
    instance: str = Field(
        default="", pattern=r"^[A-Za-z0-9_.-]*$",
        description="tells fiscalizers on one host apart: each keeps its table files in a "
        "data directory of its own, which survives its restarts",
    )
    store: Literal["memory://", "rocksdb://"] = Field(
        default="rocksdb://",
        description="rocksdb://: tables on disk, memory flat in the number of invoices and a "
        "restart reads only the changelog written since; memory://: rebuilt from the "
        "whole changelog on every start",
    )
    state_retention_days: float = Field(
        default=90.0, gt=0,
        description="how long a fiscalized invoice's entry is kept after its first "
        "signature: as long as a duplicate delivery can still arrive (retention.py); "
        "licence counters and fiscal-number sequences are kept for good",
    )
    state_sweep: Duration = Field(
        default=timedelta(hours=1), gt=timedelta(0),
        description="how often expired entries are looked for",
    )

    def data_dir(self) -> Path:
        base = home_dir() / f"{self.app_id}-data"
        return base / self.instance if self.instance else base

    def monthly_limit(self, tier: str) -> int | None:
        """The tier's monthly limit; None: unlimited, or a name that is no tier."""
        if tier not in TIERS:
            return None
        return {Tier.TRIAL: self.limit_trial, Tier.STARTER: self.limit_starter,
                Tier.GROWTH: self.limit_growth, Tier.SCALE: self.limit_scale}[Tier(tier)]
