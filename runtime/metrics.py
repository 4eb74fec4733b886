"""Metrics shared by the services, and the watches that keep the system-wide ones current.

Names follow `fiscobridge_<what>_<unit>`; no per-invoice labels (unbounded series). An
integration is a label only on `fiscobridge_integration_invoices_total` and
`fiscobridge_license_usage_ratio`, and there only for the busiest few (TOP_INTEGRATIONS)
with the rest under "other": thousands of businesses must not become thousands of
series per stage per process.

Who sets what (deploy/prometheus/alerts.yml and the Grafana dashboard read them all;
tests/e2e/test_prometheus.py checks each has a sample on a running stack):
- every consumer: CONSUMER_LAG, per partition, from its own position;
- portal (`watch_system`): GROUP_LAG per group from committed offsets (a consumer that
  died reports nothing itself), DLQ_MESSAGES, INTEGRATIONS, INVOICES, LICENSE_*;
- ingest and poller: INTEGRATION_INVOICES "received"; projector: the final states;
- reporter: CIS_ERRORS; poller: ZOHO_ERRORS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY, Gauge
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from runtime.settings import Duration, DurationSettings

if TYPE_CHECKING:
    from runtime.settings import KafkaSettings
    from runtime.store.store import Store

log = logging.getLogger("fiscobridge.metrics")


class MetricsSettings(DurationSettings):
    model_config = SettingsConfigDict(
        env_prefix="FISCOBRIDGE_METRICS_", env_file=".env", extra="ignore"
    )

    watch: Duration = Field(
        default=timedelta(seconds=15), gt=timedelta(0),
        description="how often the portal reads the system-wide figures",
    )


# How many integrations get a series of their own; the rest are summed under "other".
TOP_INTEGRATIONS = 10
OTHER = "other"

CONSUMER_LAG = Gauge(
    "fiscobridge_consumer_lag_messages",
    "Records between the consumer's position and the partition's end",
    ["group", "topic", "partition"],
)
GROUP_LAG = Gauge(
    "fiscobridge_consumer_group_lag_messages",
    "Records between a consumer group's committed offsets and the ends of its topics "
    "(from the broker: seen even when the group's consumers are down)",
    ["group", "topic"],
)
DLQ_MESSAGES = Gauge(
    "fiscobridge_dlq_messages",
    "Records in a dead-letter topic neither redriven nor acknowledged (fiscobridge dlq)",
    ["topic"],
)
INTEGRATIONS = Gauge(
    "fiscobridge_integrations", "Integrations by status and tier", ["status", "tier"]
)
INVOICES = Gauge(
    "fiscobridge_invoices", "Invoices in the fiscal journal by their current state", ["state"]
)
LICENSE_USED = Gauge(
    "fiscobridge_license_used_invoices",
    "Invoices counted against the monthly licence this month, summed by tier", ["tier"]
)
LICENSE_AT_LIMIT = Gauge(
    "fiscobridge_license_at_limit_integrations",
    "Active integrations that have used their whole monthly licence", ["tier"]
)
LICENSE_RATIO = Gauge(
    "fiscobridge_license_usage_ratio",
    f"This month's licence used, 0..1, for the {TOP_INTEGRATIONS} integrations closest to "
    f"their limit; '{OTHER}' is the highest among the rest",
    ["integration"],
)
CIS_ERRORS = PromCounter(
    "fiscobridge_cis_errors_total",
    "Submissions the tax authority did not fiscalize, by error code (sNNN, timeout, "
    "connection, http_NNN, answer_unverified)",
    ["code"],
)
ZOHO_ERRORS = PromCounter(
    "fiscobridge_zoho_errors_total", "Zoho Books API answers other than 2xx, by HTTP status",
    ["code"],
)
# Label values every process exports from its start, so that rate() sees the first
# error (a series born at 1 has no increase) and dashboards show 0 rather than nothing.
CIS_ERROR_CODES = ("s006", "timeout", "connection", "http_500", "http_503")
ZOHO_ERROR_CODES = ("400", "401", "404", "429", "500", "503")


def declare_cis_errors() -> None:
    """The reporter's CIS error codes, exported at 0 from its start."""
    for code in CIS_ERROR_CODES:
        CIS_ERRORS.labels(code)


def declare_zoho_errors() -> None:
    """The poller's Zoho error statuses, exported at 0 from its start."""
    for code in ZOHO_ERROR_CODES:
        ZOHO_ERRORS.labels(code)


def zoho_error_code(status: int) -> str:
    """A bounded label for a Zoho answer's HTTP status."""
    known = {400, 401, 403, 404, 429, 500, 502, 503, 504}
    return str(status) if status in known else f"{status // 100}xx"


