"""Staged table writes: visible at once to every batch, written only when settled, the
latest write of a key winning whichever batch settles first."""

from __future__ import annotations

from typing import Any

from services.fiscalizer.pending import Pending

Table = dict[str, Any]


def writer(log: list[tuple[Any, str, Any]]) -> Any:
    def write(origin: Any, table: Table, key: str, value: Any) -> None:
        table[key] = value
        log.append((origin, key, value))

    return write


def test_a_staged_write_is_seen_by_other_batches_before_it_reaches_the_table() -> None:
    pending, table = Pending(), Table()
    signing = pending.batch()
    signing.set(table, "acme:1", "signed")
    assert pending.get(table, "acme:1") is None  # its handler has not finished yet
    signing.commit_event("event-1")

    answering = pending.batch()
    assert answering.get(table, "acme:1") == "signed"  # e.g. a retry arriving early
    assert table == {}

    log: list[tuple[Any, str, Any]] = []
    signing.settle(writer(log))
    assert table == {"acme:1": "signed"} and log == [("event-1", "acme:1", "signed")]
    assert len(pending) == 0


def test_an_event_reads_its_own_writes_and_a_failed_one_leaves_no_trace() -> None:
    pending, usage = Pending(), {"acme:2026-12": 4}
    batch = pending.batch()
    batch.set(usage, "acme:2026-12", batch.get(usage, "acme:2026-12", 0) + 1)
    assert batch.get(usage, "acme:2026-12") == 5
    batch.discard_event()  # the handler raised: the event goes to the DLQ
    assert batch.get(usage, "acme:2026-12") == 4

    batch.set(usage, "acme:2026-12", batch.get(usage, "acme:2026-12", 0) + 1)
    batch.commit_event("event-2")
    batch.set(usage, "acme:2026-12", batch.get(usage, "acme:2026-12", 0) + 1)
    batch.commit_event("event-3")
    batch.settle(writer([]))
    assert usage == {"acme:2026-12": 6}


def test_the_latest_staged_write_wins_whichever_batch_settles_first() -> None:
    pending, table = Pending(), Table()
    first, second = pending.batch(), pending.batch()
    first.set(table, "acme:1", "signed attempt 1")
    first.commit_event("received")
    second.set(table, "acme:1", "signed attempt 2")
    second.commit_event("retry")

    log: list[tuple[Any, str, Any]] = []
    second.settle(writer(log))
    first.settle(writer(log))  # settles later, but its write is older: not written
    assert table == {"acme:1": "signed attempt 2"}
    assert log == [("retry", "acme:1", "signed attempt 2")]

    third = pending.batch()
    third.set(table, "acme:1", "fiscalized")
    third.commit_event("status")
    fourth = pending.batch()
    fourth.set(table, "acme:1", "later still")
    fourth.commit_event("status 2")
    third.settle(writer(log))  # older than fourth's, still unsettled: not written
    assert table == {"acme:1": "signed attempt 2"}
    assert pending.get(table, "acme:1") == "later still"
    fourth.settle(writer(log))
    assert table == {"acme:1": "later still"} and len(pending) == 0


def test_durable_writes_are_handed_out_once_and_settle_with_the_rest() -> None:
    pending, table = Pending(), Table()
    batch = pending.batch()
    batch.set(table, "seq|acme", 7, durable=True)
    batch.set(table, "acme:1", "numbered", durable=True)
    batch.set(table, "acme:1", "signed")
    assert batch.take_durable() == []  # nothing before the handler succeeded
    batch.commit_event("event-1")
    assert batch.take_durable() == [("event-1", table, "seq|acme", 7),
                                    ("event-1", table, "acme:1", "numbered")]
    assert batch.take_durable() == []
    log: list[tuple[Any, str, Any]] = []
    batch.settle(writer(log))
    assert table == {"seq|acme": 7, "acme:1": "signed"}  # the latest staged write wins
