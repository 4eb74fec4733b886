"""Topic administration against the real broker: create, validate, never alter."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from runtime.kafka.admin import admin_client, cluster_topics, ensure_topics
from runtime.settings import KafkaSettings
from schemas.events import Event
from schemas.topics import DAY_MS, Topic, registry
from tests.fixtures.kafka import MakeTopic

pytestmark = pytest.mark.kafka


def renamed_registry(partitions: int) -> list[Topic]:
    """The real registry under a prefix of this test's own, so nothing else is touched."""
    prefix = f"test.registry-{uuid.uuid4().hex[:8]}"
    return [dataclasses.replace(t, name=f"{prefix}.{t.name}") for t in registry(partitions)]


async def topic_config(settings: KafkaSettings, name: str) -> dict[str, str]:
    async with admin_client(settings) as admin:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, None)]
        )
    [resource] = response.to_object()["resources"]
    return {e["config_names"]: e["config_value"] for e in resource["config_entries"]}


async def test_creates_the_registry_then_a_second_run_changes_nothing(
    kafka_settings: KafkaSettings,
) -> None:
    topics = renamed_registry(partitions=3)

    first = await ensure_topics(kafka_settings, topics)
    assert first.ok, first.outcomes
    assert first.created == tuple(t.name for t in topics)

    on_cluster = await cluster_topics(kafka_settings)
    assert {t.name: on_cluster.get(t.name) for t in topics} == {t.name: 3 for t in topics}
    status = next(t for t in topics if t.name.endswith(".invoices.status"))
    assert (await topic_config(kafka_settings, status.name))["retention.ms"] == "-1"
    dlq = next(t for t in topics if t.name.endswith(".invoices.received.dlq"))
    assert (await topic_config(kafka_settings, dlq.name))["retention.ms"] == str(30 * DAY_MS)

    second = await ensure_topics(kafka_settings, topics)
    assert second.ok and not second.changed
    assert {o.status for o in second.outcomes} == {"ok"}
    assert second.summary().startswith("ok:")


async def test_wrong_partition_count_is_an_error_and_nothing_changes(
    kafka_settings: KafkaSettings, make_topic: MakeTopic
) -> None:
    name = await make_topic(partitions=2)

    report = await ensure_topics(kafka_settings, [Topic(name, Event, partitions=3)])

    assert not report.ok
    [error] = report.errors
    assert error.name == name
    assert "has 2 partitions, registry expects 3" in error.describe()
    assert (await cluster_topics(kafka_settings))[name] == 2


async def test_config_drift_is_reported_and_left_alone(
    kafka_settings: KafkaSettings, make_topic: MakeTopic
) -> None:
    name = await make_topic(partitions=1, config={"retention.ms": "60000"})

    report = await ensure_topics(kafka_settings, [Topic(name, Event, 1, retention_ms=DAY_MS)])

    [error] = report.errors
    assert f"retention.ms is '60000', registry expects '{DAY_MS}'" in error.describe()
    assert (await topic_config(kafka_settings, name))["retention.ms"] == "60000"


async def test_missing_topics_are_only_reported_when_not_creating(
    kafka_settings: KafkaSettings,
) -> None:
    topics = renamed_registry(partitions=1)[:2]

    report = await ensure_topics(kafka_settings, topics, create=False)

    assert report.ok and not report.changed
    assert {o.status for o in report.outcomes} == {"missing"}
    assert not set(await cluster_topics(kafka_settings)) & {t.name for t in topics}


async def test_a_topic_the_broker_refuses_is_an_error_with_its_reason(
    kafka_settings: KafkaSettings,
) -> None:
    name = f"test.refused-{uuid.uuid4().hex[:8]}"
    bad = Topic(name, Event, 1, extra_config={"retention.ms": "soon"})

    report = await ensure_topics(kafka_settings, [bad])

    [error] = report.errors
    assert "broker refused" in error.describe() and "soon" in error.describe()
    assert bad.name not in await cluster_topics(kafka_settings)


def fiscobridge(*args: str, settings: KafkaSettings) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "KAFKA_PARTITIONS": str(settings.partitions),
    }
    return subprocess.run(
        [sys.executable, "-m", "fiscobridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.usefixtures("kafka_topics")
def test_cli_topics_create_on_a_matching_cluster_says_ok_and_exits_zero(
    kafka_settings: KafkaSettings,
) -> None:
    for _ in range(2):
        result = fiscobridge("topics", "create", settings=kafka_settings)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "nothing changed" in result.stdout
        assert "created" not in result.stdout


@pytest.mark.usefixtures("kafka_topics")
def test_cli_topics_create_with_other_partitions_fails_naming_each_topic(
    kafka_settings: KafkaSettings,
) -> None:
    wrong = kafka_settings.partitions + 1
    result = fiscobridge("topics", "create", "--partitions", str(wrong), settings=kafka_settings)

    assert result.returncode == 1
    expected = f"has {kafka_settings.partitions} partitions, registry expects {wrong}"
    for topic in registry():
        assert f"ERROR    {topic.name}: {expected}" in result.stdout


@pytest.mark.usefixtures("kafka_topics")
async def test_cli_topics_list_shows_registry_and_other_topics(
    kafka_settings: KafkaSettings, make_topic: MakeTopic
) -> None:
    other = await make_topic(partitions=2)

    result = fiscobridge("topics", "list", settings=kafka_settings)

    assert result.returncode == 0, result.stderr
    for topic in registry():
        assert f"ok       {topic.name}\n" in result.stdout
    assert f"other    {other} (2 partitions, not in the registry)" in result.stdout


def test_cli_says_clearly_when_the_cluster_is_unreachable() -> None:
    unreachable = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    result = fiscobridge("topics", "create", settings=unreachable)

    assert result.returncode == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.stderr
