"""A commit the group refuses after a rebalance (typically while draining on SIGTERM)
is not a crash: the partitions' new owner re-reads from the last commit and finds the
outcomes on invoices.status. The offsets stay uncommitted here."""

from __future__ import annotations

from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError

from runtime.settings import KafkaSettings
from services.reporter.cis import CisSubmitter
from services.reporter.service import Reporter
from services.reporter.settings import ReporterSettings


class RefusingConsumer:
    def __init__(self) -> None:
        self.asked: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> Any:
        self.asked.append(offsets)
        raise CommitFailedError("the group has already rebalanced")


async def test_a_refused_commit_is_logged_and_leaves_the_offsets_to_commit() -> None:
    reporter = Reporter(KafkaSettings(), ReporterSettings(), cast(CisSubmitter, None))
    refusing = RefusingConsumer()
    reporter.consumer = cast(AIOKafkaConsumer, refusing)
    tp = TopicPartition("invoices.signed", 3)
    reporter.tracker.started(tp, 41)
    reporter.tracker.finished(tp, 41)

    await reporter.commit()

    assert refusing.asked == [{tp: 42}]
    assert reporter.tracker.committable() == {tp: 42}  # not marked committed
