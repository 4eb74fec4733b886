"""The integration store: accounts, integrations, encrypted credentials, poll state,
fiscal journal and license usage, on SQLite (embedded) or PostgreSQL.

    store = Store.open(url, vault=Vault.from_env())
    await store.migrate()            # or require_schema() in services
    record = await store.integrations.get(uid)
"""

from runtime.store.accounts import AccountRecord
from runtime.store.integrations import (
    CertificateInfo,
    CreatedIntegration,
    IntegrationRecord,
    OrganizationTaken,
    WebhookSecrets,
)
from runtime.store.journal import JournalRecord
from runtime.store.migrate import SchemaOutOfDate
from runtime.store.models import IntegrationStatus
from runtime.store.projection import Outcome
from runtime.store.repository import InvalidInput, NotFound
from runtime.store.store import Store
from runtime.store.tokens import OAuthTokens

__all__ = [
    "AccountRecord",
    "CertificateInfo",
    "CreatedIntegration",
    "IntegrationRecord",
    "IntegrationStatus",
    "InvalidInput",
    "JournalRecord",
    "NotFound",
    "OAuthTokens",
    "OrganizationTaken",
    "Outcome",
    "SchemaOutOfDate",
    "Store",
    "WebhookSecrets",
]
