"""What is alive when a process freezes its heap is left out of later collections,
and what comes after is still collected."""

from __future__ import annotations

import gc

from runtime.heap import freeze_live_objects


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_objects_alive_at_the_freeze_are_left_out_and_later_ones_are_not() -> None:
    before = Node()
    try:
        freeze_live_objects()
        after = Node()
        tracked = gc.get_objects()
        assert not any(o is before for o in tracked)
        assert any(o is after for o in tracked)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_garbage_made_after_the_freeze_is_still_collected() -> None:
    try:
        freeze_live_objects()
        Node()
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