class IntegrationInvoices(Collector):
    """`fiscobridge_integration_invoices_total{integration, stage}`: invoices per
    integration through each stage, with bounded cardinality.

    At most `top` integrations have series of their own in a process; every other
    integration's events go to `integration="other"`. An integration gets a series as
    soon as it is seen while there is room; once full, the busiest `top` (all-time, in
    this process) are re-ranked at most every `rerank_seconds`. Every series is a true
    counter: an integration's starts at 0 when it gets one (its earlier events stay in
    "other"), and "other" counts only events of integrations without one, so the sum
    over `integration` is exactly what the process counted while those series lived.
    """

    NAME = "fiscobridge_integration_invoices"

    def __init__(self, top: int = TOP_INTEGRATIONS, rerank_seconds: float = 60.0) -> None:
        self.top = top
        self.rerank_seconds = rerank_seconds
        self._lock = threading.Lock()
        self._totals: Counter[str] = Counter()  # every integration seen: for the ranking
        self._own: Counter[tuple[str, str]] = Counter()  # (uid, stage) of those with series
        self._owners: set[str] = set()
        self._other: Counter[str] = Counter()
        self._ranked_at = time.monotonic()

    def declare(self, *stages: str) -> None:
        """Export these stages from now on, at 0 until counted (a stage a process owns)."""
        with self._lock:
            for stage in stages:
                self._other[stage] += 0

    def count(self, uid: str, stage: str, n: int = 1) -> None:
        with self._lock:
            self._totals[uid] += n
            if uid not in self._owners and len(self._owners) < self.top:
                self._owners.add(uid)
            if uid in self._owners:
                self._own[(uid, stage)] += n
            else:
                self._other[stage] += n

    def _rerank(self, now: float) -> None:
        if now - self._ranked_at < self.rerank_seconds:
            return
        self._ranked_at = now
        busiest = {uid for uid, _ in self._totals.most_common(self.top)}
        if busiest == self._owners:
            return
        # Dropped integrations' series end; promoted ones start at 0 from here.
        self._own = Counter({key: n for key, n in self._own.items() if key[0] in busiest})
        self._owners = busiest

    def describe(self) -> Iterable[CounterMetricFamily]:
        return [CounterMetricFamily(self.NAME, "", labels=["integration", "stage"])]

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            self.NAME, "Invoices per integration through each stage (busiest few; the rest "
            f"as '{OTHER}')", labels=["integration", "stage"],
        )
        with self._lock:
            self._rerank(time.monotonic())
            for (uid, stage), n in sorted(self._own.items()):
                family.add_metric([uid, stage], n)
            for stage, n in sorted(self._other.items()):
                family.add_metric([OTHER, stage], n)
        yield family


INTEGRATION_INVOICES = IntegrationInvoices()
REGISTRY.register(INTEGRATION_INVOICES)


async def track_lag(consumer: AIOKafkaConsumer, group: str, every: float = 5.0) -> None:
    """Update the lag gauge until cancelled."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            for tp in consumer.assignment():
                high = consumer.highwater(tp)
                with contextlib.suppress(Exception):  # position is unknown mid-rebalance
                    position = await consumer.position(tp)
                    if high is not None:
                        CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(
                            max(0, high - position)
                        )
            await asyncio.sleep(every)


# -- the system-wide watch (run by the portal) --------------------------------------


@dataclass(frozen=True)
class StoreFigures:
    integrations: dict[tuple[str, str], int]  # (status, tier) -> count
    invoices: dict[str, int]  # state -> count
    used: dict[str, int]  # tier -> licence uses this month
    at_limit: dict[str, int]  # tier -> active integrations at their limit
    ratios: dict[str, float]  # uid -> used / limit, active limited integrations


def publish_store_figures(figures: StoreFigures, tiers: Iterable[str], statuses: Iterable[str],
                          states: Iterable[str]) -> None:
    """Set the store-derived gauges; every known label value gets a sample (0 if none)."""
    tiers, statuses = list(tiers), list(statuses)
    for status in statuses:
        for tier in tiers:
            INTEGRATIONS.labels(status, tier).set(figures.integrations.get((status, tier), 0))
    for state in states:
        INVOICES.labels(state).set(figures.invoices.get(state, 0))
    for tier in tiers:
        LICENSE_USED.labels(tier).set(figures.used.get(tier, 0))
        LICENSE_AT_LIMIT.labels(tier).set(figures.at_limit.get(tier, 0))
    ranked = sorted(figures.ratios.items(), key=lambda item: (-item[1], item[0]))
    LICENSE_RATIO.clear()  # the top few change; stale integrations must not linger
    for uid, ratio in ranked[:TOP_INTEGRATIONS]:
        LICENSE_RATIO.labels(uid).set(ratio)
    LICENSE_RATIO.labels(OTHER).set(max((r for _, r in ranked[TOP_INTEGRATIONS:]), default=0.0))


async def broker_figures(
    consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, groups: Iterable[str],
    dlq_topics: Iterable[str],
) -> None:
    """Set GROUP_LAG and DLQ_MESSAGES from the broker's offsets (`consumer`: started,
    with no group; it only asks for offsets)."""
    from runtime.kafka.clients import partitions_of
    from runtime.kafka.dlq import handled_marks, open_letters

    dlq = await partitions_of(consumer, *dlq_topics)
    ends, starts = await consumer.end_offsets(dlq), await consumer.beginning_offsets(dlq)
    held: Counter[str] = Counter()
    for tp, n in open_letters(starts, ends, await handled_marks(admin)).items():
        held[tp.topic] += n
    for topic in dlq_topics:
        DLQ_MESSAGES.labels(topic).set(held[topic])
    for group in groups:
        committed: dict[TopicPartition, int] = {
            tp: meta.offset
            for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
            if meta is not None and meta.offset >= 0
        }
        if not committed:
            continue  # a group that never committed (not started yet) has no lag to show
        group_ends = await consumer.end_offsets(list(committed))
        lag: Counter[str] = Counter()
        for tp, offset in committed.items():
            lag[tp.topic] += max(0, group_ends[tp] - offset)
        for topic, n in lag.items():
            GROUP_LAG.labels(group, topic).set(n)


async def watch(step: Callable[[], Awaitable[None]], every: float, what: str) -> None:
    """Run `step` every `every` seconds until cancelled; a failing step is logged and
    tried again (a broker or database outage must not stop the service)."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            try:
                await step()
            except Exception as exc:
                log.warning("could not update the %s metrics", what, extra={"error": repr(exc)})
            await asyncio.sleep(every)


