"""Noticing a worker that has stopped reading while records wait for it.

faust-streaming can stop delivering records to its agents after a restart or a
rebalance, with no error (faust-streaming issues #175, #640; seen here after a SIGKILL
and restart). Every output is idempotent and every offset is committed only after its
outputs, so the cure is a restart: the worker exits once some partition has had
records waiting without a single one read for `limit` seconds.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

STALL_EXIT_CODE = 70  # EX_SOFTWARE: the worker's supervisor starts it again


class StallWatch:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._since: dict[Hashable, tuple[int | None, float]] = {}  # read offset, when

    def stalled_for(
        self, positions: Mapping[Hashable, tuple[int | None, int | None]], now: float
    ) -> float:
        """Seconds the longest-waiting partition has gone without progress.

        `positions` maps each watched partition to (last offset read or None, highwater
        or None); a partition is waiting when its highwater is past what was read.
        """
        longest = 0.0
        for tp, (read, high) in positions.items():
            waiting = high is not None and high > (read + 1 if read is not None else 0)
            if not waiting:
                self._since.pop(tp, None)
                continue
            seen = self._since.get(tp)
            if seen is None or seen[0] != read:
                self._since[tp] = (read, now)
                continue
            longest = max(longest, now - seen[1])
        for tp in set(self._since) - set(positions):
            del self._since[tp]
        return longest

    def stalled(
        self, positions: Mapping[Hashable, tuple[int | None, int | None]], now: float
    ) -> bool:
        return self.stalled_for(positions, now) >= self.limit
