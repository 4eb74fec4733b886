"""Configuration, read from the environment (and `.env`), typed.

Every service builds its settings from here so one variable means one thing
everywhere: `KAFKA_BOOTSTRAP_SERVERS` points every client at a cluster,
`FISCOBRIDGE_DATABASE_URL` every store session at a database.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import platformdirs
from dotenv import dotenv_values
from pydantic import (
    AliasChoices,
    AliasPath,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_log = logging.getLogger("fiscobridge.settings")


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


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_SECONDS = re.compile(rf"[+-]?(?:{_NUMBER})")
_WITH_UNITS = re.compile(rf"[+-]?(?:(?:{_NUMBER})(?:ms|s|m|h|d))+")
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")


def _duration(value: Any) -> Any:
    """A duration as written in a variable: seconds ("90", "0.5"), with units ("90s",
    "5m", "1h30m", "250ms", "1d") or ISO 8601 ("PT1M30S", left to pydantic)."""
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if _SECONDS.fullmatch(text):
        return float(text)
    if _WITH_UNITS.fullmatch(text):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
        return -seconds if text.startswith("-") else seconds
    if text.startswith(("p", "-p", "+p")) or ":" in text:
        return value
    raise ValueError(
        f"{value!r} is no duration: give seconds (90), a number with units (90s, 5m, "
        "1h30m, 250ms, 1d) or ISO 8601 (PT1M30S)"
    )


# The type of every duration setting: a number is seconds, as are the old `*_SECONDS`
# variables (DurationSettings); code converts at its edge (`.total_seconds()`).
Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _is_duration(annotation: Any) -> bool:
    """timedelta, or an optional one."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if annotation is timedelta:
        return True
    options = get_args(annotation)
    return type(None) in options and any(_is_duration(option) for option in options)


