"""When to try a transient failure again, and when to give up."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Backoff:
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(minutes=5)
    deadline: timedelta = timedelta(hours=24)

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """Exponential in the attempt number, capped, with "equal jitter".

        Half the delay is fixed so retries never pile up at zero; the other half is
        random so that a burst of s006 answers does not come back as one burst.
        """
        exp = min(self.cap, self.base * (2 ** max(0, attempt - 1)))
        half = exp / 2
        return half + half * (rng or random).random()

    def expired(self, first_attempt_at: datetime, now: datetime) -> bool:
        return now - first_attempt_at >= self.deadline
