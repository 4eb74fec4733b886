"""The processed prefix and the commit policy, pure; on the broker:
tests/integration/test_kafka_steps.py."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from runtime.kafka.commit import CommitPolicy, ProcessedPrefix

TP = TopicPartition("invoices.signed", 3)


def test_only_the_processed_prefix_is_committable() -> None:
    prefix = ProcessedPrefix()
    for offset in (10, 11, 13, 14):  # 12 is a transaction marker: never delivered
        prefix.read(TP, offset)
    prefix.processed(TP, 13)
    prefix.processed(TP, 14)
    assert prefix.committable() == {}
    prefix.processed(TP, 10)
    assert prefix.committable() == {TP: 11}
    prefix.committed({TP: 11})
    assert prefix.committable() == {}
    prefix.processed(TP, 11)
    assert prefix.committable() == {TP: 15}


def test_the_policy_is_due_at_whichever_bound_comes_first() -> None:
    both = CommitPolicy(records=100, seconds=0.2)
    assert not both.due(processed=99, elapsed=0.1)
    assert both.due(processed=100, elapsed=0.0)
    assert both.due(processed=0, elapsed=0.2)
    assert CommitPolicy(records=1).due(processed=1, elapsed=0.0)
    assert not CommitPolicy(records=1).due(processed=0, elapsed=3600)
    assert not CommitPolicy(seconds=1).due(processed=10**6, elapsed=0.5)


def test_a_policy_without_a_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="records, seconds or both"):
        CommitPolicy()
