"""Topic administration: make the cluster's topics match the registry, or say exactly why not.

Topics are only ever created, never altered: a partition count that differs from the
registry would silently move keys (and so one business's invoices) to other partitions
and break co-partitioned tables, so it is reported for a person to resolve.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, for_code

from runtime.settings import KafkaSettings
from schemas.topics import Topic

# Three copies where the cluster has the brokers for it; a dev broker gets one.
MAX_REPLICATION_FACTOR = 3
_TOPIC_ALREADY_EXISTS = 36

Status = Literal["created", "ok", "missing", "error"]


@dataclass(frozen=True)
class TopicOutcome:
    name: str
    status: Status
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.status == "error":
            return f"ERROR    {self.name}: " + "; ".join(self.problems)
        return f"{self.status:<8} {self.name}"


@dataclass(frozen=True)
class TopicsReport:
    outcomes: tuple[TopicOutcome, ...]

    @property
    def ok(self) -> bool:
        """No topic is in a state the registry forbids (missing is not an error)."""
        return not self.errors

    @property
    def errors(self) -> tuple[TopicOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "error")

    @property
    def created(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outcomes if o.status == "created")

    @property
    def changed(self) -> bool:
        return bool(self.created)

    def summary(self) -> str:
        if self.errors:
            return f"{len(self.errors)} of {len(self.outcomes)} topics differ from the registry"
        if not self.changed:
            return f"ok: all {len(self.outcomes)} topics match the registry, nothing changed"
        return f"created {len(self.created)} of {len(self.outcomes)} topics, the rest were ok"


@asynccontextmanager
async def admin_client(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=settings.request_timeout_ms,
    )
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def broker_answers(bootstrap_servers: str, timeout_s: float = 5.0) -> bool:
    """True once a broker answers a metadata request and lists itself (i.e. it is unfenced)."""
    settings = KafkaSettings(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        async with asyncio.timeout(timeout_s), admin_client(settings) as admin:
            cluster = await admin.describe_cluster()
    except (KafkaError, OSError, TimeoutError):
        return False
    return bool(cluster.get("brokers"))


def topic_problems(topic: Topic, partitions: int, config: Mapping[str, str]) -> list[str]:
    """How an existing topic differs from its registry entry; empty when it matches."""
    problems = []
    if partitions != topic.partitions:
        problems.append(
            f"has {partitions} partitions, registry expects {topic.partitions} "
            "(never changed automatically: keys would move to other partitions)"
        )
    for key, expected in topic.config.items():
        actual = config.get(key)
        if actual is None or _normalised(actual) != _normalised(expected):
            problems.append(f"{key} is {actual!r}, registry expects {expected!r}")
    return problems


def _normalised(value: str) -> tuple[str, ...]:
    # List-valued settings such as cleanup.policy may come back in another order.
    return tuple(sorted(part.strip() for part in value.split(",")))


async def ensure_topics(
    settings: KafkaSettings, topics: Iterable[Topic], *, create: bool = True
) -> TopicsReport:
    """Create every missing topic and validate every existing one against `topics`.

    Idempotent: on a cluster that already matches, nothing is changed and every
    outcome is "ok". With create=False nothing is changed at all (missing topics are
    reported as "missing"), which is what `topics list` shows.
    """
    wanted = {t.name: t for t in topics}
    async with admin_client(settings) as admin:
        existing = await _partition_counts(admin)
        missing = [t for name, t in wanted.items() if name not in existing]
        outcomes: dict[str, TopicOutcome] = {}
        if create and missing:
            brokers = len((await admin.describe_cluster())["brokers"])
            replication = max(1, min(MAX_REPLICATION_FACTOR, brokers))
            response = await admin.create_topics(
                [
                    NewTopic(t.name, t.partitions, replication, topic_configs=t.config)
                    for t in missing
                ]
            )
            for result in response.to_object()["topic_errors"]:
                name, code = result["topic"], result["error_code"]
                if code == 0:
                    outcomes[name] = TopicOutcome(name, "created")
                elif code != _TOPIC_ALREADY_EXISTS:  # lost a race: validated below like the rest
                    reason = result["error_message"] or for_code(code).__name__
                    outcomes[name] = TopicOutcome(name, "error", (f"broker refused: {reason}",))
            await _await_leaders(admin, outcomes, settings.request_timeout_ms / 1000)
            existing = await _partition_counts(admin)
        to_check = [name for name in wanted if name not in outcomes and name in existing]
        configs = await _configs(admin, to_check, {k for t in wanted.values() for k in t.config})
    for name, topic in wanted.items():
        if name in outcomes:
            continue
        if name not in existing:
            outcomes[name] = TopicOutcome(name, "missing")
            continue
        problems = topic_problems(topic, existing[name], configs.get(name, {}))
        outcomes[name] = TopicOutcome(name, "error" if problems else "ok", tuple(problems))
    return TopicsReport(tuple(outcomes[name] for name in wanted))


async def cluster_topics(settings: KafkaSettings) -> dict[str, int]:
    """Every non-internal topic on the cluster with its partition count."""
    async with admin_client(settings) as admin:
        return await _partition_counts(admin)


async def delete_topics(settings: KafkaSettings, names: Iterable[str]) -> None:
    async with admin_client(settings) as admin:
        await admin.delete_topics(list(names))


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    # Asking for all topics, not by name: a by-name metadata request may auto-create
    # topics on clusters that allow it, which is exactly what must not happen here.
    return {
        t["topic"]: len(t["partitions"])
        for t in await admin.describe_topics()
        if t["error_code"] == 0 and not t["is_internal"]
    }


async def _configs(
    admin: AIOKafkaAdminClient, names: list[str], keys: set[str]
) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    wanted_keys: dict[str, Any] = dict.fromkeys(sorted(keys))
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name, wanted_keys) for name in names]
    )
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            configs[resource["resource_name"]] = {
                entry["config_names"]: entry["config_value"] for entry in resource["config_entries"]
            }
    return configs


async def _await_leaders(
    admin: AIOKafkaAdminClient, outcomes: Mapping[str, TopicOutcome], timeout_s: float
) -> None:
    """Return once every created topic has a leader on every partition, so it is usable."""
    created = {name for name, o in outcomes.items() if o.status == "created"}
    deadline = asyncio.get_running_loop().time() + timeout_s
    while created:
        ready = {
            t["topic"]
            for t in await admin.describe_topics()
            if t["topic"] in created
            and t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
        }
        created -= ready
        if not created or asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.1)