async def store_figures(store: Store, monthly_limit: Callable[[str], int | None]) -> StoreFigures:
    """Integrations by status and tier, invoices by state, this month's licence use: a few
    grouped counts over indexed columns, read-only."""
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from runtime.licensing import license_month
    from runtime.store.models import Integration, JournalEntry, LicenseUsage

    month = license_month(datetime.now(UTC))
    async with store.transaction() as session:
        by_status = (await session.execute(
            select(Integration.status, Integration.tier, func.count()).group_by(
                Integration.status, Integration.tier)
        )).all()
        by_state = (await session.execute(
            select(JournalEntry.state, func.count()).group_by(JournalEntry.state)
        )).all()
        usage = (await session.execute(
            select(Integration.uid, Integration.tier, Integration.status,
                   LicenseUsage.fiscalized)
            .join(LicenseUsage, LicenseUsage.integration_uid == Integration.uid)
            .where(LicenseUsage.month == month)
        )).all()
    used: Counter[str] = Counter()
    at_limit: Counter[str] = Counter()
    ratios: dict[str, float] = {}
    for uid, tier, status, fiscalized in usage:
        used[tier] += fiscalized
        limit = monthly_limit(tier)
        if status == "active" and limit:
            ratios[uid] = fiscalized / limit
            at_limit[tier] += fiscalized >= limit
    return StoreFigures(
        integrations={(status, tier): n for status, tier, n in by_status},
        invoices={state: n for state, n in by_state},
        used=dict(used), at_limit=dict(at_limit), ratios=ratios,
    )


async def watch_system(
    store: Store,
    kafka: KafkaSettings,
    *,
    groups: Iterable[str],
    dlq_topics: Iterable[str],
    monthly_limit: Callable[[str], int | None],
    every: float | None = None,
) -> None:
    """Keep the system-wide gauges current until cancelled (one process runs it: the
    portal, which has the store; two portals would just set the same values). Never
    raises: a broker or database outage is logged and the watch tries again."""
    from runtime.kafka import clients
    from runtime.kafka.admin import admin_client
    from runtime.store.models import INVOICE_STATES, TIERS, IntegrationStatus

    period = every if every is not None else MetricsSettings().watch.total_seconds()
    groups, dlq_topics = list(groups), list(dlq_topics)

    async def from_store() -> None:
        publish_store_figures(await store_figures(store, monthly_limit), TIERS,
                              [s.value for s in IntegrationStatus], INVOICE_STATES)

    async def from_broker() -> None:
        offsets = clients.consumer(kafka, group_id=None)
        await offsets.start()
        try:
            async with admin_client(kafka) as admin:
                while True:
                    await broker_figures(offsets, admin, groups, dlq_topics)
                    await asyncio.sleep(period)
        finally:
            await offsets.stop()

    await asyncio.gather(watch(from_store, period, "store"),
                         watch(from_broker, period, "broker"))
