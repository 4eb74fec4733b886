from aiokafka import TopicPartition

from services.reporter.offsets import OffsetTracker

TP = TopicPartition("invoices.signed", 3)


def test_only_the_completed_prefix_is_committable() -> None:
    t = OffsetTracker()
    for offset in (10, 11, 13, 14):  # 12 is a transaction marker: never delivered
        t.started(TP, offset)
    t.finished(TP, 13)
    t.finished(TP, 14)
    assert t.committable() == {}
    t.finished(TP, 10)
    assert t.committable() == {TP: 11}
    t.committed({TP: 11})
    assert t.committable() == {}
    t.finished(TP, 11)
    assert t.committable() == {TP: 15}
    assert t.in_flight() == 0


def test_revoked_partition_is_forgotten_and_late_finishes_ignored() -> None:
    t = OffsetTracker()
    t.started(TP, 0)
    t.forget([TP])
    t.finished(TP, 0)
    assert t.committable() == {} and t.in_flight() == 0
