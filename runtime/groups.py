"""The pipeline's consumer groups, as each service names its own.

Each service reads its group from its own variable (FISCOBRIDGE_FISCALIZER_APP_ID,
FISCOBRIDGE_REPORTER_GROUP_ID; the projector's is the portal's own setting). This reads
the same variables with the same defaults (tests/unit/test_import_rules.py keeps them
equal), so the portal reports every group's lag without importing another service.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import FISCALIZER_APP_ID

REPORTER_GROUP_ID = "fiscobridge-reporter"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class ConsumerGroups(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    fiscalizer: str = Field(
        FISCALIZER_APP_ID, validation_alias=_env("FISCOBRIDGE_FISCALIZER_APP_ID"))
    reporter: str = Field(
        REPORTER_GROUP_ID, validation_alias=_env("FISCOBRIDGE_REPORTER_GROUP_ID"))
