"""A partition with records waiting and no progress for the limit is a stall; one that
reads, or has nothing to read, is not."""

from __future__ import annotations

from services.fiscalizer.stall import StallWatch


def test_waiting_records_without_progress_are_a_stall_after_the_limit() -> None:
    watch = StallWatch(limit=30)
    assert not watch.stalled({"p0": (9, 20)}, now=0)
    assert watch.stalled_for({"p0": (9, 20)}, now=20) == 20
    assert not watch.stalled({"p0": (9, 25)}, now=29)
    assert watch.stalled({"p0": (9, 25)}, now=30)


def test_progress_or_an_empty_partition_resets_the_clock() -> None:
    watch = StallWatch(limit=30)
    watch.stalled_for({"p0": (9, 20), "p1": (4, 5)}, now=0)
    # p0 read on; p1 has caught up (offset 4 read, highwater 5: nothing waits).
    assert watch.stalled_for({"p0": (12, 20), "p1": (4, 5)}, now=25) == 0
    assert watch.stalled_for({"p0": (12, 20), "p1": (4, 5)}, now=50) == 25
    assert not watch.stalled({"p0": (19, 20), "p1": (4, 5)}, now=100)


def test_a_partition_never_read_since_start_counts_from_offset_zero() -> None:
    watch = StallWatch(limit=10)
    assert not watch.stalled({"p0": (None, 0)}, now=0)  # empty partition
    watch.stalled_for({"p0": (None, 3)}, now=0)
    assert watch.stalled({"p0": (None, 3)}, now=10)
    assert watch.stalled_for({}, now=11) == 0  # revoked: forgotten
