from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import Duration, DurationSettings

_ZERO = timedelta(0)


class ReporterSettings(DurationSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_REPORTER_", env_file=".env", extra="ignore"
    )

    cis_url: str = "http://127.0.0.1:8449/FiskalizacijaServiceTest"
    # Who signs CIS's answers (services/reporter/trust.py): the environment's CIS
    # signing certificate itself (cis_trust), or its subject and issuer under the CAs
    # in cis_ca. One of the two is required: there is no default, sandbox or other.
    cis_trust: Path | None = Field(
        default=None, description="PEM of the CIS answer-signing certificate itself (pinned)"
    )
    cis_ca: Path | None = Field(
        default=None, description="PEM of the CA chain the CIS signer's certificate ends in"
    )
    cis_signer_subject: str | None = Field(
        default=None, description="RFC 4514 subject of the CIS signing certificate (with cis_ca)"
    )
    cis_signer_issuer: str | None = Field(
        default=None, description="RFC 4514 issuer of the CIS signing certificate (with cis_ca)"
    )
    cis_sandbox: bool = Field(
        default=False,
        description="the CIS is the local sandbox (set by `fiscobridge dev` and the tests):"
        " allows a plain-http CIS URL; trust must still be given",
    )
    timeout: Duration = Field(
        default=timedelta(seconds=10), gt=_ZERO, description="one CIS HTTP request"
    )
    # A slot is held for the whole round trip as the reporter sees it: the answer, its
    # verification and the ack of the outcome, each waiting for CPU on a busy host. Enough
    # slots that CPU, not slots, limits throughput (bench/pipeline tells); few enough to
    # bound what one reporter asks of the service, and what a crash resends.
    concurrency: int = Field(default=64, ge=1, description="submissions in flight at once")
    # Why small pools: services.reporter.service.cis_clients.
    cis_connections_per_client: int = Field(
        default=1, ge=1, description="keep-alive connections per HTTP client (pool)"
    )
    # Transient failures are retried for as long as it takes, at most this far apart.
    retry_base: Duration = Field(
        default=timedelta(seconds=1), gt=_ZERO, description="the first wait (doubling)"
    )
    retry_cap: Duration = Field(
        default=timedelta(minutes=5), gt=_ZERO, description="the longest wait between tries"
    )
    # A subsequent delivery is late this many working days after the invoice's issue
    # (hr-fiscal-record.md, "Late delivery"); Saturdays, Sundays and these dates are not
    # working days (JSON list of ISO dates, e.g. ["2026-12-25","2026-12-26"]).
    late_after_working_days: int = Field(default=2, ge=0)
    late_holidays: list[date] = Field(default_factory=list)
    late_after: Duration | None = Field(
        default=None, gt=_ZERO,
        description="a fixed time after issue instead of working days (tests, demos)",
    )
    commit_interval: Duration = Field(
        default=timedelta(seconds=0.2), gt=_ZERO,
        description="processed offsets are committed at least this often",
    )
    ops_host: str = "127.0.0.1"
    ops_port: int = 0
    group_id: str = "fiscobridge-reporter"
