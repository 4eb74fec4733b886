"""The topic registry: the one place topic names and their settings are defined."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas.events import (
    Event,
    IntegrationEvent,
    InvoiceReceived,
    InvoiceRetry,
    InvoiceSigned,
    InvoiceStatus,
    WriteBackStatus,
)

DEFAULT_PARTITIONS = 12
DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    value: type[Event] | None  # None: not an event topic (a faust table's changelog)
    partitions: int = DEFAULT_PARTITIONS
    retention_ms: int = 14 * DAY_MS
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    key: type = str  # integration uid, utf-8
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            **self.extra_config,
        }

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


INVOICES_RECEIVED = Topic("invoices.received", InvoiceReceived)
INVOICES_SIGNED = Topic("invoices.signed", InvoiceSigned)
INVOICES_RETRY = Topic("invoices.retry", InvoiceRetry)
# Operators' resends (runtime/resend.py), apart from invoices.retry: a scheduled retry
# waiting there for its time must not hold back a resend behind it.
INVOICES_RESEND = Topic("invoices.resend", InvoiceRetry)
# Status and integration events are the source the projection is rebuilt from.
INVOICES_STATUS = Topic("invoices.status", InvoiceStatus, retention_ms=-1)
INTEGRATIONS_EVENTS = Topic("integrations.events", IntegrationEvent, retention_ms=-1)
# The write-back stage's outcome per invoice; the projector keeps the latest for the portal.
INVOICES_WRITEBACK = Topic("invoices.writeback", WriteBackStatus, retention_ms=-1)

PRIMARY: tuple[Topic, ...] = (
    INVOICES_RECEIVED,
    INVOICES_SIGNED,
    INVOICES_RETRY,
    INVOICES_RESEND,
    INVOICES_STATUS,
    INTEGRATIONS_EVENTS,
    INVOICES_WRITEBACK,
)


def dlq_of(topic: Topic) -> Topic:
    return Topic(topic.dlq, topic.value, topic.partitions, 30 * DAY_MS)


# The fiscalizer's faust tables. Their changelogs are created here, with everything
# else, rather than by faust on first start: a changelog faust creates while it is
# already consuming is missing from its metadata, and every table write then fails.
FISCALIZER_APP_ID = "fiscobridge-fiscalizer"
FISCALIZER_TABLES = ("invoice-state", "license-usage")


def table_changelogs(app_id: str, partitions: int = DEFAULT_PARTITIONS) -> tuple[Topic, ...]:
    """Changelogs of the fiscalizer's tables: co-partitioned with its input topics."""
    return tuple(
        Topic(f"{app_id}-{table}-changelog", None, partitions, -1, "compact")
        for table in FISCALIZER_TABLES
    )


def registry(
    partitions: int = DEFAULT_PARTITIONS, fiscalizer_app_id: str = FISCALIZER_APP_ID
) -> tuple[Topic, ...]:
    """Every topic the system needs at the given partition count: primary, dead-letter,
    and the changelogs of the fiscalizer's tables."""
    topics = [
        Topic(t.name, t.value, partitions, t.retention_ms, t.cleanup_policy, t.key, t.extra_config)
        for t in PRIMARY
    ]
    return (
        *topics,
        *(dlq_of(t) for t in topics),
        *table_changelogs(fiscalizer_app_id, partitions),
    )


def by_name(name: str) -> Topic:
    for topic in PRIMARY:
        if topic.name == name:
            return topic
    raise KeyError(f"unknown topic {name!r}; known: {[t.name for t in PRIMARY]}")
