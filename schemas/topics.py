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
)

DEFAULT_PARTITIONS = 12
DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Topic:
    name: str
    value: type[Event]
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
# Status and integration events are the source the projection is rebuilt from.
INVOICES_STATUS = Topic("invoices.status", InvoiceStatus, retention_ms=-1)
INTEGRATIONS_EVENTS = Topic("integrations.events", IntegrationEvent, retention_ms=-1)

PRIMARY: tuple[Topic, ...] = (
    INVOICES_RECEIVED,
    INVOICES_SIGNED,
    INVOICES_RETRY,
    INVOICES_STATUS,
    INTEGRATIONS_EVENTS,
)


def dlq_of(topic: Topic) -> Topic:
    return Topic(topic.dlq, topic.value, topic.partitions, 30 * DAY_MS)


def registry(partitions: int = DEFAULT_PARTITIONS) -> tuple[Topic, ...]:
    """Every topic the system needs, primary and dead-letter, at the given partition count."""
    topics = [
        Topic(t.name, t.value, partitions, t.retention_ms, t.cleanup_policy, t.key, t.extra_config)
        for t in PRIMARY
    ]
    return (*topics, *(dlq_of(t) for t in topics))


def by_name(name: str) -> Topic:
    for topic in PRIMARY:
        if topic.name == name:
            return topic
    raise KeyError(f"unknown topic {name!r}; known: {[t.name for t in PRIMARY]}")