class DurationSettings(BaseSettings):
    """Settings whose `Duration` fields are also read from the variable they had when they
    were plain seconds, `<VARIABLE>_SECONDS` (and the keyword `<field>_seconds`), while
    the new variable is unset, with a warning naming it."""

    @model_validator(mode="before")
    @classmethod
    def _legacy_seconds(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        given = {str(key).lower() for key in data}
        sources: dict[str, str | None] | None = None
        for name, field in cls.model_fields.items():
            if not _is_duration(field.annotation):
                continue
            variables = _variables(cls, name, field.validation_alias)
            if given & {name, *(variable.lower() for variable in variables)}:
                continue
            # The key the field is validated from: its name, or its first alias.
            key = name if field.validation_alias is None else _first(field.validation_alias)
            if f"{name}_seconds" in data:
                _log.warning("%s(%s_seconds=...) is read as %s=...; rename it",
                             cls.__name__, name, name)
                data[key] = data.pop(f"{name}_seconds")
                continue
            if sources is None:
                sources = _environment(cls)
            for variable in variables:
                value = sources.get(f"{variable}_SECONDS".lower())
                if value not in (None, ""):
                    _log.warning(
                        "%s_SECONDS is read for %s (seconds, or a duration such as 90s, "
                        "5m, PT1M30S); rename it", variable, variable,
                    )
                    data[key] = value
                    break
        return data


def _variables(cls: type[BaseSettings], name: str, alias: Any) -> list[str]:
    """The environment variables a field is read from, upper case."""
    if isinstance(alias, str):
        return [alias.upper()]
    if isinstance(alias, AliasChoices):
        return [c.upper() for c in alias.choices if isinstance(c, str) and c.isupper()]
    if isinstance(alias, AliasPath):
        return []
    return [f"{cls.model_config.get('env_prefix', '')}{name}".upper()]


def _first(alias: Any) -> str:
    choice = alias.choices[0] if isinstance(alias, AliasChoices) else alias
    return choice if isinstance(choice, str) else str(choice.path[0])


def _environment(cls: type[BaseSettings]) -> dict[str, str | None]:
    """The process environment over the settings' .env file, names lower case."""
    found: dict[str, str | None] = {}
    env_file = cls.model_config.get("env_file")
    files = [env_file] if isinstance(env_file, str | Path) else list(env_file or ())
    for path in files:
        if Path(path).is_file():
            found.update({k.lower(): v for k, v in dotenv_values(path).items()})
    found.update({k.lower(): v for k, v in os.environ.items()})
    return found


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKA_", env_file=".env", extra="ignore")

    bootstrap_servers: str = "localhost:9092"
    client_id: str = "fiscobridge"
    partitions: int = Field(default=12, ge=1, description="partitions of every topic created")
    request_timeout_ms: int = 30_000
    # A consumer's fetch is answered once it can carry fetch_min_bytes, or after
    # fetch_max_wait_ms: under load each fetch brings many records and the broker answers
    # far fewer requests; idle, a record waits at most fetch_max_wait_ms longer per hop.
    fetch_min_bytes: int = Field(default=65536, ge=1)
    fetch_max_wait_ms: int = Field(default=50, ge=0)
    # How long the pipeline's producers hold a record for others to share its request:
    # the outputs of concurrent webhooks, submissions and batches leave together.
    linger_ms: int = Field(default=5, ge=0)
    # The most a producer sends to one partition in one request. Records to a partition
    # leave one request at a time (in order), so a burst larger than this waits a round
    # trip per batch: a batch's signed messages and statuses (a few KB each) and the
    # fiscalizer's durable writes must leave in one. Below the broker's message.max.bytes
    # (1 MiB by default).
    max_batch_size: int = Field(default=512 * 1024, ge=16 * 1024, le=1_000_000)


class StoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FISCOBRIDGE_", env_file=".env", extra="ignore")

    database_url: str = Field(default="", description="empty: SQLite file under the home dir")
    master_key: SecretStr | None = Field(
        default=None, description="base64 of 32 bytes, optionally 'keyid:base64'; see runtime.vault"
    )

    def url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{home_dir() / 'fiscobridge.db'}"


# Names the Zoho OAuth client had per service before it was one setting: still read
# (when the FISCOBRIDGE_ZOHO_* one is unset), with a warning naming the new one.
_ZOHO_LEGACY_PREFIXES = (
    "FISCOBRIDGE_PORTAL_ZOHO_", "FISCOBRIDGE_POLLER_ZOHO_", "FISCOBRIDGE_INGEST_ZOHO_",
    "FISCOBRIDGE_WRITEBACK_ZOHO_",
)


class ZohoClientSettings(BaseSettings):
    """The deployment's Zoho OAuth client, one for every service that talks to Zoho
    (portal: consent; poller, ingest, write-back: token refresh): FISCOBRIDGE_ZOHO_*."""

    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_ZOHO_", env_file=".env", extra="ignore"
    )

    client_id: str = Field(default="", description="the OAuth client id (Zoho API console)")
    client_secret: SecretStr = Field(default=SecretStr(""), description="its secret")
    accounts_url: str = Field(
        default="https://accounts.zoho.com",
        description="where the consent starts; Zoho sends each user on to their data centre",
    )
    accounts_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="accounts servers the client secret may be sent to (JSON list or "
        "comma-separated); empty: Zoho's own data centres (the sandbox's in dev and tests)",
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for field in ("client_id", "client_secret", "accounts_url", "accounts_servers"):
            if data.get(field) not in (None, ""):
                continue
            for prefix in _ZOHO_LEGACY_PREFIXES:
                old = f"{prefix}{field.upper()}"
                if os.environ.get(old):
                    _log.warning(
                        "%s is read for FISCOBRIDGE_ZOHO_%s; rename it (one Zoho OAuth "
                        "client serves every service)", old, field.upper(),
                    )
                    data[field] = os.environ[old]
                    break
        return data

    @field_validator("accounts_servers", mode="before")
    @classmethod
    def _servers(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret.get_secret_value())
