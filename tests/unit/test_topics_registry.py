"""The topic registry: the one source of topic names and settings."""

from __future__ import annotations

import re

import pytest

from schemas.events import Event
from schemas.topics import PRIMARY, by_name, registry

LEGAL_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def test_names_are_unique_and_legal_kafka_names() -> None:
    names = [t.name for t in registry()]
    assert len(names) == len(set(names))
    assert all(LEGAL_NAME.match(name) for name in names), names
    assert not any(name in {".", ".."} for name in names)


def test_no_two_names_collide_in_metric_names() -> None:
    # Kafka maps '.' to '_' in metric names, so 'a.b' and 'a_b' would share metrics.
    flattened = [t.name.replace(".", "_") for t in registry()]
    assert len(flattened) == len(set(flattened))


def test_every_primary_topic_has_a_dead_letter_topic() -> None:
    topics = {t.name: t for t in registry()}
    for primary in PRIMARY:
        dlq = topics[f"{primary.name}.dlq"]
        assert dlq.value is primary.value
        assert dlq.partitions == topics[primary.name].partitions
        assert dlq.cleanup_policy == "delete"
        assert dlq.retention_ms > 0  # operators have a bounded window to replay, then it goes
    changelogs = [t for t in topics.values() if t.name.endswith("-changelog")]
    assert len(topics) == 2 * len(PRIMARY) + len(changelogs)


def test_no_dead_letter_topic_has_a_dead_letter_topic() -> None:
    assert not [t.name for t in registry() if t.name.endswith(".dlq.dlq")]


@pytest.mark.parametrize("partitions", [1, 3, 12, 48])
def test_partition_count_applies_to_every_topic(partitions: int) -> None:
    assert {t.partitions for t in registry(partitions)} == {partitions}


def test_registry_is_otherwise_the_same_at_any_partition_count() -> None:
    def without_partitions(partitions: int) -> list[tuple[object, ...]]:
        return [(t.name, t.value, t.config, t.key) for t in registry(partitions)]

    assert without_partitions(3) == without_partitions(12)


def test_topics_the_projection_is_rebuilt_from_are_kept_forever() -> None:
    for name in ("invoices.status", "integrations.events"):
        assert by_name(name).config["retention.ms"] == "-1"


def test_work_topics_expire() -> None:
    for name in ("invoices.received", "invoices.signed", "invoices.retry"):
        assert int(by_name(name).config["retention.ms"]) > 0


def test_configs_are_broker_ready_strings() -> None:
    for topic in registry():
        assert topic.config, topic.name
        for key, value in topic.config.items():
            assert isinstance(key, str) and isinstance(value, str), (topic.name, key)
        policies = set(topic.config["cleanup.policy"].split(","))
        assert policies <= {"delete", "compact"}, topic.name


def test_every_topic_carries_events_keyed_by_integration_uid() -> None:
    for topic in registry():
        if topic.value is None:  # a table changelog: keys are faust's, partitions follow ours
            assert topic.name.endswith("-changelog") and topic.cleanup_policy == "compact"
            continue
        assert issubclass(topic.value, Event), topic.name
        assert topic.key is str


def test_table_changelogs_follow_the_app_id_and_partition_count() -> None:
    names = {t.name for t in registry(3, fiscalizer_app_id="x")}
    assert {"x-invoice-state-changelog", "x-license-usage-changelog"} <= names


def test_by_name_finds_primaries_and_names_the_known_ones_otherwise() -> None:
    assert by_name("invoices.signed").name == "invoices.signed"
    with pytest.raises(KeyError, match=re.escape("known: ['invoices.received'")):
        by_name("invoices.recieved")
